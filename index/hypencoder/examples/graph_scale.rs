//! Graph search against exhaustive scoring at scale: build time and memory
//! of the neighbour graph, query latency, documents scored and top-10
//! overlap.
//!
//! ```text
//! cargo run --release -p mnemos-hypencoder-index --example graph_scale -- \
//!     [--n 100000] [--vectors FILE] [--spread 0.5] [--model DIR] \
//!     [--queries 20] [--query-states FILE] [--tokens 16] [--state-scale 0.41] \
//!     [--neighbors 100] [--k 10] [--settings C,nCand,maxIter;...] \
//!     [--query-threads 1] [--persist DIR] [--seed 1]
//! ```
//!
//! - **Documents**: `--vectors FILE` holds real document vectors, raw
//!   little-endian f32, `rows × 384` (e.g. MiniLM embeddings of a corpus).
//!   The index holds them and `n − rows` more drawn around them: a random
//!   real vector plus `spread` times the difference of two other random
//!   real vectors (noise with the real data's own covariance, so the draws
//!   stay in its subspace), normalised. Without a file, clustered synthetic
//!   unit vectors (as in the tests).
//! - **Queries**: `--model DIR` loads a trained Hypencoder
//!   (`Hypencoder::load`), else a randomly initialised one of the default
//!   configuration. `--query-states FILE` holds real query token states,
//!   raw little-endian f32, `queries × tokens × 384`, padded with all-zero
//!   token rows (masked); else random normal states with standard
//!   deviation `state-scale` (MiniLM's final token states have ~0.41).
//! - **Threads**: the graph is built with all cores; queries are timed on
//!   `query-threads` (default 1, as the serving workers run).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use mnemos_hypencoder::{Hypencoder, HypencoderConfig, QNets, QueryStates};
use mnemos_hypencoder_index::{GraphParams, GraphSearch, HypencoderIndex};
use mnemos_index_core::IndexWrite;
use support::{Embeddings, Rng};

/// As in the `mnemos` binary: freed tensor buffers are reused.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args = Args::parse()?;
    let model = match args.path("model") {
        Some(dir) => Hypencoder::load(&dir)?,
        None => Hypencoder::new(HypencoderConfig::default(), args.num("seed", 1)?)?,
    };
    let dim = model.config().hidden_size;
    let n: usize = args.num("n", 100_000)?;
    let seed: u64 = args.num("seed", 1)?;
    println!("cpu: {}", cpu_model());

    let started = Instant::now();
    let vectors = match args.path("vectors") {
        Some(file) => around_real(&read_f32(&file)?, dim, n, args.num("spread", 0.5)?, seed)?,
        None => Embeddings::new(dim, 1000, seed).samples(n),
    };
    println!(
        "{n} document vectors of {dim} in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let params = GraphParams {
        neighbors: args.num("neighbors", 100)?,
    };
    let started = Instant::now();
    let index = match args.path("persist") {
        Some(dir) => HypencoderIndex::open(&dir, dim, params.clone())?,
        None => HypencoderIndex::new(dim, params.clone())?,
    };
    if !index.is_empty() {
        // A directory from an earlier run: measure queries only.
        println!(
            "opened {} docs from {:?} in {:.2} s; not rebuilding",
            index.len(),
            args.path("persist"),
            started.elapsed().as_secs_f64()
        );
    } else {
        build(&index, &vectors, params.neighbors, seed)?;
        if let Some(dir) = args.path("persist") {
            let started = Instant::now();
            index.persist()?;
            let write = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let reopened = HypencoderIndex::open(&dir, dim, params.clone())?;
            println!(
                "persist: write {write:.2} s, open {:.2} s ({} docs)",
                started.elapsed().as_secs_f64(),
                reopened.len()
            );
        }
    }

    // Queries on the serving thread count.
    let threads: usize = args.num("query-threads", 1)?;
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let queries = query_nets(&model, &args, dim, seed)?;
    let k: usize = args.num("k", 10)?;
    let q = queries.len();
    let mut exhaustive = Vec::with_capacity(q);
    let mut times = Vec::with_capacity(q);
    for i in 0..q {
        let one = queries.slice(i, 1)?;
        let started = Instant::now();
        exhaustive.push(index.search_exhaustive(&one, k)?.remove(0));
        times.push(started.elapsed().as_secs_f64());
    }
    let exhaustive_p50 = median(&mut times);
    println!(
        "exhaustive: p50 {:.1} ms per query ({q} queries, {threads} thread(s)), {n} docs scored",
        exhaustive_p50 * 1e3
    );
    for (c, n_cand, max_rounds) in args.settings()? {
        let search = GraphSearch {
            entry_points: c,
            candidates: n_cand,
            max_rounds,
            seed,
        };
        let (mut times, mut scored, mut rounds, mut overlap) = (Vec::new(), 0, 0, 0);
        for (i, truth) in exhaustive.iter().enumerate() {
            let one = queries.slice(i, 1)?;
            let started = Instant::now();
            let outcome = index.search_graph(&one, k, &search)?.remove(0);
            times.push(started.elapsed().as_secs_f64());
            scored += outcome.scored;
            rounds += outcome.rounds;
            let truth: HashSet<&str> = truth.iter().map(|h| h.id.as_str()).collect();
            overlap += outcome
                .hits
                .iter()
                .filter(|h| truth.contains(h.id.as_str()))
                .count();
        }
        let p50 = median(&mut times);
        println!(
            "graph C={c:<5} nCand={n_cand:<3} maxIter={max_rounds:<3}: p50 {:7.1} ms ({:5.1}x faster), \
             {:6.0} docs scored, {:4.1} rounds, top-{k} overlap {:.3}",
            p50 * 1e3,
            exhaustive_p50 / p50,
            scored as f64 / q as f64,
            rounds as f64 / q as f64,
            overlap as f64 / (k * q) as f64
        );
    }
    Ok(())
}

/// Builds the graph of `vectors` in one upsert and reports time and
/// memory, then times single-document maintenance.
fn build(
    index: &HypencoderIndex,
    vectors: &[Vec<f32>],
    neighbors: usize,
    seed: u64,
) -> Result<(), Error> {
    let n = vectors.len();
    let ids: Vec<String> = (0..n).map(|i| format!("doc-{i}")).collect();
    let entries: Vec<(&str, u64, &[f32])> = ids
        .iter()
        .zip(vectors)
        .map(|(id, v)| (id.as_str(), 1, v.as_slice()))
        .collect();
    let (rss_before, _) = memory_kib();
    let started = Instant::now();
    index.upsert(&entries)?;
    let build = started.elapsed().as_secs_f64();
    let (rss, hwm) = memory_kib();
    println!(
        "graph build: {n} docs, {neighbors} neighbours, {build:.1} s; RSS {:.0} MiB (vectors held by the \
         example: {:.0} MiB before the index), peak {:.0} MiB",
        rss as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    maintenance(index, &ids, vectors, seed)
}

/// Times single-document upserts and removals on the built index, then
/// restores what they changed.
fn maintenance(
    index: &HypencoderIndex,
    ids: &[String],
    vectors: &[Vec<f32>],
    seed: u64,
) -> Result<(), Error> {
    let mut rng = Rng::new(seed ^ 0xD0C5);
    let picks: Vec<usize> = (0..50).map(|_| rng.below(ids.len())).collect();
    let started = Instant::now();
    for (j, &i) in picks.iter().enumerate() {
        let id = format!("extra-{j}");
        index.upsert(&[(id.as_str(), 2, vectors[i].as_slice())])?;
    }
    let insert = started.elapsed().as_secs_f64() / picks.len() as f64;
    let started = Instant::now();
    for j in 0..picks.len() {
        index.remove(&[format!("extra-{j}").as_str()])?;
    }
    let remove = started.elapsed().as_secs_f64() / picks.len() as f64;
    let started = Instant::now();
    for &i in &picks {
        index.remove(&[ids[i].as_str()])?;
        index.upsert(&[(ids[i].as_str(), 1, vectors[i].as_slice())])?;
    }
    let cycle = started.elapsed().as_secs_f64() / picks.len() as f64;
    println!(
        "maintenance: upsert of one new doc {:.1} ms, remove of one doc {:.1} ms, \
         remove + re-insert {:.1} ms",
        insert * 1e3,
        remove * 1e3,
        cycle * 1e3
    );
    Ok(())
}

/// `n` unit vectors drawn around the rows of `real` (see the module docs).
fn around_real(
    real: &[f32],
    dim: usize,
    n: usize,
    spread: f32,
    seed: u64,
) -> Result<Vec<Vec<f32>>, Error> {
    if real.is_empty() || !real.len().is_multiple_of(dim) {
        return Err(format!("vector file is not a whole number of {dim}-float rows").into());
    }
    let rows = real.len() / dim;
    let row = |i: usize| &real[i * dim..(i + 1) * dim];
    let mut rng = Rng::new(seed);
    println!("drawing around {rows} real vectors, spread {spread}");
    Ok((0..n)
        .map(|i| {
            if i < rows {
                return row(i).to_vec();
            }
            let (a, b, c) = (rng.below(rows), rng.below(rows), rng.below(rows));
            let v: Vec<f32> = row(a)
                .iter()
                .zip(row(b))
                .zip(row(c))
                .map(|((x, y), z)| x + spread * (y - z))
                .collect();
            support::unit(v)
        })
        .collect())
}

fn query_nets(model: &Hypencoder, args: &Args, dim: usize, seed: u64) -> Result<QNets, Error> {
    let tokens: usize = args.num("tokens", 16)?;
    let (states, q) = match args.path("query-states") {
        Some(file) => {
            let mut states = read_f32(&file)?;
            if states.len() % (tokens * dim) != 0 {
                return Err(format!("query states are not whole {tokens} × {dim} queries").into());
            }
            let q = (states.len() / (tokens * dim)).min(args.num("queries", usize::MAX)?);
            states.truncate(q * tokens * dim);
            (states, q)
        }
        None => {
            let q: usize = args.num("queries", 20)?;
            let scale: f32 = args.num("state-scale", 0.41)?;
            let mut rng = Rng::new(seed ^ 0x51A7E5);
            (
                (0..q * tokens * dim)
                    .map(|_| scale * rng.gaussian())
                    .collect(),
                q,
            )
        }
    };
    // A token row of exact zeros is padding.
    let mask: Vec<f32> = states
        .chunks_exact(dim)
        .map(|token| f32::from(u8::from(token.iter().any(|&x| x != 0.0))))
        .collect();
    let states = Tensor::from_vec(states, (q, tokens, dim), &Device::Cpu)?;
    let mask = Tensor::from_vec(mask, (q, tokens), &Device::Cpu)?;
    Ok(model.generate(&QueryStates::new(states, mask)?)?)
}

fn read_f32(path: &Path) -> Result<Vec<f32>, Error> {
    let bytes = std::fs::read(path)?;
    if bytes.len() % 4 != 0 {
        return Err(format!("{} is not a whole number of f32", path.display()).into());
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().unwrap_or(f64::NAN)
}

/// (VmRSS, VmHWM) in KiB from /proc/self/status; zeros elsewhere.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let name = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{name}, {cores} cores")
}

/// `--key value` pairs.
struct Args(HashMap<String, String>);

impl Args {
    fn parse() -> Result<Self, Error> {
        let mut map = HashMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(key) = args.next() {
            let Some(key) = key.strip_prefix("--") else {
                return Err(format!("expected --key value, got {key}").into());
            };
            let value = args
                .next()
                .ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key.to_string(), value);
        }
        Ok(Self(map))
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, Error> {
        match self.0.get(key) {
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{key}: cannot parse {v:?}").into()),
            None => Ok(default),
        }
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        self.0.get(key).map(PathBuf::from)
    }

    /// `C,nCand,maxIter` triples separated by `;`.
    fn settings(&self) -> Result<Vec<(usize, usize, usize)>, Error> {
        let text = self.0.get("settings").map_or(
            "256,8,16;256,12,16;512,12,16;256,16,16;1024,32,16",
            String::as_str,
        );
        text.split(';')
            .map(|triple| {
                let parts: Vec<usize> = triple
                    .split(',')
                    .map(|p| p.trim().parse())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("--settings: bad triple {triple:?}"))?;
                match parts[..] {
                    [c, n, r] => Ok((c, n, r)),
                    _ => Err(format!("--settings: bad triple {triple:?}").into()),
                }
            })
            .collect()
    }
}
