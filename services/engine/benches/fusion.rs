//! Fusion cost: RRF and normalised linear fusion of two 100-deep lists
//! (the default `search.fusion_depth`), half of the ids shared.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion};
use mnemos_config::Normalization;
use mnemos_engine::fusion::{fuse_linear, fuse_rrf, Ranked};
use mnemos_index_core::Hit;

fn list(backend: &'static str, offset: usize, depth: usize) -> Ranked<'static> {
    Ranked {
        backend,
        hits: (0..depth)
            .map(|i| Hit {
                id: format!("doc-{}", i + offset),
                score: 1.0 / (1.0 + i as f32),
            })
            .collect(),
    }
}

fn bench(c: &mut Criterion) {
    let lists = [list("bm25", 0, 100), list("dense", 50, 100)];
    let weights: BTreeMap<String, f32> = [("bm25".into(), 0.3), ("dense".into(), 0.7)].into();
    c.bench_function("fuse_rrf/2x100/k10", |b| {
        b.iter(|| fuse_rrf(std::hint::black_box(&lists), 60.0, 10))
    });
    c.bench_function("fuse_linear_minmax/2x100/k10", |b| {
        b.iter(|| {
            fuse_linear(
                std::hint::black_box(&lists),
                &weights,
                Normalization::MinMax,
                10,
            )
        })
    });
    c.bench_function("fuse_linear_zscore/2x100/k10", |b| {
        b.iter(|| {
            fuse_linear(
                std::hint::black_box(&lists),
                &weights,
                Normalization::ZScore,
                10,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
