//! Start-up: open the store and every enabled index, then reconcile each
//! index against the store so that whatever a crash left behind (an index
//! behind the store, or ahead of it after a lost remove) is repaired before
//! the first query.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use mnemos_bm25::{Bm25Index, Bm25Params};
use mnemos_config::Settings;
use mnemos_hnsw::{HnswParams, VectorIndex};
use mnemos_index_core::{Document, IndexError, IndexWrite, Seq};
use mnemos_models_core::Encoder;
use mnemos_store::{Store, StoreOptions};
use mnemos_text::{EncoderOptions, MiniLmEncoder};

use mnemos_vision::{EncoderOptions as ImageEncoderOptions, ImageEncoder, ImageLimits};

use mnemos_hypencoder::Hypencoder;
use mnemos_hypencoder_index::{GraphParams, HypencoderIndex};

use crate::{
    blocking, dense_text, Dense, EmbedPool, Engine, EngineError, HypencoderBackend, ImagePool,
    Result, Visual,
};

/// What start-up did, for the log.
#[derive(Debug, Default)]
pub struct Loaded {
    pub documents: usize,
    pub reindexed_bm25: usize,
    pub reembedded: usize,
    pub reindexed_hypencoder: usize,
    pub removed_stale: usize,
    pub seconds: f64,
}

/// The vector index parameters configured under `[hnsw]`.
pub fn hnsw_params(h: &mnemos_config::HnswSettings) -> HnswParams {
    HnswParams {
        m: h.m,
        ef_construction: h.ef_construction,
        ef_search: h.ef_search,
        exact_below: h.exact_below,
        compact_ratio: h.compact_ratio,
    }
}

impl Engine {
    /// Opens (or creates) everything under `settings.server.data_dir`.
    pub async fn open(settings: Settings) -> Result<(Engine, Loaded)> {
        let started = Instant::now();
        let data_dir = settings.server.data_dir.clone();
        if settings.tiers.data_url.is_some() {
            let (tiers, dir) = (settings.tiers.clone(), data_dir.clone());
            crate::blocking(move || crate::restore::restore_data_dir(&tiers, &dir)).await?;
        }
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            EngineError::Unavailable(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;

        let store_opts = StoreOptions {
            fsync: settings.store.fsync,
            compact_after_bytes: settings.store.compact_after_bytes,
        };
        let dir = data_dir.join("store");
        let store = Arc::new(blocking(move || Ok(Store::open(&dir, store_opts)?)).await?);

        let bm25 = if settings.bm25.enabled {
            let dir = data_dir.join("bm25");
            let params = Bm25Params {
                k1: settings.bm25.k1,
                b: settings.bm25.b,
            };
            Some(Arc::new(
                blocking(move || {
                    // Tantivy's data-corruption and schema errors are
                    // `Corrupt`; I/O, permission and lock errors surface.
                    open_or_rebuild("bm25", &dir, |d| {
                        Bm25Index::open(d, params).map_err(IndexError::from)
                    })
                })
                .await?,
            ))
        } else {
            None
        };

        let mut text_encoder = None;
        let dense = if settings.dense.enabled {
            let model_dir = settings.dense.model_dir.clone();
            let opts = EncoderOptions {
                max_tokens: settings.dense.max_tokens,
                ..EncoderOptions::default()
            };
            let minilm = Arc::new(
                blocking(move || {
                    MiniLmEncoder::load(&model_dir, opts).map_err(|e| {
                        EngineError::Unavailable(format!(
                            "cannot load the dense model from {}: {e}",
                            model_dir.display()
                        ))
                    })
                })
                .await?,
            );
            text_encoder = Some(Arc::clone(&minilm));
            let encoder: Arc<dyn Encoder> = minilm;
            let dim = encoder.dim();
            let params = hnsw_params(&settings.hnsw);
            let dir = data_dir.join("dense");
            let index = blocking(move || {
                open_or_rebuild("dense", &dir, |d| VectorIndex::open(d, dim, params.clone()))
            })
            .await?;
            let pool = EmbedPool::new(
                encoder,
                settings.dense_workers(),
                settings.dense.max_batch,
                settings.dense.queue_capacity,
            );
            Some(Arc::new(Dense { pool, index }))
        } else {
            None
        };

        let hypencoder = match (&text_encoder, settings.hypencoder.enabled) {
            (Some(encoder), true) => Some(Arc::new(
                open_hypencoder(&settings, &data_dir, encoder).await?,
            )),
            _ => None,
        };

        let lm = if settings.lm.enabled {
            let encoder = text_encoder.clone().map(|e| -> Arc<dyn Encoder> { e });
            Some(Arc::new(
                crate::LmService::open(&settings.lm, &settings.tiers, encoder, &data_dir).await?,
            ))
        } else {
            None
        };

        let visual = if settings.visual.enabled {
            Some(Arc::new(open_visual(&settings, &data_dir).await?))
        } else {
            None
        };

        let disk = crate::disk::DiskGuard::new(data_dir.clone(), settings.store.min_free_mb);
        let engine = Engine {
            disk,
            settings,
            store,
            bm25,
            dense,
            hypencoder,
            lm,
            visual,
            write_lock: tokio::sync::Mutex::new(()),
            data_dir,
        };
        let mut loaded = engine.reconcile().await?;
        loaded.seconds = started.elapsed().as_secs_f64();
        Ok((engine, loaded))
    }

    /// Brings every index in line with the store: adds what is missing or
    /// stale (by seq), removes what the store no longer holds.
    async fn reconcile(&self) -> Result<Loaded> {
        let truth = self.store.versions();
        let mut loaded = Loaded {
            documents: truth.len(),
            ..Loaded::default()
        };
        if let Some(bm25) = &self.bm25 {
            let bm25 = Arc::clone(bm25);
            let store = Arc::clone(&self.store);
            let truth = truth.clone();
            let (added, removed) = blocking(move || {
                let have = bm25.indexed_versions()?;
                let (todo, extra) = diff(&truth, &have);
                let docs: Vec<(Arc<Document>, Seq)> =
                    todo.iter().filter_map(|id| store.get(id)).collect();
                for chunk in docs.chunks(1024) {
                    let entries: Vec<(&str, Seq, &Document)> = chunk
                        .iter()
                        .map(|(d, s)| (d.id.as_str(), *s, d.as_ref()))
                        .collect();
                    bm25.upsert(&entries)?;
                }
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                IndexWrite::<Document>::remove(bm25.as_ref(), &extra)?;
                Ok((docs.len(), extra.len()))
            })
            .await?;
            loaded.reindexed_bm25 = added;
            loaded.removed_stale += removed;
        }
        if let Some(dense) = &self.dense {
            let have = dense.index.indexed_versions()?;
            let (todo, extra) = diff(&truth, &have);
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            IndexWrite::<[f32]>::remove(&dense.index, &extra)?;
            loaded.removed_stale += extra.len();
            for ids in todo.chunks(256) {
                let docs: Vec<(Arc<Document>, Seq)> =
                    ids.iter().filter_map(|id| self.store.get(id)).collect();
                let texts = docs
                    .iter()
                    .map(|(d, _)| dense_text(&d.title, &d.text))
                    .collect();
                let vectors = dense.pool.embed(texts).await?;
                let entries: Vec<(&str, Seq, &[f32])> = docs
                    .iter()
                    .zip(&vectors)
                    .map(|((d, s), v)| (d.id.as_str(), *s, v.as_slice()))
                    .collect();
                dense.index.upsert(&entries)?;
                loaded.reembedded += entries.len();
            }
            if loaded.reembedded > 0 || !extra.is_empty() {
                IndexWrite::<[f32]>::persist(&dense.index)?;
            }
        }
        if let Some(h) = &self.hypencoder {
            self.reconcile_hypencoder(h, &truth, &mut loaded).await?;
        }
        Ok(loaded)
    }

    /// The Hypencoder index against the store. Vectors come from the dense
    /// index, reconciled just before, so nothing is encoded twice; only a
    /// document the dense index lacks at the right version is re-encoded.
    async fn reconcile_hypencoder(
        &self,
        h: &HypencoderBackend,
        truth: &HashMap<String, Seq>,
        loaded: &mut Loaded,
    ) -> Result<()> {
        let have = h.index.indexed_versions()?;
        let (todo, extra) = diff(truth, &have);
        let extra_ids: Vec<&str> = extra.iter().map(String::as_str).collect();
        IndexWrite::<[f32]>::remove(&h.index, &extra_ids)?;
        loaded.removed_stale += extra.len();
        let dense = self.dense.as_ref().ok_or_else(|| {
            EngineError::Internal("the hypencoder runs only with the dense backend".into())
        })?;
        for ids in todo.chunks(1024) {
            let mut entries: Vec<(String, Seq, Vec<f32>)> = Vec::with_capacity(ids.len());
            let mut missing = Vec::new();
            for id in ids {
                let seq = truth[id];
                match dense.index.get_vector(id) {
                    Some(v) if dense.index.seq_of(id) == Some(seq) => {
                        entries.push((id.clone(), seq, v))
                    }
                    _ => missing.push(id.clone()),
                }
            }
            let docs: Vec<(Arc<Document>, Seq)> =
                missing.iter().filter_map(|id| self.store.get(id)).collect();
            let texts = docs
                .iter()
                .map(|(d, _)| dense_text(&d.title, &d.text))
                .collect();
            for ((d, seq), v) in docs.iter().zip(dense.pool.embed(texts).await?) {
                entries.push((d.id.clone(), *seq, v));
            }
            let refs: Vec<(&str, Seq, &[f32])> = entries
                .iter()
                .map(|(id, seq, v)| (id.as_str(), *seq, v.as_slice()))
                .collect();
            h.index.upsert(&refs)?;
            loaded.reindexed_hypencoder += refs.len();
        }
        if loaded.reindexed_hypencoder > 0 || !extra.is_empty() {
            IndexWrite::<[f32]>::persist(&h.index)?;
        }
        Ok(())
    }
}

/// Loads the trained hyperheads and opens the Hypencoder index.
async fn open_hypencoder(
    settings: &Settings,
    data_dir: &std::path::Path,
    encoder: &Arc<MiniLmEncoder>,
) -> Result<HypencoderBackend> {
    let s = settings.hypencoder.clone();
    let dim = encoder.dim();
    let model_dir = s.model_dir.clone();
    let model = blocking(move || {
        let model = Hypencoder::load(&model_dir).map_err(|e| {
            EngineError::Unavailable(format!(
                "cannot load the hypencoder from {}: {e} (train one with `mnemos train \
                 hypencoder`, or set hypencoder.enabled = false)",
                model_dir.display()
            ))
        })?;
        if model.config().hidden_size != dim {
            return Err(EngineError::Unavailable(format!(
                "the hypencoder in {} is {} wide but the dense encoder gives {dim}-d vectors",
                model_dir.display(),
                model.config().hidden_size
            )));
        }
        Ok(model)
    })
    .await?;
    let dir = data_dir.join("hypencoder");
    let params = GraphParams {
        neighbors: s.neighbors,
    };
    let index = blocking(move || {
        open_or_rebuild("hypencoder", &dir, |d| {
            HypencoderIndex::open(d, dim, params.clone())
        })
    })
    .await?;
    Ok(HypencoderBackend::new(Arc::clone(encoder), model, index, s))
}

/// Opens one index with `open`. Damaged files (a checksum or length that
/// does not match, a snapshot tantivy cannot read) are never loaded: the
/// directory is moved aside to `<dir>.corrupt` (replacing an older one, so
/// at most one copy is kept for inspection) and the index is opened empty;
/// start-up reconciliation then rebuilds it from the store, the source of
/// truth.
fn open_or_rebuild<T>(
    what: &str,
    dir: &std::path::Path,
    open: impl Fn(&std::path::Path) -> std::result::Result<T, IndexError>,
) -> Result<T> {
    match open(dir) {
        Ok(index) => Ok(index),
        Err(IndexError::Corrupt(reason)) => {
            let aside = dir.with_extension("corrupt");
            let moved = std::fs::remove_dir_all(&aside)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })
                .and_then(|()| std::fs::rename(dir, &aside));
            moved.map_err(|e| {
                EngineError::Unavailable(format!(
                    "the {what} index in {} is damaged ({reason}) and cannot be moved aside: {e}",
                    dir.display()
                ))
            })?;
            tracing::warn!(
                index = what,
                %reason,
                moved_to = %aside.display(),
                "damaged index files moved aside; rebuilding the index from the store"
            );
            Ok(open(dir)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Loads the image encoder (unless the memory takes embeddings only) and
/// replays the visual memory's log.
async fn open_visual(settings: &Settings, data_dir: &std::path::Path) -> Result<Visual> {
    let v = &settings.visual;
    let images = if v.encoder {
        let model_dir = v.model_dir.clone();
        let opts = ImageEncoderOptions {
            limits: ImageLimits {
                max_side: v.max_image_side,
                max_decoded_bytes: v.max_decoded_bytes,
            },
            ..ImageEncoderOptions::default()
        };
        let encoder = blocking(move || {
            ImageEncoder::load(&model_dir, opts).map_err(|e| {
                EngineError::Unavailable(format!(
                    "cannot load the image model from {}: {e}",
                    model_dir.display()
                ))
            })
        })
        .await?;
        Some(ImagePool::new(
            Arc::new(encoder),
            v.workers(),
            v.queue_capacity,
        ))
    } else {
        None
    };
    let disk = crate::disk::DiskGuard::new(data_dir.to_path_buf(), settings.store.min_free_mb);
    Visual::open(v, &data_dir.join("visual"), images, disk).await
}

/// Ids whose indexed version differs from the store's (to index), and ids
/// indexed but absent from the store (to remove). Sorted for determinism.
fn diff(truth: &HashMap<String, Seq>, have: &HashMap<String, Seq>) -> (Vec<String>, Vec<String>) {
    let mut todo: Vec<String> = truth
        .iter()
        .filter(|(id, seq)| have.get(*id) != Some(seq))
        .map(|(id, _)| id.clone())
        .collect();
    let mut extra: Vec<String> = have
        .keys()
        .filter(|id| !truth.contains_key(*id))
        .cloned()
        .collect();
    todo.sort();
    extra.sort();
    (todo, extra)
}

#[cfg(test)]
mod tests {
    use super::{diff, hnsw_params};
    use std::collections::HashMap;

    /// `[hnsw]`'s defaults mirror the index's own (the config crate is a
    /// leaf and cannot name them), so a default changed on one side only
    /// would differ between the library and the server.
    #[test]
    fn config_defaults_match_the_index_defaults() {
        assert_eq!(
            hnsw_params(&mnemos_config::HnswSettings::default()),
            mnemos_hnsw::HnswParams::default()
        );
    }

    #[test]
    fn diff_finds_missing_stale_and_extra() {
        let truth: HashMap<String, u64> =
            [("a".into(), 1), ("b".into(), 5), ("c".into(), 2)].into();
        let have: HashMap<String, u64> = [("a".into(), 1), ("b".into(), 3), ("z".into(), 4)].into();
        let (todo, extra) = diff(&truth, &have);
        assert_eq!(todo, vec!["b".to_string(), "c".to_string()]);
        assert_eq!(extra, vec!["z".to_string()]);
    }
}
