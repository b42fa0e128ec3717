//! Quick single-number throughput check of the MiniLM encoder, for when a
//! full criterion run (`benches/embed.rs`) is too slow:
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release -p mnemos-text --example throughput -- [batch] [seconds] [max_batch]
//! ```
//!
//! Embeds batches of `batch` (default 8) sentences of ~38 tokens for
//! `seconds` (default 10) after a short warm-up and prints sentences/s;
//! `max_batch` sets [`EncoderOptions::max_batch`].

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

/// As in the `mnemos` binary, so the figures match what it serves with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use mnemos_text::{Encoder, EncoderOptions, MiniLmEncoder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8);
    let seconds: f64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10.0);
    let defaults = EncoderOptions::default();
    let max_batch: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(defaults.max_batch);
    let Some(dir) = support::model_dir() else {
        return Ok(());
    };
    let started = Instant::now();
    let encoder = MiniLmEncoder::load(
        &dir,
        EncoderOptions {
            max_batch,
            ..defaults
        },
    )?;
    println!("loaded in {:.2?}", started.elapsed());

    let texts = support::batch_of(batch);
    let warm_up = Instant::now();
    while warm_up.elapsed() < Duration::from_secs(1) {
        encoder.embed(&texts)?;
    }
    let mut batches = 0u32;
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        encoder.embed(&texts)?;
        batches += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "batch {batch} (max_batch {max_batch}): {:.1} sentences/s ({:.2} ms per batch, {batches} batches, threads={})",
        f64::from(batches) * batch as f64 / elapsed,
        elapsed * 1e3 / f64::from(batches),
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into()),
    );
    Ok(())
}
