//! Throughput of the MiniLM encoder on one thread.
//!
//! Run by hand, on an otherwise idle machine:
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench -p mnemos-text --bench embed
//! ```
//!
//! Skips, with a message, when the weights are not installed
//! (`scripts/install-models.sh`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use mnemos_text::{Encoder, EncoderOptions, MiniLmEncoder};

fn main() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    let encoder = match MiniLmEncoder::load(&dir, EncoderOptions::default()) {
        Ok(encoder) => encoder,
        Err(err) => {
            eprintln!("skipping: cannot load {}: {err}", dir.display());
            return;
        }
    };
    let mut criterion = Criterion::default().configure_from_args();

    let mut group = criterion.benchmark_group("minilm");
    for batch in [1usize, 8, 32] {
        let texts = support::batch_of(batch);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("embed", batch), &texts, |b, texts| {
            b.iter(|| encoder.embed(black_box(texts)).map(|v| v.len()))
        });
    }
    let sentences = support::sentences();
    group.throughput(Throughput::Elements(sentences.len() as u64));
    group.bench_function("tokenize/8", |b| {
        b.iter(|| {
            sentences
                .iter()
                .map(|s| encoder.count_tokens(black_box(s)).unwrap_or(0))
                .sum::<usize>()
        })
    });
    group.finish();
    criterion.final_summary();
}
