//! Time of one training step at the default model shape on synthetic data:
//! `cargo run --release -p mnemos-hypencoder --example train_step [B] [T]
//! [negatives]`, to size a CPU training run before starting one.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use mnemos_hypencoder::train::{TrainBatch, TrainOptions, Trainer};
use mnemos_hypencoder::{Hypencoder, HypencoderConfig, QueryStates};

/// As in the `mnemos` binary: freed tensor buffers are reused instead of
/// being returned to the kernel and page-faulted back in.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (b, t, negatives) = (arg(0, 32), arg(1, 24), arg(2, 7));
    let cfg = HypencoderConfig::default();
    let h = cfg.hidden_size;
    let mut trainer = Trainer::new(&Hypencoder::new(cfg, 0)?, TrainOptions::default())?;
    let dev = Device::Cpu;
    let batch = TrainBatch {
        queries: QueryStates::new(
            Tensor::randn(0f32, 0.5, (b, t, h), &dev)?,
            Tensor::ones((b, t), DType::F32, &dev)?,
        )?,
        documents: Tensor::randn(0f32, 0.05, (b, 1 + negatives, h), &dev)?,
        teacher: Some(Tensor::randn(0f32, 1.0, (b, 1 + negatives), &dev)?),
    };
    trainer.step(&batch)?; // warm-up
    let steps = 5;
    let start = Instant::now();
    for _ in 0..steps {
        trainer.step(&batch)?;
    }
    let secs = start.elapsed().as_secs_f64() / steps as f64;
    println!(
        "B={b} T={t} negatives={negatives}: {:.0} ms per step, {:.1} ms per query",
        secs * 1e3,
        secs * 1e3 / b as f64
    );
    Ok(())
}
