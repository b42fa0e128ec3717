//! Query latency of exhaustive scoring against graph search, one query at a
//! time on 20k clustered 384-d unit vectors (the tests' synthetic
//! embeddings) with the committed trained Hypencoder
//! (`models/trained/hypencoder-scifact`; a randomly initialised one of the
//! default configuration if it is missing), k = 10. Query token states are
//! random normal with MiniLM's spread (0.41). `MNEMOS_HYPENCODER_BENCH_N` sets another size
//! (building the graph costs about `N²·384` flops, seconds at 20k). Run with
//! `cargo bench -p mnemos-hypencoder-index`; `RAYON_NUM_THREADS=1` times
//! one thread, as the serving workers run. `examples/graph_scale.rs`
//! measures recall and larger collections.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mnemos_hypencoder::{Hypencoder, HypencoderConfig};
use mnemos_hypencoder_index::{GraphParams, GraphSearch, HypencoderIndex};
use mnemos_index_core::IndexWrite;
use support::{entries, id, qnets, Embeddings};

const K: usize = 10;

fn corpus_size() -> usize {
    std::env::var("MNEMOS_HYPENCODER_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

fn search_latency(c: &mut Criterion) {
    let n = corpus_size();
    let trained = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/trained/hypencoder-scifact");
    let model = Hypencoder::load(&trained).unwrap_or_else(|e| {
        eprintln!("no trained model ({e}); using a random one");
        Hypencoder::new(HypencoderConfig::default(), 1).expect("model")
    });
    let dim = model.config().hidden_size;
    let vectors = Embeddings::new(dim, 1000, 7).samples(n);
    let ids: Vec<String> = (0..n).map(id).collect();
    let index = HypencoderIndex::new(dim, GraphParams::default()).expect("params");
    let started = Instant::now();
    index.upsert(&entries(&ids, &vectors)).expect("upsert");
    eprintln!(
        "built {n} x {dim}, 100 neighbours, in {:.1?}",
        started.elapsed()
    );
    let queries = qnets(&model, 16, 16, 0.41, 3);
    let singles: Vec<_> = (0..queries.len())
        .map(|i| queries.slice(i, 1).expect("slice"))
        .collect();

    let mut group = c.benchmark_group(format!("hypencoder_{n}x{dim}_k{K}"));
    group.sample_size(10);
    group.bench_function("exhaustive", |b| {
        let mut next = singles.iter().cycle();
        b.iter(|| black_box(index.search_exhaustive(next.next().expect("cycle"), K)))
    });
    for (label, search) in [
        (
            "C256_nCand8",
            GraphSearch {
                entry_points: 256,
                candidates: 8,
                ..GraphSearch::default()
            },
        ),
        ("default", GraphSearch::default()),
    ] {
        group.bench_with_input(BenchmarkId::new("graph", label), &search, |b, search| {
            let mut next = singles.iter().cycle();
            b.iter(|| black_box(index.search_graph(next.next().expect("cycle"), K, search)))
        });
    }
    group.finish();
}

criterion_group!(benches, search_latency);
criterion_main!(benches);
