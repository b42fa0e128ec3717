//! Criterion benches of one memory layer alone: time per token as the
//! memory grows from N = 16k to 1M values (n = 128 … 1024; k = 32, H = 4,
//! dim = 256, d_k = 128), for the product-key layer and Memory+, one token
//! at a time (decoding) and 64 at a time (prefill / scoring); and a dense
//! SwiGLU network with the same parameter count as each memory, one token
//! at a time. Sub-keys are packed in eight bits as in a served model
//! ([`KeyPrecision::Int8`], `lm.memory_key_precision`'s default); `T=1 f16`
//! packs them in f16 ([`KeyPrecision::F16`]); `T=1 unpacked` scores the
//! f32 key tensor by `matmul` instead. Run by hand:
//! `RAYON_NUM_THREADS=1 cargo bench -p mnemos-lm --bench memory_layer`.
//! `examples/memory_scale.rs` prints the same figures as a table, faster.
//!
//! dim = 256 is the width of the models we train on CPU; d_k = 128 (not
//! the paper's 256) because each token streams all `H·n·d_k` sub-key
//! entries, the cost that grows with √N, and 128 halves it at this width.

use std::time::Duration;

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mnemos_lm::{KeyPrecision, MemoryConfig, MemoryLayer, MemoryVariant, SwiGlu};

/// As in the `mnemos` binary: freed tensor buffers are reused.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DIM: usize = 256;
const SUB_KEYS: [usize; 4] = [128, 256, 512, 1024];

/// N = n² as the issue names it.
fn label(n: usize) -> &'static str {
    match n {
        128 => "N=16k",
        256 => "N=65k",
        512 => "N=262k",
        _ => "N=1M",
    }
}

fn config(n: usize, variant: MemoryVariant) -> MemoryConfig {
    MemoryConfig {
        layers: vec![0],
        n_keys: n,
        k: 32,
        heads: 4,
        key_dim: 128,
        query_batch_norm: true,
        variant,
    }
}

/// Distinct random tokens, cycled, so value rows are not all cache hits.
fn inputs(tokens: usize, count: usize) -> Vec<Tensor> {
    (0..count)
        .map(|_| Tensor::randn(0f32, 1.0, (tokens, DIM), &Device::Cpu).expect("input"))
        .collect()
}

fn benches(c: &mut Criterion) {
    let single = inputs(1, 256);
    let batches = inputs(64, 8);
    for variant in [MemoryVariant::Pkm, MemoryVariant::MemoryPlus] {
        let name = match variant {
            MemoryVariant::Pkm => "pkm",
            MemoryVariant::MemoryPlus => "memory_plus",
        };
        let mut group = c.benchmark_group(format!("{name}_per_token"));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for n in SUB_KEYS {
            let mut unpacked = MemoryLayer::new(DIM, &config(n, variant), 1).expect("layer");
            // Weights as an f16 checkpoint holds them.
            unpacked.round_to_f16().expect("round");
            // As served: sub-keys packed in eight bits at load.
            let mut layer = unpacked.clone();
            layer.pack_keys_as(KeyPrecision::Int8).expect("pack");
            let label = label(n);
            group.throughput(Throughput::Elements(1));
            let mut i = 0;
            group.bench_function(BenchmarkId::new("T=1", label), |b| {
                b.iter(|| {
                    i += 1;
                    layer.forward(&single[i % single.len()]).expect("forward")
                })
            });
            if variant == MemoryVariant::Pkm {
                // Sub-keys in f16 (`lm.memory_key_precision = "f16"`).
                let mut f16 = unpacked.clone();
                f16.pack_keys_as(KeyPrecision::F16).expect("pack f16");
                group.bench_function(BenchmarkId::new("T=1 f16", label), |b| {
                    b.iter(|| {
                        i += 1;
                        f16.forward(&single[i % single.len()]).expect("forward")
                    })
                });
                // The same layer scoring its f32 key tensor by `matmul`.
                group.bench_function(BenchmarkId::new("T=1 unpacked", label), |b| {
                    b.iter(|| {
                        i += 1;
                        unpacked
                            .forward(&single[i % single.len()])
                            .expect("forward")
                    })
                });
                group.throughput(Throughput::Elements(64));
                group.bench_function(BenchmarkId::new("T=64", label), |b| {
                    b.iter(|| {
                        i += 1;
                        layer.forward(&batches[i % batches.len()]).expect("forward")
                    })
                });
            }
        }
        group.finish();
    }

    // Dense SwiGLU networks of the same parameter count as each PKM layer
    // (values, keys, query projection): at 1M values a 268M-parameter FFN.
    let mut group = c.benchmark_group("dense_swiglu_same_params");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for n in SUB_KEYS {
        let params = config(n, MemoryVariant::Pkm).layer_parameters(DIM) + n * n * DIM;
        let ffn = SwiGlu::new(DIM, params / (3 * DIM), 2).expect("ffn");
        let label = label(n);
        let mut i = 0;
        group.bench_function(BenchmarkId::new("T=1", label), |b| {
            b.iter(|| {
                i += 1;
                ffn.forward(&single[i % single.len()]).expect("forward")
            })
        });
    }
    group.finish();
}

criterion_group!(memory_layer, benches);
criterion_main!(memory_layer);
