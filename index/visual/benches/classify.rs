//! Classify latency of the visual memory, image encoding excluded: one
//! 1280-d query, k = 10, RankVoting, on synthetic image-like embeddings
//! (`tests/support/synthetic.rs`).
//!
//! - `classify_exact_10000x1280`: a flat scan of 10k items (below the
//!   default graph threshold).
//! - `classify_graph_{N}x1280/ef/*`: the HNSW graph over N items, N from
//!   `MNEMOS_VISUAL_BENCH_N` (default 20,000, built in under a minute on
//!   two cores; the scale example `visual_scale` covers a million). The
//!   data keep the million-item case's 1000 samples per class (N/1000
//!   classes): a graph's work per query depends on how many samples a
//!   query's class has, and 1000 classes over 20k items would make a
//!   sparse, slower case that a large memory never is.
//!
//! Run with `cargo bench -p mnemos-visual`.

#[path = "../tests/support/synthetic.rs"]
mod synthetic;

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mnemos_hnsw::HnswParams;
use mnemos_visual::{Aggregation, VisualMemory, VisualParams};
use synthetic::{Spec, Synthetic};

const DIM: usize = 1280;
const K: usize = 10;
const EXACT_N: usize = 10_000;
const CHUNK: usize = 16_384;

fn graph_size() -> usize {
    std::env::var("MNEMOS_VISUAL_BENCH_N")
        .ok()
        .and_then(|n| n.replace('_', "").parse().ok())
        .unwrap_or(20_000)
}

/// A memory of `n` synthetic items of `classes` classes and 256 queries
/// from the same model.
fn build(n: usize, classes: usize, params: VisualParams) -> (VisualMemory, Vec<Vec<f32>>) {
    let spec = Spec {
        classes,
        ..Spec::new(DIM)
    };
    let mut data = Synthetic::new(spec, 1);
    let mut memory = VisualMemory::with_params(DIM, params).expect("valid parameters");
    let started = Instant::now();
    for first in (0..n).step_by(CHUNK) {
        let rows: Vec<(String, String, Vec<f32>)> = (first..(first + CHUNK).min(n))
            .map(|i| {
                let (class, v) = data.sample();
                (format!("img-{i}"), format!("class-{class}"), v)
            })
            .collect();
        let batch: Vec<(&str, &str, &[f32])> = rows
            .iter()
            .map(|(id, label, v)| (id.as_str(), label.as_str(), v.as_slice()))
            .collect();
        memory.upsert_batch(&batch).expect("upsert");
    }
    eprintln!(
        "built {n} x {DIM} in {:.1?} (graph: {})",
        started.elapsed(),
        memory.is_graph()
    );
    let mut queries = data.with_seed(2);
    let queries = (0..256).map(|_| queries.sample().1).collect();
    (memory, queries)
}

fn recall(memory: &VisualMemory, queries: &[Vec<f32>], ef: usize) -> f64 {
    let (mut found, mut expected) = (0, 0);
    for q in queries {
        let truth = memory.search_exact(q, K).expect("search");
        let hits = memory.search_with_ef(q, K, None, Some(ef)).expect("search");
        expected += truth.len();
        found += hits
            .iter()
            .filter(|h| truth.iter().any(|t| t.slot == h.slot))
            .count();
    }
    found as f64 / expected.max(1) as f64
}

fn classify_exact(c: &mut Criterion) {
    let params = VisualParams {
        ann_above: usize::MAX,
        ..VisualParams::default()
    };
    let (memory, queries) = build(EXACT_N, 1000, params);
    let mut group = c.benchmark_group(format!("classify_exact_{EXACT_N}x{DIM}"));
    group.bench_function("rank_voting_k10", |b| {
        let mut next = queries.iter().cycle();
        b.iter(|| {
            let q = next.next().expect("cycle never ends");
            black_box(
                memory
                    .classify(q, K, Aggregation::RankVoting)
                    .expect("classify"),
            )
        })
    });
    group.finish();
}

fn classify_graph(c: &mut Criterion) {
    let n = graph_size();
    let defaults = VisualParams::default();
    // A graph from the first item, searched through the graph at any N.
    let params = VisualParams {
        ann_above: 0,
        hnsw: HnswParams {
            exact_below: 0,
            ..defaults.hnsw
        },
    };
    let (memory, queries) = build(n, (n / 1000).max(2), params);
    let mut group = c.benchmark_group(format!("classify_graph_{n}x{DIM}"));
    for ef in [32, 64, 128] {
        eprintln!("ef {ef}: recall@{K} {:.4}", recall(&memory, &queries, ef));
        group.bench_with_input(BenchmarkId::new("ef", ef), &ef, |b, &ef| {
            let mut next = queries.iter().cycle();
            b.iter(|| {
                let q = next.next().expect("cycle never ends");
                black_box(
                    memory
                        .classify_with_ef(q, K, Aggregation::RankVoting, Some(ef))
                        .expect("classify"),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, classify_exact, classify_graph);
criterion_main!(benches);
