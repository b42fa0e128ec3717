//! Quick single-number throughput check of the image encoder, for when a
//! full criterion run (`benches/encode.rs`) is too slow:
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release -p mnemos-vision --example image_throughput -- [batch] [seconds] [max_batch] [network]
//! ```
//!
//! Encodes calls of `batch` (default 16) fixture PNGs (224×224 network
//! input after resize and crop) for `seconds` (default 10) after a short
//! warm-up, and prints images/s end to end (decode, resize, network,
//! normalise), for the network alone and for decoding + resizing alone.
//! `max_batch` sets [`EncoderOptions::max_batch`] (images per forward
//! pass); with `network` as fourth argument only the network is timed
//! (for profiling).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use mnemos_vision::{EncoderOptions, ImageEncoder, ImageInput};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(16);
    let seconds: f64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10.0);
    let max_batch: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(EncoderOptions::default().max_batch);
    let only = args.next();
    let only = only.as_deref();
    let Some(dir) = support::model_dir() else {
        return Ok(());
    };
    let started = Instant::now();
    let encoder = ImageEncoder::load(
        &dir,
        EncoderOptions {
            max_batch,
            ..EncoderOptions::default()
        },
    )?;
    println!("loaded in {:.2?}", started.elapsed());

    let images = support::images();
    let inputs: Vec<ImageInput<'_>> = images
        .iter()
        .cycle()
        .take(batch)
        .map(|(_, bytes)| ImageInput::Encoded(bytes))
        .collect();

    let rate = |work: &dyn Fn() -> Result<(), Box<dyn std::error::Error>>| {
        let warm_up = Instant::now();
        while warm_up.elapsed() < Duration::from_secs(1) {
            work()?;
        }
        let mut batches = 0u32;
        let started = Instant::now();
        while started.elapsed().as_secs_f64() < seconds {
            work()?;
            batches += 1;
        }
        let elapsed = started.elapsed().as_secs_f64();
        Ok::<_, Box<dyn std::error::Error>>((
            f64::from(batches) * batch as f64 / elapsed,
            elapsed * 1e3 / f64::from(batches),
        ))
    };

    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    let preprocessed = inputs
        .iter()
        .map(|input| encoder.preprocess(input))
        .collect::<Result<Vec<_>, _>>()?;
    if only == Some("network") {
        // For profiling the forward pass alone.
        let (per_s, ms) = rate(&|| {
            encoder
                .embed_preprocessed(&preprocessed)
                .map(drop)
                .map_err(Into::into)
        })?;
        println!(
            "batch {batch} (max_batch {max_batch}): network {per_s:.1} images/s ({ms:.1} ms per batch, threads={threads})"
        );
        return Ok(());
    }
    let (images_per_s, ms) = rate(&|| encoder.embed(&inputs).map(drop).map_err(Into::into))?;
    let (net_per_s, _) = rate(&|| {
        encoder
            .embed_preprocessed(&preprocessed)
            .map(drop)
            .map_err(Into::into)
    })?;
    let (pre_per_s, _) = rate(&|| {
        for input in &inputs {
            encoder.preprocess(input)?;
        }
        Ok(())
    })?;
    println!(
        "batch {batch} (max_batch {max_batch}): {images_per_s:.1} images/s end to end ({ms:.1} ms per batch); network \
         alone {net_per_s:.1} images/s; decode + resize alone {pre_per_s:.0} images/s \
         (threads={threads})"
    );
    Ok(())
}
