//! Training-step time of the default small LM on synthetic tokens, dense
//! and with a memory layer: `RAYON_NUM_THREADS=1 cargo run --release -p
//! mnemos-lm --example lm_train_step [batch] [seq_len] [steps]`.
//!
//! The memory layer adds a dense `(N, dim)` gradient and AdamW update of
//! its value table every step (candle has no sparse gradients), which this
//! measures alongside the lookup itself.

use std::time::Instant;

use mnemos_lm::train::{Batch, TrainOptions, Trainer};
use mnemos_lm::{Lm, LmConfig, MemoryConfig, MemoryVariant, SplitMix64};

/// As in the `mnemos` binary: freed tensor buffers are reused.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let batch = args.first().copied().unwrap_or(8);
    let seq_len = args.get(1).copied().unwrap_or(128);
    let steps = args.get(2).copied().unwrap_or(5);
    let base = LmConfig {
        max_seq_len: seq_len,
        ..LmConfig::default()
    };
    let mut rng = SplitMix64::new(1);
    let tokens: Vec<u32> = (0..100_000)
        .map(|_| rng.below(base.vocab_size) as u32)
        .collect();
    for (name, memory) in [
        ("dense", None),
        ("pkm N=65k", Some(MemoryVariant::Pkm)),
        ("memory+ N=65k", Some(MemoryVariant::MemoryPlus)),
    ] {
        let config = LmConfig {
            memory: memory.map(|variant| MemoryConfig {
                variant,
                ..MemoryConfig::default()
            }),
            ..base.clone()
        };
        let params = config.num_parameters();
        let model = Lm::new(config, 0)?;
        let mut trainer = Trainer::new(&model, TrainOptions::default())?;
        let first = Batch::random(&tokens, batch, seq_len, &mut rng)?;
        trainer.step(&first)?; // warm-up
        let start = Instant::now();
        let mut loss = 0.0;
        for _ in 0..steps {
            loss = trainer
                .step(&Batch::random(&tokens, batch, seq_len, &mut rng)?)?
                .loss;
        }
        let secs = start.elapsed().as_secs_f64() / steps as f64;
        println!(
            "{name:>14}: {params:>10} params, {:7.0} ms/step, {:6.0} tokens/s (batch {batch}×{seq_len}, loss {loss:.2})",
            secs * 1e3,
            (batch * seq_len) as f64 / secs
        );
    }
    Ok(())
}
