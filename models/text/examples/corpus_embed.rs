//! Time to embed the first documents of a BEIR corpus, the embedding part of
//! `mnemos ingest`, for the side-by-side comparison with
//! `scripts/bench/pytorch_embed.py --corpus … --limit N`:
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release -p mnemos-text --example corpus_embed -- \
//!     ../shared/data/beir/scifact/corpus.jsonl [limit=500] [max_batch] [threads=1]
//! ```
//!
//! Texts are `title + " " + text`, truncated to 256 tokens, exactly as the
//! engine and the PyTorch script build them; each thread's share goes to one
//! [`Encoder::embed`] call, which sorts it by length before batching.
//! A BEIR `queries.jsonl` works too (its lines have no title): with
//! `threads` = cores, that is the raw query-embedding ceiling of the machine
//! that the load-test figures are compared with.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::BufRead;
use std::time::Instant;

/// As in the `mnemos` binary, so the figures match what it serves with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use mnemos_text::{Encoder, EncoderOptions, MiniLmEncoder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let corpus = args
        .next()
        .ok_or("usage: corpus_embed CORPUS.jsonl [limit] [max_batch] [threads]")?;
    let limit: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);
    let defaults = EncoderOptions::default();
    let max_batch: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(defaults.max_batch);
    let threads: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1);
    let Some(dir) = support::model_dir() else {
        return Ok(());
    };
    let encoder = MiniLmEncoder::load(
        &dir,
        EncoderOptions {
            max_batch,
            ..defaults
        },
    )?;

    let mut texts = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(&corpus)?).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let doc: serde_json::Value = serde_json::from_str(&line)?;
        let title = doc["title"].as_str().unwrap_or_default();
        let text = doc["text"].as_str().unwrap_or_default();
        texts.push(if title.is_empty() {
            text.to_owned()
        } else {
            format!("{title} {text}")
        });
        if texts.len() == limit {
            break;
        }
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let started = Instant::now();
    let share = refs.len().div_ceil(threads.max(1)).max(1);
    let embedded = std::thread::scope(|scope| {
        let workers: Vec<_> = refs
            .chunks(share)
            .map(|part| scope.spawn(|| encoder.embed(part).map(|v| v.len())))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("embedding thread panicked"))
            .sum::<Result<usize, _>>()
    })?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"what\": \"mnemos_corpus\", \"docs\": {embedded}, \"max_batch\": {max_batch}, \"threads\": {threads}, \"seconds\": {seconds:.2}, \"docs_per_s\": {:.2}}}",
        embedded as f64 / seconds
    );
    Ok(())
}
