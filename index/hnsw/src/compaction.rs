//! Compaction: rebuilding the graph without its dead points.
//!
//! hnsw_rs cannot delete, so superseded and removed points pile up in the
//! graph. Once they exceed [`crate::HnswParams::compact_ratio`] of it, a
//! background thread builds a fresh graph from a snapshot of the live
//! vectors while searches keep using the old one. The first graph after
//! [`crate::VectorIndex::open`] is built the same way.
//!
//! Writes keep landing on the old graph meanwhile; each one records its id
//! in `Inner::rebuild_log`. When the build is done those ids are replayed
//! onto the new graph: their snapshot version is tombstoned and their
//! current version, if any, inserted. Replay runs in rounds without
//! blocking writers until few ids remain; the last round holds the writer
//! lock, so nothing can slip between it and the swap.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crate::graph::Graph;
use crate::index::Inner;
use crate::params::HnswParams;
use crate::points::PointTable;

/// Replay rounds run without the writer lock while at least this many ids
/// were written during the previous round.
const FINAL_REPLAY_BELOW: usize = 256;
/// Bounds the catch-up when writes arrive as fast as they are replayed.
const MAX_CATCH_UP_ROUNDS: usize = 4;

impl Inner {
    /// Starts a background compaction if dead points exceed the configured
    /// fraction and no rebuild is running. Never blocks on a rebuild.
    pub(crate) fn compact_if_needed(self: &Arc<Self>) {
        if self.needs_compaction() {
            self.start_rebuild();
        }
    }

    /// Starts [`Self::compact`] on a background thread unless one is
    /// running.
    pub(crate) fn start_rebuild(self: &Arc<Self>) {
        let mut slot = self.lock_compactor();
        if slot.as_ref().is_some_and(|running| !running.is_finished()) {
            return;
        }
        if let Some(finished) = slot.take() {
            if finished.join().is_err() {
                tracing::error!("previous hnsw rebuild panicked");
            }
        }
        let inner = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("hnsw-rebuild".into())
            .spawn(move || {
                inner.compact();
            });
        match spawned {
            Ok(handle) => *slot = Some(handle),
            // Compaction only saves memory and search time; carry on without.
            // (A first build that cannot start leaves searches exact.)
            Err(error) => tracing::warn!(%error, "could not start hnsw rebuild thread"),
        }
    }

    fn needs_compaction(&self) -> bool {
        if self.lock_rebuild_log().is_some() {
            return false;
        }
        let state = self.read_state();
        let total = state.points.slots();
        total > 0
            && state.points.dead_count() as f64
                > f64::from(self.params.compact_ratio) * total as f64
    }

    /// Rebuilds the graph from live points and swaps it in. Returns false,
    /// doing nothing, if another rebuild is already running.
    pub(crate) fn compact(&self) -> bool {
        let started = Instant::now();
        let mut table = {
            let _writer = self.lock_writer();
            let mut log = self.lock_rebuild_log();
            if log.is_some() {
                return false;
            }
            *log = Some(HashSet::new());
            drop(log);
            // `writer` keeps the table still while it is copied.
            self.read_state().points.compacted()
        };
        let mut guard = RebuildGuard {
            inner: self,
            armed: true,
        };
        let snapshot = table.slots();
        let graph = build_graph(&self.params, &table);
        let built = started.elapsed();

        let mut replayed = 0;
        for _ in 0..MAX_CATCH_UP_ROUNDS {
            let round = self.replay(&mut table, &graph);
            replayed += round;
            if round < FINAL_REPLAY_BELOW {
                break;
            }
        }
        let writer = self.lock_writer();
        replayed += self.replay(&mut table, &graph);
        let retired = {
            let mut state = self.write_state();
            let old_graph = std::mem::replace(&mut state.graph, Arc::new(graph));
            let old_points = std::mem::replace(&mut state.points, table);
            state.graph_ready = true;
            *self.lock_rebuild_log() = None;
            (old_graph, old_points)
        };
        guard.armed = false;
        drop(writer);
        let dropped = retired.1.dead_count();
        // Freeing a large graph takes a while; do it outside every lock.
        drop(retired);
        tracing::info!(
            live = snapshot,
            dropped,
            replayed,
            build_ms = built.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "rebuilt hnsw graph"
        );
        true
    }

    /// Carries writes logged since the last call over to the new `table`
    /// and `graph`; returns how many ids it replayed.
    fn replay(&self, table: &mut PointTable, graph: &Graph) -> usize {
        let first_new = table.slots();
        let touched = self
            .lock_rebuild_log()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        {
            // A write committing now also logs its id again, so the next
            // round (at the latest the one under `writer`) replays it.
            let state = self.read_state();
            for id in &touched {
                table.remove(id);
                if let Some((seq, vector)) = state.points.get(id) {
                    table.push(Arc::clone(id), seq, vector);
                }
            }
        }
        let batch: Vec<(&[f32], usize)> = (first_new..table.slots())
            .map(|slot| (table.vector(slot), slot))
            .collect();
        graph.insert(&batch);
        touched.len()
    }
}

/// Clears the "rebuild in progress" mark if a rebuild unwinds, so writes
/// stop logging ids and a later rebuild can run.
struct RebuildGuard<'a> {
    inner: &'a Inner,
    armed: bool,
}

impl Drop for RebuildGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            *self.inner.lock_rebuild_log() = None;
        }
    }
}

/// A fresh graph holding every slot of `table`, live or dead, built with
/// parallel inserts.
fn build_graph(params: &HnswParams, table: &PointTable) -> Graph {
    let graph = Graph::new(params, table.slots());
    let batch: Vec<(&[f32], usize)> = (0..table.slots())
        .map(|slot| (table.vector(slot), slot))
        .collect();
    graph.insert(&batch);
    graph
}
