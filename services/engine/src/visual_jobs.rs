//! The visual memory's background jobs, each on a thread of its own so
//! that no edit holds the memory's write lock through a long job: the HNSW
//! graph build and the log compaction.

use std::sync::{Arc, Mutex, Weak};

use parking_lot::RwLock;

use mnemos_visual::{compact_shared, DurableMemory, GraphJob, VisualError};

use crate::visual::{update, write, Edit, VisualCounts};

/// Rounds of catching up a built graph off the lock before the switch.
const CATCH_UP_ROUNDS: usize = 8;

/// Fewer edits than this are left to the switch, under the lock.
const CATCH_UP_ENOUGH: usize = 16;

/// Builds `job`'s graph on a thread of its own, then installs it under
/// the write lock, catching up the edits made meanwhile
/// ([`mnemos_visual::deferred`]). Searches stay exact (and correct) until
/// then. The thread holds the memory only weakly while it builds, so a
/// server that shuts down meanwhile releases the memory's directory. A
/// failed build is logged and abandoned; the next upsert tries again.
pub(crate) fn build_graph(
    memory: &Arc<RwLock<DurableMemory>>,
    counts: &Arc<Mutex<VisualCounts>>,
    dim: usize,
    job: Option<GraphJob>,
) {
    let Some(job) = job else {
        return;
    };
    let (weak, counts) = (Arc::downgrade(memory), Arc::clone(counts));
    let items = job.len();
    let spawned = std::thread::Builder::new()
        .name("visual-graph".into())
        .spawn(move || build_and_install(job, &weak, &counts, dim));
    match spawned {
        Ok(_) => tracing::info!(items, "visual memory: building the graph in the background"),
        Err(e) => {
            tracing::error!("visual memory: cannot start the graph build: {e}");
            if let Ok(mut memory) = write(memory) {
                memory.abandon_graph_job();
            }
        }
    }
}

/// Ends an edit: releases its write lock (`edit`, taken on `memory`),
/// then, if the log has doubled ([`DurableMemory::wants_compaction`]),
/// compacts it on a thread of its own: chunks of the live state are
/// copied under the read lock and written with no lock held, so
/// classifications and edits go on meanwhile ([`compact_shared`]). The
/// thread holds the memory only weakly, like [`build_graph`]'s.
pub(crate) fn end_edit(memory: &Arc<RwLock<DurableMemory>>, edit: Edit<'_>) {
    let wanted = edit.wants_compaction();
    drop(edit);
    if !wanted {
        return;
    }
    let weak = Arc::downgrade(memory);
    let spawned = std::thread::Builder::new()
        .name("visual-compact".into())
        .spawn(move || match compact_shared(|| weak.upgrade()) {
            Ok(true) => tracing::info!("visual memory: log compacted"),
            Ok(false) => {}
            // The old log is still in place, complete; the next edit
            // tries again.
            Err(e) => tracing::warn!("visual-memory log compaction failed: {e}"),
        });
    if let Err(e) = spawned {
        tracing::error!("visual memory: cannot start the log compaction: {e}");
    }
}

/// The body of [`build_graph`]'s thread.
fn build_and_install(
    job: GraphJob,
    weak: &Weak<RwLock<DurableMemory>>,
    counts: &Mutex<VisualCounts>,
    dim: usize,
) {
    // A panic in the build must still end the job, or the memory would
    // wait for this graph (and note every edit) forever.
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.build()))
        .unwrap_or_else(|_| Err(VisualError::Index("the graph build panicked".into())));
    // The edits made during the build are applied to the graph outside
    // the lock, round after round while they keep coming, so that the
    // switch itself applies only the last few (each costs an HNSW
    // insertion, ~2.5 ms at 10k × 1280-d).
    let built = built.and_then(|graph| {
        for _ in 0..CATCH_UP_ROUNDS {
            let Some(memory) = weak.upgrade() else {
                break;
            };
            let Ok(edits) = write(&memory).map(|mut m| m.drain_graph_edits()) else {
                break;
            };
            drop(memory);
            graph.catch_up(&edits)?;
            if edits.len() < CATCH_UP_ENOUGH {
                break;
            }
        }
        Ok(graph)
    });
    let Some(memory) = weak.upgrade() else {
        return;
    };
    let Ok(mut memory) = write(&memory) else {
        return;
    };
    let installed = built.and_then(|b| memory.install_graph(b));
    if let Err(e) = &installed {
        tracing::error!("visual memory: graph build failed, search stays exact: {e}");
        memory.abandon_graph_job();
    }
    // Publishes `graph: true` (or nothing new, after a failure).
    let _ = update(counts, &memory, dim, Ok(()));
}
