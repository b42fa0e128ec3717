//! What a log compaction costs the requests that arrive during it: the
//! whole rewrite under the write lock (`DurableMemory::compact` called by
//! the writer, as every commit did before) against the chunked rewrite
//! off the lock (`compact_shared`, what the server runs).
//!
//! ```text
//! cargo run --release -p mnemos-visual --example compaction_stall -- [N] [DIM]
//! ```
//!
//! N random unit vectors (default 40,000) of DIM dimensions (default
//! 1280) are upserted twice into a memory in a temp directory, so the log
//! holds twice the live state. Then, for each way, one thread classifies
//! without pause (exact search, k = 10) and another upserts one item every
//! 10 ms while the log is compacted; the latencies of the requests that
//! overlapped the compaction are reported.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use mnemos_visual::{compact_shared, Aggregation, DurableMemory, VisualParams};
use rand::{Rng, SeedableRng};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let n = args.first().copied().unwrap_or(40_000);
    let dim = args.get(1).copied().unwrap_or(1280);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let rows: Vec<(String, String, Vec<f32>)> = (0..n)
        .map(|i| {
            let v = (0..dim).map(|_| rng.random::<f32>() - 0.5).collect();
            (format!("i{i}"), format!("l{}", i % 100), v)
        })
        .collect();
    // Exact search throughout: the graph is not what is measured.
    let params = VisualParams {
        ann_above: usize::MAX,
        ..VisualParams::default()
    };
    println!("{n} items of {dim} dimensions; latencies of the requests during the compaction");
    println!(
        "{:<22} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "compaction", "took s", "classify", "p50 ms", "max ms", "upsert", "max ms"
    );
    for off_lock in [false, true] {
        let dir = tempfile::tempdir()?;
        let mut m = DurableMemory::open_deferred(dir.path(), dim, params.clone())?;
        for _ in 0..2 {
            for chunk in rows.chunks(2_000) {
                let batch: Vec<(&str, &str, &[f32])> = chunk
                    .iter()
                    .map(|(id, label, v)| (id.as_str(), label.as_str(), v.as_slice()))
                    .collect();
                m.upsert(&batch)?;
            }
        }
        assert!(m.wants_compaction());
        let shared = Arc::new(RwLock::new(m));
        let stop = Arc::new(AtomicBool::new(false));
        let (query, extra) = (rows[0].2.clone(), rows[1].2.clone());
        let reader = spawn_load(&shared, &stop, Duration::ZERO, move |m, _| {
            m.read().classify(&query, 10, Aggregation::RankVoting)?;
            Ok(())
        });
        let writer = spawn_load(&shared, &stop, Duration::from_millis(10), move |m, i| {
            let id = format!("new{i}");
            m.write().upsert(&[(&id, "l0", &extra)])?;
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        if off_lock {
            compact_shared(|| Some(Arc::clone(&shared)))?;
        } else {
            shared.write().compact()?;
        }
        let (from, to) = (started, Instant::now());
        stop.store(true, Ordering::Relaxed);
        let during = |spans: Vec<(Instant, Instant)>| -> Vec<f64> {
            let mut ms: Vec<f64> = spans
                .into_iter()
                .filter(|(s, e)| *e > from && *s < to)
                .map(|(s, e)| (e - s).as_secs_f64() * 1e3)
                .collect();
            ms.sort_by(f64::total_cmp);
            ms
        };
        let reads = during(reader.join().map_err(|_| "reader panicked")??);
        let writes = during(writer.join().map_err(|_| "writer panicked")??);
        println!(
            "{:<22} {:>8.2} {:>9} {:>9.1} {:>9.1} {:>9} {:>9.1}",
            if off_lock {
                "chunked, off the lock"
            } else {
                "whole, write lock"
            },
            (to - from).as_secs_f64(),
            reads.len(),
            reads.get(reads.len() / 2).copied().unwrap_or(f64::NAN),
            reads.last().copied().unwrap_or(f64::NAN),
            writes.len(),
            writes.last().copied().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}

type Spans = Vec<(Instant, Instant)>;
type Load = std::thread::JoinHandle<Result<Spans, String>>;

/// Runs `request` in a loop on a thread of its own until `stop`, `pause`
/// apart, timing each call from before it asks for the lock.
fn spawn_load(
    shared: &Arc<RwLock<DurableMemory>>,
    stop: &Arc<AtomicBool>,
    pause: Duration,
    request: impl Fn(&RwLock<DurableMemory>, usize) -> Res<()> + Send + 'static,
) -> Load {
    let (shared, stop) = (Arc::clone(shared), Arc::clone(stop));
    std::thread::spawn(move || {
        let mut spans = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(pause);
            let started = Instant::now();
            request(&shared, i).map_err(|e| e.to_string())?;
            spans.push((started, Instant::now()));
            i += 1;
        }
        Ok(spans)
    })
}
