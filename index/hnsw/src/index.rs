//! [`VectorIndex`]: the graph, the point table and the locking that lets
//! searches run while writes and compactions happen.
//!
//! Locking, outermost first:
//! - `writer` (a mutex) serialises everything that changes the point table:
//!   upserts, removes, the snapshot and swap of a compaction, and persists
//!   (which must see one consistent table). Holding it, a writer knows the
//!   next free slot numbers cannot be taken by anyone else.
//! - `state` (a read/write lock) guards the current graph and point table.
//!   Searches hold it for reading; writers take it for writing only to flip
//!   a few map entries, never while inserting into the graph. Nobody holds
//!   it for long in either mode: a long read would stall readers queued
//!   behind a waiting writer.
//! - `rebuild_log` (a mutex) holds the ids written while a compaction
//!   rebuilds, for it to replay.
//!
//! An upsert therefore inserts its vectors into the graph under new slots
//! first (concurrent searches reject those slots: the table does not know
//! them yet), and then, in one short write-locked step, commits the slots
//! and tombstones the versions they replace. Readers see either the old
//! version or the new one, never both and never neither.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

// Fair: std's RwLock lets back-to-back searches starve a write for seconds.
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mnemos_index_core::vector::validate_dim;
use mnemos_index_core::{Hit, IndexWrite, Result, Seq};

use crate::distance::normalised;
use crate::graph::Graph;
use crate::params::HnswParams;
use crate::persist;
use crate::points::PointTable;

/// An approximate nearest-neighbour index over unit vectors, with updates,
/// deletes, exact search and persistence. Similarity is the dot product of
/// L2-normalised vectors (cosine); inputs are normalised on the way in.
///
/// Cheap to share: all methods take `&self`, and the type is `Send + Sync`.
pub struct VectorIndex {
    pub(crate) inner: Arc<Inner>,
}

/// Counts that describe an index's internal state, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Ids that searches can return.
    pub live: usize,
    /// Superseded or removed points still in the graph.
    pub dead: usize,
    /// Points in the current graph (live + dead + slots of writes in flight).
    pub graph_points: usize,
    /// Whether a graph is being rebuilt right now (compaction, or the first
    /// build after [`VectorIndex::open`]).
    pub rebuilding: bool,
    /// False between [`VectorIndex::open`] of a non-empty index and the end
    /// of its first graph build; searches are exact meanwhile.
    pub graph_ready: bool,
}

pub(crate) struct Inner {
    pub(crate) dim: usize,
    pub(crate) params: HnswParams,
    dir: Option<PathBuf>,
    pub(crate) writer: Mutex<()>,
    pub(crate) state: RwLock<State>,
    /// While a graph is rebuilt: ids written since it took its snapshot,
    /// to be replayed onto the new graph before it replaces the old one.
    pub(crate) rebuild_log: Mutex<Option<HashSet<Arc<str>>>>,
    /// The background rebuild thread, if one was started.
    pub(crate) compactor: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct State {
    pub(crate) graph: Arc<Graph>,
    pub(crate) points: PointTable,
    /// Whether `graph` holds every slot of `points`. False only while the
    /// first graph after [`VectorIndex::open`] is built in the background;
    /// searches are exact until then.
    pub(crate) graph_ready: bool,
}

impl VectorIndex {
    /// An empty in-memory index for vectors of `dim` dimensions. Its
    /// [`IndexWrite::persist`] does nothing.
    pub fn new(dim: usize, params: HnswParams) -> Result<Self> {
        validate_dim(dim)?;
        params.validate()?;
        Ok(Self::from_table(dim, params, None, PointTable::new(dim)))
    }

    /// The index persisted in `dir`, or an empty one if `dir` holds none
    /// (the directory is created if missing). A damaged file is
    /// [`mnemos_index_core::IndexError::Corrupt`]; a file of another
    /// dimension is [`mnemos_index_core::IndexError::InvalidArgument`].
    ///
    /// Returns once the vectors are read and verified. The graph is rebuilt
    /// from them on a background thread (parallel insert; minutes for 100k
    /// vectors on two cores), and until it is ready searches use the exact
    /// scan: correct, just slower. Reads and writes work throughout;
    /// [`Self::wait_for_rebuild`] blocks until the graph is in use.
    pub fn open(dir: &Path, dim: usize, params: HnswParams) -> Result<Self> {
        validate_dim(dim)?;
        params.validate()?;
        std::fs::create_dir_all(dir)?;
        persist::remove_stale_temp(dir)?;
        let started = Instant::now();
        let table = persist::read(dir, dim)?.unwrap_or_else(|| PointTable::new(dim));
        tracing::info!(
            live = table.live_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "read hnsw vectors"
        );
        let index = Self::from_table(dim, params, Some(dir.to_path_buf()), table);
        if !index.inner.read_state().graph_ready {
            index.inner.start_rebuild();
        }
        Ok(index)
    }

    /// An index over `table` whose graph is empty: ready at once if the
    /// table is, otherwise waiting for a rebuild.
    fn from_table(dim: usize, params: HnswParams, dir: Option<PathBuf>, table: PointTable) -> Self {
        let state = State {
            graph: Arc::new(Graph::new(&params, 0)),
            graph_ready: table.slots() == 0,
            points: table,
        };
        Self {
            inner: Arc::new(Inner {
                dim,
                params,
                dir,
                writer: Mutex::new(()),
                state: RwLock::new(state),
                rebuild_log: Mutex::new(None),
                compactor: Mutex::new(None),
            }),
        }
    }

    /// The dimension vectors must have.
    pub fn dim(&self) -> usize {
        self.inner.dim
    }

    pub fn params(&self) -> &HnswParams {
        &self.inner.params
    }

    /// The stored (unit-length) vector of a live id, so callers can reuse an
    /// embedding instead of recomputing it.
    pub fn get_vector(&self, id: &str) -> Option<Vec<f32>> {
        let state = self.inner.read_state();
        state.points.get(id).map(|(_, vector)| vector.to_vec())
    }

    /// The seq of a live id's current version.
    pub fn seq_of(&self, id: &str) -> Option<Seq> {
        self.inner.read_state().points.get(id).map(|(seq, _)| seq)
    }

    pub fn stats(&self) -> IndexStats {
        let rebuilding = self.inner.lock_rebuild_log().is_some();
        let state = self.inner.read_state();
        IndexStats {
            live: state.points.live_count(),
            dead: state.points.dead_count(),
            graph_points: state.graph.len(),
            rebuilding,
            graph_ready: state.graph_ready,
        }
    }

    /// Rebuilds the graph from live vectors now, on this thread, after any
    /// background rebuild has finished. Searches continue meanwhile; writes
    /// made during the rebuild are carried over.
    pub fn compact_now(&self) {
        loop {
            self.wait_for_rebuild();
            if self.inner.compact() {
                return;
            }
            // Another caller's `compact_now` is rebuilding on its own thread,
            // which leaves no handle to join; poll until it is done.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Blocks until a background rebuild (compaction, or the first graph
    /// build after [`Self::open`]), if one is running, is done.
    pub fn wait_for_rebuild(&self) {
        let handle = self.inner.lock_compactor().take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("hnsw rebuild thread panicked; the old graph stays in use");
            }
        }
    }
}

impl IndexWrite<[f32]> for VectorIndex {
    /// Inserts or replaces entries; visible to searches when this returns.
    /// Vectors are normalised; a wrong dimension, a non-finite component or
    /// a zero vector rejects the whole batch before anything changes. If an
    /// id repeats within `entries`, its last occurrence wins.
    fn upsert(&self, entries: &[(&str, Seq, &[f32])]) -> Result<()> {
        let vectors = entries
            .iter()
            .map(|(_, _, vector)| normalised(vector, self.inner.dim))
            .collect::<Result<Vec<_>>>()?;
        if entries.is_empty() {
            return Ok(());
        }
        {
            let _writer = self.inner.lock_writer();
            // Slots are only handed out under `writer`, so these stay ours.
            let (graph, first_slot, graph_ready) = {
                let state = self.inner.read_state();
                (
                    Arc::clone(&state.graph),
                    state.points.slots(),
                    state.graph_ready,
                )
            };
            // A graph that is not ready is about to be replaced by one that
            // the rebuild's replay fills; inserting into it is wasted work.
            if graph_ready {
                let batch: Vec<(&[f32], usize)> = vectors
                    .iter()
                    .enumerate()
                    .map(|(i, vector)| (vector.as_slice(), first_slot + i))
                    .collect();
                graph.insert(&batch);
            }

            let mut state = self.inner.write_state();
            let mut log = self.inner.lock_rebuild_log();
            for ((id, seq, _), vector) in entries.iter().zip(&vectors) {
                let id: Arc<str> = Arc::from(*id);
                let slot = state.points.push(Arc::clone(&id), *seq, vector);
                debug_assert!(slot >= first_slot && slot < first_slot + entries.len());
                if let Some(touched) = log.as_mut() {
                    touched.insert(id);
                }
            }
        }
        self.inner.compact_if_needed();
        Ok(())
    }

    /// Tombstones entries; invisible to searches when this returns. Their
    /// points leave the graph at the next compaction.
    fn remove(&self, ids: &[&str]) -> Result<()> {
        {
            let _writer = self.inner.lock_writer();
            let mut state = self.inner.write_state();
            let mut log = self.inner.lock_rebuild_log();
            for id in ids {
                if state.points.remove(id) {
                    if let Some(touched) = log.as_mut() {
                        touched.insert(Arc::from(*id));
                    }
                }
            }
        }
        self.inner.compact_if_needed();
        Ok(())
    }

    /// Writes every live vector, id and seq to the index file, atomically;
    /// durable when this returns. Writers wait meanwhile, searches do not.
    /// An index made by [`VectorIndex::new`] has no directory and nothing to
    /// do.
    fn persist(&self) -> Result<()> {
        let Some(dir) = &self.inner.dir else {
            return Ok(());
        };
        let started = Instant::now();
        // Holding `writer` keeps the table still. Holding `state` for the
        // whole write is then harmless: no writer can be queued on it, so
        // readers are never stalled behind one.
        let _writer = self.inner.lock_writer();
        let state = self.inner.read_state();
        persist::write(dir, &state.points, self.inner.dim)?;
        tracing::debug!(
            live = state.points.live_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "persisted hnsw vectors"
        );
        Ok(())
    }

    fn indexed_versions(&self) -> Result<HashMap<String, Seq>> {
        let state = self.inner.read_state();
        Ok(state
            .points
            .live_entries()
            .map(|(id, seq, _)| (id.to_string(), seq))
            .collect())
    }
}

pub(crate) fn to_hits(points: &PointTable, scored: &[(usize, f32)]) -> Vec<Hit> {
    scored
        .iter()
        .filter_map(|&(slot, score)| {
            points.owner(slot).map(|id| Hit {
                id: id.to_string(),
                score,
            })
        })
        .collect()
}

/// Lock helpers. A poisoned lock is recovered rather than propagated: the
/// only code that can panic while holding one is hnsw_rs inserting into a
/// graph (under `writer`, before any table change), which leaves the table
/// consistent. The half-inserted point may later share its slot with a
/// committed one; searches deduplicate slots and score from the table, so
/// at worst it perturbs ranking until the next compaction drops it.
impl Inner {
    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write()
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn lock_rebuild_log(&self) -> MutexGuard<'_, Option<HashSet<Arc<str>>>> {
        self.rebuild_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn lock_compactor(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.compactor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
