//! Criterion benches of the Hypencoder's hot paths: generating one query's
//! q-net, and scoring 5,000 documents with it (the default model shape).
//! Run by hand: `RAYON_NUM_THREADS=1 cargo bench -p mnemos-hypencoder`.

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mnemos_hypencoder::{Hypencoder, HypencoderConfig, QueryStates};

/// As in the `mnemos` binary: freed tensor buffers are reused instead of
/// being returned to the kernel and page-faulted back in.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn benches(c: &mut Criterion) {
    let cfg = HypencoderConfig::default();
    let h = cfg.hidden_size;
    let model = Hypencoder::new(cfg, 0).expect("model");
    let dev = Device::Cpu;
    let states = Tensor::randn(0f32, 0.5, (1, 12, h), &dev).expect("states");
    let mask = Tensor::ones((1, 12), DType::F32, &dev).expect("mask");
    let queries = QueryStates::new(states, mask).expect("queries");
    c.bench_function("generate_one_query", |b| {
        b.iter(|| model.generate(&queries).expect("generate"))
    });

    let qnets = model.generate(&queries).expect("generate");
    let n = 5_000;
    let docs = Tensor::randn(0f32, 0.05, (n, h), &dev).expect("docs");
    let mut group = c.benchmark_group("score");
    group.throughput(Throughput::Elements(n as u64));
    group.sample_size(20);
    group.bench_function("exhaustive_5k", |b| {
        b.iter(|| qnets.score(&docs).expect("score"))
    });
    let rows: Vec<u32> = (0..n as u32).step_by(5).collect();
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("rows_1k_of_5k", |b| {
        b.iter(|| qnets.score_rows(&docs, &rows).expect("score"))
    });
    group.finish();
}

criterion_group!(score, benches);
criterion_main!(score);
