//! Throughput of the image encoder on one thread.
//!
//! Run by hand, on an otherwise idle machine:
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench -p mnemos-vision --bench encode
//! ```
//!
//! `encode/N`: N fixture PNGs end to end (decode, resize to 256, crop 224,
//! network, normalise); `network/N`: the forward pass alone on
//! preprocessed images; `preprocess/1`: decoding and resizing one image.
//! Skips, with a message, when the weights are not installed
//! (`scripts/install-models.sh`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use mnemos_vision::{EncoderOptions, ImageEncoder, ImageInput};

fn main() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    let encoder = match ImageEncoder::load(&dir, EncoderOptions::default()) {
        Ok(encoder) => encoder,
        Err(err) => {
            eprintln!("skipping: cannot load {}: {err}", dir.display());
            return;
        }
    };
    let images = support::images();
    let batch_of = |n: usize| -> Vec<ImageInput<'_>> {
        images
            .iter()
            .cycle()
            .take(n)
            .map(|(_, bytes)| ImageInput::Encoded(bytes))
            .collect()
    };
    let mut criterion = Criterion::default().configure_from_args();

    let mut group = criterion.benchmark_group("efficientnet_lite0");
    group.sample_size(20);
    for batch in [1usize, 16] {
        let inputs = batch_of(batch);
        let preprocessed: Vec<_> = inputs
            .iter()
            .map(|input| encoder.preprocess(input).expect("fixture decodes"))
            .collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("encode", batch), &inputs, |b, inputs| {
            b.iter(|| encoder.embed(black_box(inputs)).map(|v| v.len()))
        });
        group.bench_with_input(
            BenchmarkId::new("network", batch),
            &preprocessed,
            |b, preprocessed| {
                b.iter(|| {
                    encoder
                        .embed_preprocessed(black_box(preprocessed))
                        .map(|v| v.len())
                })
            },
        );
    }
    let one = batch_of(1);
    group.throughput(Throughput::Elements(1));
    group.bench_function("preprocess/1", |b| {
        b.iter(|| encoder.preprocess(black_box(&one[0])).map(|p| p.size()))
    });
    group.finish();
    criterion.final_summary();
}
