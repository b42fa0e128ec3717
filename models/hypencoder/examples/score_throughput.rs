//! Exhaustive q-net scoring throughput on synthetic data, one query at a
//! time: `cargo run --release -p mnemos-hypencoder --example score_throughput
//! [N ...]`. Set `RAYON_NUM_THREADS=1` to measure one thread, as the serving
//! workers run.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use mnemos_hypencoder::scoring::BLOCK_ROWS;
use mnemos_hypencoder::{Hypencoder, HypencoderConfig, QueryStates};

/// As in the `mnemos` binary: freed tensor buffers are reused instead of
/// being returned to the kernel and page-faulted back in.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![5_000, 100_000]
    } else {
        sizes
    };
    let cfg = HypencoderConfig::default();
    let h = cfg.hidden_size;
    let layers = cfg.num_hidden_layers;
    let model = Hypencoder::new(cfg, 0)?;
    let dev = Device::Cpu;

    // One 12-token query; generating its q-net is timed separately.
    let states = Tensor::randn(0f32, 0.5, (1, 12, h), &dev)?;
    let queries = QueryStates::new(states, Tensor::ones((1, 12), DType::F32, &dev)?)?;
    let start = Instant::now();
    let reps = 20;
    for _ in 0..reps {
        model.generate(&queries)?;
    }
    println!(
        "generate: {:.2} ms per query (h={h}, L={layers})",
        start.elapsed().as_secs_f64() * 1e3 / reps as f64
    );
    let qnets = model.generate(&queries)?;

    for n in sizes {
        let docs = Tensor::randn(0f32, 0.05, (n, h), &dev)?;
        if n <= 10_000 {
            // The differentiable form, for comparison: seven tensor ops per
            // layer instead of one fused pass after the product.
            let detached = qnets.detach();
            detached.forward(&docs)?;
            let start = Instant::now();
            detached.forward(&docs)?;
            println!(
                "N={n:>7} differentiable forward: {:8.2} ms per query",
                start.elapsed().as_secs_f64() * 1e3
            );
        }
        for block in [128, 256, BLOCK_ROWS, 1024, 4096] {
            qnets.score_blocked(&docs, block)?; // warm-up
            let reps = (200_000 / n).clamp(1, 20);
            let start = Instant::now();
            for _ in 0..reps {
                qnets.score_blocked(&docs, block)?;
            }
            let secs = start.elapsed().as_secs_f64() / reps as f64;
            let gflops = 2.0 * (layers * h * h + h) as f64 * n as f64 / secs / 1e9;
            println!(
                "N={n:>7} block={block:>5}: {:8.2} ms per query, {:9.0} docs/s, {gflops:5.1} GFLOP/s",
                secs * 1e3,
                n as f64 / secs
            );
        }
    }
    Ok(())
}
