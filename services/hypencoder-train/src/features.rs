//! What the frozen encoder computes once per run: document vectors (the
//! dense backend's) and the query token states the hyperheads read.
//!
//! Encoding SciFact's 5,183 abstracts takes minutes on two cores, so both
//! are cached on disk (raw little-endian f32 behind a small header, keyed
//! by corpus size, token limit and encoder path) when a cache directory is
//! given.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use mnemos_engine::dense_text;
use mnemos_models_core::Encoder;
use mnemos_text::{EncoderOptions, MiniLmEncoder};

use crate::data::TrainData;
use crate::{Result, TrainConfig, TrainError};

/// One query's token states: `len × h`, padding removed.
#[derive(Debug, Clone)]
pub struct QueryFeatures {
    pub states: Vec<f32>,
    pub len: usize,
    /// Mean-pooled, L2-normalised: the dense backend's query vector.
    pub pooled: Vec<f32>,
}

/// Encoded corpus and queries.
#[derive(Debug, Clone)]
pub struct Features {
    pub dim: usize,
    /// `N × h` document vectors, corpus order.
    pub docs: Vec<f32>,
    /// One per `TrainData::queries` entry.
    pub queries: Vec<QueryFeatures>,
}

impl Features {
    /// Document `i`'s vector.
    pub fn doc(&self, i: usize) -> &[f32] {
        &self.docs[i * self.dim..(i + 1) * self.dim]
    }

    /// Loads from the cache when it matches, else encodes (and caches).
    pub fn compute(config: &TrainConfig, data: &TrainData) -> Result<Self> {
        let key = format!(
            "docs={} queries={} max_tokens={} encoder={}",
            data.corpus.len(),
            data.queries.len(),
            config.max_tokens,
            config.encoder_dir.display()
        );
        if let Some(dir) = &config.cache {
            if let Some(found) = read_cache(dir, &key)? {
                tracing::info!(dir = %dir.display(), "encoded corpus and queries read from cache");
                return Ok(found);
            }
        }
        let encoder = MiniLmEncoder::load(
            &config.encoder_dir,
            EncoderOptions {
                max_tokens: config.max_tokens,
                ..EncoderOptions::default()
            },
        )?;
        let dim = encoder.dim();
        let started = Instant::now();
        let mut docs = Vec::with_capacity(data.corpus.len() * dim);
        let texts: Vec<String> = data
            .corpus
            .iter()
            .map(|d| dense_text(&d.title, &d.text))
            .collect();
        for (i, chunk) in texts.chunks(128).enumerate() {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            for v in encoder.embed(&refs)? {
                docs.extend(v);
            }
            tracing::info!(
                done = ((i + 1) * 128).min(texts.len()),
                of = texts.len(),
                secs = started.elapsed().as_secs_f64() as u64,
                "encoding corpus"
            );
        }
        let mut queries = Vec::with_capacity(data.queries.len());
        for chunk in data.queries.chunks(64) {
            let refs: Vec<&str> = chunk.iter().map(|q| q.text.as_str()).collect();
            let t = encoder.token_states(&refs)?;
            for row in 0..t.rows {
                let mask = &t.mask[row * t.seq_len..(row + 1) * t.seq_len];
                let len = mask.iter().filter(|&&m| m > 0.0).count();
                let start = row * t.seq_len * dim;
                let states = t.states[start..start + len * dim].to_vec();
                queries.push(QueryFeatures {
                    pooled: pool(&states, len, dim),
                    states,
                    len,
                });
            }
        }
        let features = Self { dim, docs, queries };
        if let Some(dir) = &config.cache {
            write_cache(dir, &key, &features)?;
        }
        Ok(features)
    }
}

/// Mean over tokens, then unit length: all-MiniLM-L6-v2's sentence vector.
pub fn pool(states: &[f32], len: usize, dim: usize) -> Vec<f32> {
    let mut v = vec![0f32; dim];
    for token in states.chunks_exact(dim).take(len) {
        v.iter_mut().zip(token).for_each(|(a, b)| *a += b);
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

const CACHE_FILE: &str = "hypencoder-features.bin";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_cache(dir: &Path, key: &str, f: &Features) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path: PathBuf = dir.join(CACHE_FILE);
    let tmp = path.with_extension("tmp");
    let mut out = Vec::with_capacity(f.docs.len() * 4 + 64);
    let put = |out: &mut Vec<u8>, n: u64| out.extend_from_slice(&n.to_le_bytes());
    put(&mut out, key.len() as u64);
    out.extend_from_slice(key.as_bytes());
    put(&mut out, f.dim as u64);
    put(&mut out, f.docs.len() as u64);
    f.docs
        .iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    put(&mut out, f.queries.len() as u64);
    for q in &f.queries {
        put(&mut out, q.len as u64);
        q.states
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    }
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(&out).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// A cursor over the cache file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn u64(&mut self) -> Option<usize> {
        let b = self.take(8)?;
        usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok()
    }

    fn floats(&mut self, n: usize) -> Option<Vec<f32>> {
        let b = self.take(n.checked_mul(4)?)?;
        Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }
}

fn parse_cache(bytes: &[u8], key: &str) -> Option<Features> {
    let mut c = Cursor { bytes, at: 0 };
    let klen = c.u64()?;
    if c.take(klen)? != key.as_bytes() {
        return None;
    }
    let dim = c.u64()?;
    let n = c.u64()?;
    let docs = c.floats(n)?;
    let count = c.u64()?;
    let mut queries = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let len = c.u64()?;
        let states = c.floats(len.checked_mul(dim)?)?;
        queries.push(QueryFeatures {
            pooled: pool(&states, len, dim),
            states,
            len,
        });
    }
    (c.at == bytes.len()).then_some(Features { dim, docs, queries })
}

fn read_cache(dir: &Path, key: &str) -> Result<Option<Features>> {
    let path = dir.join(CACHE_FILE);
    let mut bytes = Vec::new();
    match std::fs::File::open(&path) {
        Ok(mut f) => f.read_to_end(&mut bytes).map_err(io(&path))?,
        Err(_) => return Ok(None),
    };
    let parsed = parse_cache(&bytes, key);
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "feature cache is stale or unreadable; re-encoding");
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Features {
        Features {
            dim: 2,
            docs: vec![1.0, 0.0, 0.6, 0.8],
            queries: vec![QueryFeatures {
                states: vec![1.0, 1.0, 3.0, 1.0],
                len: 2,
                pooled: pool(&[1.0, 1.0, 3.0, 1.0], 2, 2),
            }],
        }
    }

    #[test]
    fn pooling_is_the_normalised_token_mean() {
        let p = pool(&[1.0, 1.0, 3.0, 1.0], 2, 2);
        let norm = (4f32 + 1.0).sqrt();
        assert!((p[0] - 2.0 / norm).abs() < 1e-6 && (p[1] - 1.0 / norm).abs() < 1e-6);
    }

    #[test]
    fn cache_round_trips_and_rejects_other_keys_and_torn_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = sample();
        write_cache(dir.path(), "key-a", &f).unwrap();
        let back = read_cache(dir.path(), "key-a").unwrap().expect("cached");
        assert_eq!(back.docs, f.docs);
        assert_eq!(back.queries[0].states, f.queries[0].states);
        assert_eq!(back.queries[0].pooled, f.queries[0].pooled);
        assert!(read_cache(dir.path(), "key-b").unwrap().is_none());
        let path = dir.path().join(CACHE_FILE);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(read_cache(dir.path(), "key-a").unwrap().is_none());
    }
}
