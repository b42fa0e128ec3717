//! Measures how long an acknowledged upsert takes with fsync on, for a batch
//! of 1 and a batch of 100 documents: the floor under every write request.
//!
//! `cargo run -p mnemos-store --example fsync_latency [DIR] [ROUNDS]`
//! DIR must be on the disk the store will use (default: the temp dir).
//! Both batch sizes are run with fsync on and then off: the difference is
//! what durability costs, the rest is encoding and bookkeeping.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mnemos_index_core::Document;
use mnemos_store::{Store, StoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let parent = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let rounds: usize = args.next().map_or(Ok(200), |r| r.parse())?;
    let text = "lorem ipsum dolor sit amet ".repeat(40);
    for fsync in [true, false] {
        let dir = tempfile::tempdir_in(&parent)?;
        let opts = StoreOptions {
            fsync,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), opts)?;
        for batch in [1usize, 100] {
            measure(&store, batch, rounds, &text, fsync)?;
        }
    }
    Ok(())
}

fn measure(
    store: &Store,
    batch: usize,
    rounds: usize,
    text: &str,
    fsync: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut took = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let docs = (0..batch)
            .map(|i| Document {
                id: format!("b{batch}-r{round}-{i}"),
                title: "title".into(),
                text: text.to_string(),
                metadata: serde_json::json!({ "round": round }),
            })
            .collect();
        let start = Instant::now();
        store.upsert(docs)?;
        took.push(start.elapsed());
    }
    took.sort_unstable();
    let pct = |p: f64| took[((took.len() - 1) as f64 * p) as usize];
    let mean = took.iter().sum::<Duration>() / took.len() as u32;
    println!(
            "fsync {fsync:<5} batch {batch:>3} ({} B/doc): mean {mean:.2?}  p50 {:.2?}  p99 {:.2?}  max {:.2?}",
            text.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0),
        );
    Ok(())
}
