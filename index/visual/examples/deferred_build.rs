//! How long the write lock is held when a memory crosses `ann_above`:
//! the graph built inside the upsert (the library default) against built
//! off the lock (`mnemos_visual::deferred`, what the server does).
//!
//! ```text
//! cargo run --release -p mnemos-visual --example deferred_build -- [N] [DIM]
//! ```
//!
//! N random unit vectors (default 10,000, the default `ann_above`) of DIM
//! dimensions (default 1280, EfficientNet-Lite0's), upserted in batches
//! of 1,000 into a memory with `ann_above = N`; the last batch crosses it.
//! In deferred mode, 100 edits land while the graph builds; they are
//! drained and caught up off the lock, as the server does, and one more
//! edit is left to the switch.

use std::time::Instant;

use mnemos_visual::{VisualMemory, VisualParams};
use rand::{Rng, SeedableRng};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let n = args.first().copied().unwrap_or(10_000);
    let dim = args.get(1).copied().unwrap_or(1280);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut vector = || -> Vec<f32> { (0..dim).map(|_| rng.random::<f32>() - 0.5).collect() };
    let rows: Vec<(String, String, Vec<f32>)> = (0..n)
        .map(|i| (format!("i{i}"), format!("l{}", i % 100), vector()))
        .collect();
    let params = VisualParams {
        ann_above: n,
        ..VisualParams::default()
    };
    for defer in [false, true] {
        let mut m = VisualMemory::with_params(dim, params.clone())?;
        m.defer_graph_builds(defer);
        let mut last_batch_s = 0.0;
        for chunk in rows.chunks(1_000) {
            let batch: Vec<(&str, &str, &[f32])> = chunk
                .iter()
                .map(|(id, label, v)| (id.as_str(), label.as_str(), v.as_slice()))
                .collect();
            let started = Instant::now();
            m.upsert_batch(&batch)?;
            last_batch_s = started.elapsed().as_secs_f64();
        }
        if !defer {
            println!(
                "in the upsert: the crossing batch held the lock {last_batch_s:.2} s (graph: {})",
                m.is_graph()
            );
            continue;
        }
        let started = Instant::now();
        let job = m.graph_job().ok_or("no job")?;
        let take_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut edits = 0.0;
        for i in 0..100 {
            let t = Instant::now();
            m.upsert(&format!("late{i}"), "late", &vector())?;
            edits += t.elapsed().as_secs_f64();
        }
        let built = job.build()?;
        let build_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let drained = m.drain_graph_edits();
        let drain_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        built.catch_up(&drained)?;
        let catch_up_s = started.elapsed().as_secs_f64();
        m.upsert("last", "late", &vector())?;
        let started = Instant::now();
        m.install_graph(built)?;
        let install_s = started.elapsed().as_secs_f64();
        println!(
            "off the lock: crossing batch {:.3} s, taking the job {:.1} ms, 100 edits during \
             the build {:.1} ms (the first copies the buffer), build {build_s:.2} s with no \
             lock; draining the 100 edits {:.1} ms, catching them up {:.1} ms with no lock; \
             one more edit, then the switch {:.1} ms (graph: {})",
            last_batch_s,
            take_s * 1e3,
            edits * 1e3,
            drain_s * 1e3,
            catch_up_s * 1e3,
            install_s * 1e3,
            m.is_graph()
        );
    }
    Ok(())
}
