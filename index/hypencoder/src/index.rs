//! [`HypencoderIndex`]: the document table, the neighbour graph, and the
//! locking that lets searches run while the graph is extended.
//!
//! Locking, outermost first:
//! - `writer` (a mutex) serialises everything that changes the index:
//!   upserts, removes, graph rebuilds and persists. Holding it, a writer
//!   knows the state cannot change under it even between its lock steps.
//! - `state` (a read/write lock) guards the table and the graph. Searches
//!   hold it for reading for their whole run. A writer does its expensive
//!   part (the matrix products that link new documents) holding it only for
//!   reading, so searches continue, and takes it for writing only for the
//!   cheap steps before and after. No writer is ever queued on `state`
//!   while another write is computing. The cheap write steps do wait for
//!   in-flight searches, though, and searches arriving meanwhile wait
//!   behind them: an exhaustive search of 100k documents holds the read
//!   lock ~1.5 s on one thread, a graph search tens of milliseconds. Graph
//!   search is the serving path; exhaustive is the reference.
//!
//! An upsert of a chunk of documents therefore runs in three steps:
//! 1. *(write)* the versions being replaced are detached from the graph
//!    (still searchable, no longer anyone's neighbour) and the new vectors
//!    are stored in reserved slots that searches ignore;
//! 2. *(read)* the new documents' lists and the offers to existing lists
//!    are computed ([`crate::knn::link`]) against the graph as step 1 left
//!    it, so they are exact;
//! 3. *(write)* lists and offers are applied, the new slots committed and
//!    the replaced ones freed, in one step: a search sees either the old
//!    version of an id or the new one, never both and never neither.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

// Fair: std's RwLock lets back-to-back searches starve a write for seconds.
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use mnemos_hypencoder::QNets;
use mnemos_index_core::vector::validate_dim;
use mnemos_index_core::{Hit, IndexWrite, Result, Seq};

use crate::distance::check_vector;
use crate::docs::DocTable;
use crate::graph::NeighborGraph;
use crate::knn;
use crate::params::{invalid, GraphParams, GraphSearch};
use crate::persist;
use crate::search::{self, Found, SplitMix64};

/// Documents linked per step of an upsert or a graph build. Large enough
/// for efficient matrix products; small enough that the write-locked steps
/// (applying ~100 offers per document) stay at milliseconds.
const CHUNK: usize = 1024;

/// A Hypencoder index: document vectors scored by q-nets, exhaustively or
/// by graph search over a k-nearest-neighbour graph of the vectors.
///
/// All methods take `&self`; the type is `Send + Sync`.
pub struct HypencoderIndex {
    dim: usize,
    params: GraphParams,
    dir: Option<PathBuf>,
    writer: Mutex<()>,
    state: RwLock<State>,
}

struct State {
    docs: DocTable,
    graph: NeighborGraph,
}

/// One query's graph search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOutcome {
    /// The best hits found, best first.
    pub hits: Vec<Hit>,
    /// Documents the q-net scored (the cost of the search).
    pub scored: usize,
    /// Rounds of scoring; an exhaustive fallback counts as one.
    pub rounds: usize,
}

/// Counts that describe an index's internal state, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Documents searches can return.
    pub live: usize,
    /// Slots of the document matrix, live or free.
    pub slots: usize,
    /// Entries in all neighbour lists together.
    pub edges: usize,
}

impl HypencoderIndex {
    /// An empty in-memory index for vectors of `dim` dimensions; its
    /// [`IndexWrite::persist`] does nothing.
    pub fn new(dim: usize, params: GraphParams) -> Result<Self> {
        validate_dim(dim)?;
        params.validate()?;
        let state = State {
            docs: DocTable::new(dim),
            graph: NeighborGraph::new(params.neighbors),
        };
        Ok(Self::from_state(dim, params, None, state))
    }

    /// The index persisted in `dir`, or an empty one if `dir` holds none
    /// (the directory is created if missing). A damaged file is
    /// [`mnemos_index_core::IndexError::Corrupt`]; a file of another
    /// dimension is [`mnemos_index_core::IndexError::InvalidArgument`].
    ///
    /// The graph is stored with the vectors, so opening is a read, not a
    /// build; except when `params.neighbors` exceeds the stored lists'
    /// length, which rebuilds the graph before returning (about a minute
    /// per 100k documents on two cores). Shorter lists are cut to size.
    pub fn open(dir: &Path, dim: usize, params: GraphParams) -> Result<Self> {
        validate_dim(dim)?;
        params.validate()?;
        std::fs::create_dir_all(dir)?;
        persist::remove_stale_temp(dir)?;
        let started = Instant::now();
        let (docs, graph) = match persist::read(dir, dim)? {
            Some(stored) => stored,
            None => (DocTable::new(dim), NeighborGraph::new(params.neighbors)),
        };
        tracing::info!(
            live = docs.live_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "read hypencoder index"
        );
        let stale = graph.k() < params.neighbors;
        let graph = graph.truncate(params.neighbors);
        let state = State { docs, graph };
        let index = Self::from_state(dim, params, Some(dir.to_path_buf()), state);
        if stale {
            index.rebuild_graph()?;
        }
        Ok(index)
    }

    fn from_state(dim: usize, params: GraphParams, dir: Option<PathBuf>, state: State) -> Self {
        Self {
            dim,
            params,
            dir,
            writer: Mutex::new(()),
            state: RwLock::new(state),
        }
    }

    /// The dimension vectors must have.
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn params(&self) -> &GraphParams {
        &self.params
    }

    /// Number of live documents.
    pub fn len(&self) -> usize {
        self.read_state().docs.live_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> IndexStats {
        let state = self.read_state();
        IndexStats {
            live: state.docs.live_count(),
            slots: state.docs.slots(),
            edges: state.graph.edges(),
        }
    }

    /// The stored vector of a live id.
    pub fn get_vector(&self, id: &str) -> Option<Vec<f32>> {
        let state = self.read_state();
        let slot = state.docs.slot_of(id)?;
        Some(state.docs.row(slot).to_vec())
    }

    /// The seq of a live id's current version.
    pub fn seq_of(&self, id: &str) -> Option<Seq> {
        let state = self.read_state();
        state.docs.slot_of(id).map(|slot| state.docs.seq(slot))
    }

    /// A live id's neighbour list: ids and squared L2 distances, nearest
    /// first. For inspection and tests.
    pub fn neighbors(&self, id: &str) -> Option<Vec<(String, f32)>> {
        let state = self.read_state();
        let slot = state.docs.slot_of(id)?;
        let graph = &state.graph;
        Some(
            graph
                .neighbors(slot)
                .iter()
                .zip(graph.distances(slot))
                .filter_map(|(&n, &d)| state.docs.owner(n).map(|id| (id.to_string(), d)))
                .collect(),
        )
    }

    /// The `k` best live documents under each q-net of `qnets`, best first:
    /// every document scored by blocked matrix products. One list per
    /// query.
    pub fn search_exhaustive(&self, qnets: &QNets, k: usize) -> Result<Vec<Vec<Hit>>> {
        self.check_qnets(qnets)?;
        let state = self.read_state();
        let found = search::exhaustive(&state.docs, qnets, k)?;
        Ok(found
            .into_iter()
            .map(|f| to_hits(&state.docs, &f.hits))
            .collect())
    }

    /// The paper's graph search (SPECS §2) for each q-net of `qnets`, one
    /// query after another (their walks diverge, so batching them would
    /// only pad). Never returns a removed or superseded document.
    pub fn search_graph(
        &self,
        qnets: &QNets,
        k: usize,
        search: &GraphSearch,
    ) -> Result<Vec<SearchOutcome>> {
        self.check_qnets(qnets)?;
        search.validate()?;
        let state = self.read_state();
        (0..qnets.len())
            .map(|q| {
                let qnet = qnets.slice(q, 1).map_err(search::model_error)?;
                // Distinct, reproducible entry points per query of a batch.
                let seed = SplitMix64(search.seed ^ (q as u64).wrapping_mul(0xA076_1D64_78BD_642F))
                    .next_u64();
                let Found {
                    hits,
                    scored,
                    rounds,
                } = search::graph(&state.docs, &state.graph, &qnet, k, search, seed)?;
                Ok(SearchOutcome {
                    hits: to_hits(&state.docs, &hits),
                    scored,
                    rounds,
                })
            })
            .collect()
    }

    /// Recomputes every neighbour list exactly from the live vectors,
    /// undoing what removals' refills approximated. Searches continue
    /// meanwhile (on the old graph); writes wait. About a minute per 100k
    /// documents at 384 dimensions on two cores.
    pub fn rebuild_graph(&self) -> Result<()> {
        let _writer = self.lock_writer();
        let started = Instant::now();
        let graph = {
            let state = self.read_state();
            build_graph(&state.docs, self.params.neighbors)?
        };
        let mut state = self.write_state();
        tracing::info!(
            live = state.docs.live_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "rebuilt hypencoder neighbour graph"
        );
        state.graph = graph;
        Ok(())
    }

    fn check_qnets(&self, qnets: &QNets) -> Result<()> {
        if qnets.width() != self.dim {
            return Err(invalid(format!(
                "q-nets take {}-dimensional documents, index holds {}",
                qnets.width(),
                self.dim
            )));
        }
        Ok(())
    }

    /// Steps 1–3 of the module docs for one chunk of changed or new
    /// documents (ids distinct).
    fn upsert_chunk(&self, chunk: &[(&str, Seq, &[f32])]) -> Result<()> {
        let (new, replaced) = {
            let mut state = self.write_state();
            let State { docs, graph } = &mut *state;
            let replaced: Vec<u32> = chunk
                .iter()
                .filter_map(|(id, ..)| docs.slot_of(id))
                .collect();
            graph.detach(docs, &replaced);
            let new: Vec<u32> = chunk.iter().map(|(_, _, v)| docs.reserve(v)).collect();
            graph.ensure_slots(docs.slots());
            for &slot in &new {
                graph.clear(slot);
            }
            (new, replaced)
        };
        let links = {
            let state = self.read_state();
            let mut detached = vec![false; state.docs.slots()];
            for &slot in &replaced {
                detached[slot as usize] = true;
            }
            let docs = &state.docs;
            knn::link(docs, &state.graph, &new, &|s| {
                docs.is_live(s) && !detached[s as usize]
            })
        };
        let mut state = self.write_state();
        let State { docs, graph } = &mut *state;
        let links = match links {
            Ok(links) => links,
            Err(e) => {
                // The new versions never became visible; the old ones stay,
                // short of the graph edges step 1 removed.
                for slot in new {
                    docs.release(slot);
                }
                return Err(e);
            }
        };
        knn::apply(graph, &new, links);
        for (&slot, (id, seq, _)) in new.iter().zip(chunk) {
            docs.commit(slot, Arc::from(*id), *seq);
        }
        for slot in replaced {
            graph.clear(slot);
            docs.release(slot);
        }
        Ok(())
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write()
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl IndexWrite<[f32]> for HypencoderIndex {
    /// Inserts or replaces entries; visible to searches when this returns,
    /// with the graph exact for them. Vectors are stored as given; a wrong
    /// dimension or a non-finite component rejects the whole batch before
    /// anything changes. If an id repeats, its last occurrence wins. An
    /// unchanged vector only updates the seq. Large batches become visible
    /// chunk by chunk.
    fn upsert(&self, entries: &[(&str, Seq, &[f32])]) -> Result<()> {
        for (_, _, vector) in entries {
            check_vector(vector, self.dim)?;
        }
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(entries.len());
        for (i, (id, ..)) in entries.iter().enumerate() {
            last.insert(id, i);
        }
        let _writer = self.lock_writer();
        let mut changed = Vec::with_capacity(last.len());
        {
            let mut state = self.write_state();
            for (i, &(id, seq, vector)) in entries.iter().enumerate() {
                if last[id] != i {
                    continue;
                }
                match state.docs.slot_of(id) {
                    Some(slot) if state.docs.row(slot) == vector => state.docs.set_seq(slot, seq),
                    _ => changed.push((id, seq, vector)),
                }
            }
        }
        for chunk in changed.chunks(CHUNK) {
            self.upsert_chunk(chunk)?;
        }
        Ok(())
    }

    /// Removes entries; unknown ids are ignored. Invisible to searches, and
    /// gone from every neighbour list, when this returns.
    fn remove(&self, ids: &[&str]) -> Result<()> {
        let _writer = self.lock_writer();
        let mut state = self.write_state();
        let State { docs, graph } = &mut *state;
        let mut slots: Vec<u32> = ids.iter().filter_map(|id| docs.slot_of(id)).collect();
        slots.sort_unstable();
        slots.dedup();
        graph.detach(docs, &slots);
        for slot in slots {
            graph.clear(slot);
            docs.release(slot);
        }
        Ok(())
    }

    /// Writes every live vector, id, seq and neighbour list to the index
    /// file, atomically; durable when this returns. Writers wait meanwhile,
    /// searches do not. An index made by [`HypencoderIndex::new`] has no
    /// directory and nothing to do.
    fn persist(&self) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let started = Instant::now();
        let _writer = self.lock_writer();
        let state = self.read_state();
        persist::write(dir, &state.docs, &state.graph)?;
        tracing::debug!(
            live = state.docs.live_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "persisted hypencoder index"
        );
        Ok(())
    }

    fn indexed_versions(&self) -> Result<HashMap<String, Seq>> {
        let state = self.read_state();
        Ok(state
            .docs
            .live_entries()
            .map(|(id, seq, _)| (id.to_string(), seq))
            .collect())
    }
}

/// An exact graph over the live slots of `docs`, built chunk by chunk,
/// each chunk linked against the ones before it.
pub(crate) fn build_graph(docs: &DocTable, k: usize) -> Result<NeighborGraph> {
    let mut graph = NeighborGraph::new(k);
    graph.ensure_slots(docs.slots());
    let mut linked = vec![false; docs.slots()];
    let live: Vec<u32> = docs.live_slots().collect();
    for chunk in live.chunks(CHUNK) {
        let links = knn::link(docs, &graph, chunk, &|s| linked[s as usize])?;
        knn::apply(&mut graph, chunk, links);
        for &slot in chunk {
            linked[slot as usize] = true;
        }
    }
    Ok(graph)
}

fn to_hits(docs: &DocTable, found: &[(f32, u32)]) -> Vec<Hit> {
    found
        .iter()
        .filter_map(|&(score, slot)| {
            docs.owner(slot).map(|id| Hit {
                id: id.to_string(),
                score,
            })
        })
        .collect()
}
