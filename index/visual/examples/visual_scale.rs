//! Visual memory at scale: build time, recall@10 against exact search and
//! classify latency (image encoding excluded) for N synthetic embeddings.
//!
//! ```text
//! cargo run --release -p mnemos-visual --example visual_scale -- N \
//!     [--ef 32,64,128] [--dim 1280] [--queries 500] [--classes 1000] \
//!     [--rank 48] [--semantic 64] [--noise 0.3] [--m 32] \
//!     [--ef-construction 100] [--ann-above 10000] [--exact-timed 50] \
//!     [--prune K]
//! ```
//!
//! The data come from `tests/support/synthetic.rs` (documented there):
//! 1000 class centres in a 64-d semantic subspace, plus shared low-rank
//! (48) within-class variation, plus small isotropic noise, normalised;
//! queries are fresh draws from the same model. `--rank`, `--semantic`
//! and `--noise` change the model. The memory is filled in chunks generated on the fly, so the
//! example holds no copy of the data besides the memory's own; generation
//! time is not counted as build time.
//!
//! For each `ef`: recall@10 of the memory's search against the exact top
//! 10 (a flat scan of every stored vector), and the latency of
//! `classify_with_ef` with RankVoting and k = 10, one query at a time on
//! one thread. The exact scan's own latency is timed on the first
//! `--exact-timed` queries (the rest of the ground truth is computed on
//! all cores). With `--prune K`, a soft-pruning pass is then planned over
//! the whole memory (one top-K search per item, on all cores; what the
//! admin prune route does under the read lock) and timed. Progress goes
//! to stderr; the last stdout line is one JSON object with every figure.

#[path = "../tests/support/synthetic.rs"]
mod synthetic;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mnemos_hnsw::HnswParams;
use mnemos_visual::{Aggregation, Prune, VisualMemory, VisualParams};
use synthetic::{Spec, Synthetic};

const K: usize = 10;
/// Items generated and upserted per batch.
const CHUNK: usize = 16_384;

struct Args {
    n: usize,
    efs: Vec<usize>,
    spec: Spec,
    queries: usize,
    params: VisualParams,
    exact_timed: usize,
    prune: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let n = args
        .next()
        .ok_or("usage: visual_scale N [--ef 32,64] [--dim D] ...")?;
    let defaults = VisualParams::default();
    let mut a = Args {
        n: number(&n)?,
        efs: vec![32, 64, 128],
        spec: Spec::new(1280),
        queries: 500,
        params: defaults,
        exact_timed: 50,
        prune: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--ef" => a.efs = value.split(',').map(number).collect::<Result<_, _>>()?,
            "--dim" => a.spec.dim = number(&value)?,
            "--queries" => a.queries = number(&value)?,
            "--classes" => a.spec.classes = number(&value)?,
            "--rank" => a.spec.rank = number(&value)?,
            "--semantic" => a.spec.semantic = number(&value)?,
            "--noise" => a.spec.noise = value.parse().map_err(|e| format!("{value:?}: {e}"))?,
            "--m" => a.params.hnsw.m = number(&value)?,
            "--ef-construction" => a.params.hnsw.ef_construction = number(&value)?,
            "--ann-above" => a.params.ann_above = number(&value)?,
            "--exact-timed" => a.exact_timed = number(&value)?,
            "--prune" => a.prune = Some(number(&value)?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn number(s: &str) -> Result<usize, String> {
    s.replace('_', "")
        .parse()
        .map_err(|e| format!("{s:?}: {e}"))
}

/// Resident and peak resident memory of this process, in MiB.
fn rss_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(sorted.len() - 1) * p / 100].as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let (n, dim) = (args.n, args.spec.dim);
    let mut params = args.params.clone();
    // Below its own exact_below the graph index scans exactly; measure the
    // graph itself whatever N is.
    params.hnsw = HnswParams {
        exact_below: params.hnsw.exact_below.min(n / 2),
        ..params.hnsw
    };
    eprintln!("visual_scale: n={n} {:?} {params:?}", args.spec);

    // Build, chunk by chunk.
    let mut memory = VisualMemory::with_params(dim, params.clone())?;
    let mut data = Synthetic::new(args.spec.clone(), 1);
    let mut generating = Duration::ZERO;
    let started = Instant::now();
    let mut next_report = n / 10;
    for first in (0..n).step_by(CHUNK) {
        let t = Instant::now();
        let rows: Vec<(String, String, Vec<f32>)> = (first..(first + CHUNK).min(n))
            .map(|i| {
                let (class, v) = data.sample();
                (format!("img-{i}"), format!("class-{class}"), v)
            })
            .collect();
        generating += t.elapsed();
        let batch: Vec<(&str, &str, &[f32])> = rows
            .iter()
            .map(|(id, label, v)| (id.as_str(), label.as_str(), v.as_slice()))
            .collect();
        memory.upsert_batch(&batch)?;
        if memory.len() >= next_report {
            let (rss, peak) = rss_mib();
            eprintln!(
                "  {} items, {:.0} s building, rss {rss} MiB (peak {peak})",
                memory.len(),
                (started.elapsed() - generating).as_secs_f64()
            );
            next_report += n / 10;
        }
    }
    let build_s = (started.elapsed() - generating).as_secs_f64();
    let (rss_built, _) = rss_mib();
    let stats = memory.stats();
    eprintln!(
        "built {n} in {build_s:.1} s ({:.0} items/s; generating {:.1} s more), graph={} rss {rss_built} MiB",
        n as f64 / build_s,
        generating.as_secs_f64(),
        stats.graph
    );

    // Queries and exact truth.
    let mut query_data = data.with_seed(2);
    let queries: Vec<(usize, Vec<f32>)> = (0..args.queries).map(|_| query_data.sample()).collect();
    let timed = args.exact_timed.min(queries.len());
    let mut exact_times = Vec::with_capacity(timed);
    let mut truth: Vec<HashSet<usize>> = Vec::with_capacity(queries.len());
    for (_, q) in &queries[..timed] {
        let t = Instant::now();
        let hits = memory.search_exact(q, K)?;
        exact_times.push(t.elapsed());
        truth.push(hits.iter().map(|h| h.slot).collect());
    }
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let rest = &queries[timed..];
    let per = rest.len().div_ceil(threads).max(1);
    let parts: Vec<Vec<HashSet<usize>>> = std::thread::scope(|s| {
        let workers: Vec<_> = rest
            .chunks(per)
            .map(|part| {
                let memory = &memory;
                s.spawn(move || {
                    part.iter()
                        .map(|(_, q)| {
                            let hits = memory.search_exact(q, K).expect("valid query");
                            hits.iter().map(|h| h.slot).collect()
                        })
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("exact worker"))
            .collect()
    });
    truth.extend(parts.into_iter().flatten());
    exact_times.sort();
    let exact_p50 = percentile(&exact_times, 50);
    eprintln!("exact scan: p50 {exact_p50:.2} ms over {timed} queries");

    // Each ef: recall, then latency of classify.
    let mut results = Vec::new();
    for &ef in &args.efs {
        let mut found = 0usize;
        let mut expected = 0usize;
        for ((_, q), truth) in queries.iter().zip(&truth) {
            let hits = memory.search_with_ef(q, K, None, Some(ef))?;
            expected += truth.len();
            found += hits.iter().filter(|h| truth.contains(&h.slot)).count();
        }
        let recall = found as f64 / expected.max(1) as f64;
        let mut times = Vec::with_capacity(queries.len());
        let mut correct = 0usize;
        for (class, q) in &queries {
            let t = Instant::now();
            let decision = memory.classify_with_ef(q, K, Aggregation::RankVoting, Some(ef))?;
            times.push(t.elapsed());
            if decision.label.as_deref() == Some(format!("class-{class}").as_str()) {
                correct += 1;
            }
        }
        times.sort();
        let (p50, p90, p99) = (
            percentile(&times, 50),
            percentile(&times, 90),
            percentile(&times, 99),
        );
        let accuracy = correct as f64 / queries.len().max(1) as f64;
        eprintln!(
            "ef {ef:>4}: recall@{K} {recall:.4}  classify p50 {p50:.3} ms  p90 {p90:.3}  p99 {p99:.3}  accuracy {accuracy:.3}"
        );
        results.push(serde_json::json!({
            "ef": ef, "recall_at_10": recall, "p50_ms": p50, "p90_ms": p90,
            "p99_ms": p99, "accuracy": accuracy,
        }));
    }
    let pruning = match args.prune {
        Some(k) => {
            let started = Instant::now();
            let report = memory.plan_prune(Prune::Soft { k })?;
            let s = started.elapsed().as_secs_f64();
            let flagged = report.downweighted().count();
            eprintln!(
                "soft prune, top-{k}: planned in {s:.1} s ({:.3} ms per item); \
                 {flagged} of {} items were a wrong-label neighbour at least once",
                s * 1e3 / n.max(1) as f64,
                report.examined
            );
            serde_json::json!({"k": k, "plan_s": s, "flagged": flagged})
        }
        None => serde_json::Value::Null,
    };
    let (rss, peak) = rss_mib();
    let report = serde_json::json!({
        "n": n, "dim": dim, "classes": args.spec.classes, "rank": args.spec.rank,
        "semantic": args.spec.semantic, "noise": args.spec.noise,
        "queries": queries.len(), "graph": stats.graph,
        "m": params.hnsw.m, "ef_construction": params.hnsw.ef_construction,
        "ann_above": params.ann_above,
        "build_s": build_s, "generate_s": generating.as_secs_f64(),
        "exact_p50_ms": exact_p50, "rss_mib": rss, "peak_rss_mib": peak,
        "results": results, "prune": pruning,
    });
    println!("{report}");
    Ok(())
}
