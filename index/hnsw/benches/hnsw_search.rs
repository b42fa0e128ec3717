//! Query latency of the vector index at production scale: 100k clustered
//! 384-d unit vectors (the same synthetic embeddings as the tests), k = 10.
//!
//! The index is built once before measuring, which takes minutes on two
//! cores; `MNEMOS_HNSW_BENCH_N` sets a smaller size for a quick run.
//! Run with `cargo bench -p mnemos-hnsw`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mnemos_hnsw::{HnswParams, VectorIndex};
use mnemos_index_core::{IndexRead, IndexWrite};
use support::{id, Embeddings};

const DIM: usize = 384;
const K: usize = 10;

fn corpus_size() -> usize {
    std::env::var("MNEMOS_HNSW_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}

fn build(n: usize) -> (VectorIndex, Vec<Vec<f32>>) {
    let mut embeddings = Embeddings::new(DIM, 7);
    let corpus = embeddings.samples(n);
    let queries = embeddings.samples(256);
    // Compaction off: the dead-point benchmark below wants tombstones kept.
    let params = HnswParams {
        compact_ratio: 1.0,
        ..HnswParams::default()
    };
    let index = VectorIndex::new(DIM, params).expect("valid parameters");
    let ids: Vec<String> = (0..n).map(id).collect();
    let entries: Vec<(&str, u64, &[f32])> = ids
        .iter()
        .zip(&corpus)
        .map(|(id, v)| (id.as_str(), 1, v.as_slice()))
        .collect();
    let started = Instant::now();
    index.upsert(&entries).expect("upsert");
    eprintln!("built {n} x {DIM} in {:.1?}", started.elapsed());
    report_recall(&index, &queries, "no dead points");
    (index, queries)
}

fn search_latency(c: &mut Criterion) {
    let n = corpus_size();
    let (index, queries) = build(n);
    let mut group = c.benchmark_group(format!("search_{n}x{DIM}_k{K}"));
    for ef in [32, 64, 96, 128] {
        group.bench_with_input(BenchmarkId::new("graph_ef", ef), &ef, |b, &ef| {
            let mut next = queries.iter().cycle();
            b.iter(|| {
                let query = next.next().expect("cycle never ends");
                black_box(index.search_with_ef(query, K, ef).expect("search"))
            })
        });
    }
    group.sample_size(10);
    group.bench_function("exact", |b| {
        let mut next = queries.iter().cycle();
        b.iter(|| {
            let query = next.next().expect("cycle never ends");
            black_box(index.search_exact(query, K).expect("search"))
        })
    });
    group.finish();

    // 20% of points tombstoned but still in the graph: what the filtered
    // walk costs just before a compaction would start.
    let removed: Vec<String> = (0..n).filter(|i| i % 5 == 0).map(id).collect();
    let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
    index.remove(&removed).expect("remove");
    report_recall(&index, &queries, "20% dead points");
    c.bench_function(&format!("search_{n}x{DIM}_k{K}/default_20pct_dead"), |b| {
        let mut next = queries.iter().cycle();
        b.iter(|| {
            let query = next.next().expect("cycle never ends");
            black_box(index.search(query, K).expect("search"))
        })
    });
}

/// Latency means little without the recall it buys; printed, not measured.
fn report_recall(index: &VectorIndex, queries: &[Vec<f32>], label: &str) {
    let recall = index.recall_at_k(queries, K).expect("recall");
    eprintln!("recall@{K} at default ef_search, {label}: {recall:.4}");
}

criterion_group!(benches, search_latency);
criterion_main!(benches);
