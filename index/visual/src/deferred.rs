//! Building the graph off the write lock.
//!
//! Left to itself, the upsert that brings a memory to
//! [`VisualParams::ann_above`](crate::VisualParams) items builds the HNSW
//! graph from every stored vector before it returns, and reopening a large
//! memory builds it during replay. A server holds its write lock through
//! both: about 10 s at 10k items, during which no classification is
//! answered, and half an hour at a million, during which the server does
//! not start. With [`VisualMemory::defer_graph_builds`] the memory stays
//! in exact search past the threshold instead, and the caller builds the
//! graph with no lock held:
//! 1. [`VisualMemory::graph_job`] (under the write lock, cheap): the item
//!    ids and a shared handle on the flat buffer. From then on the memory
//!    notes every id whose vector an edit adds, replaces or removes; the
//!    first such edit copies the buffer once, so the job's view is fixed.
//! 2. [`GraphJob::build`] (no lock): the graph of that view.
//! 3. [`VisualMemory::drain_graph_edits`] (under the write lock, brief)
//!    and [`BuiltGraph::catch_up`] (no lock), as often as wanted: the
//!    edits made meanwhile are applied to the graph (each noted id
//!    re-inserted with its current vector, or removed).
//! 4. [`VisualMemory::install_graph`] (under the write lock): the edits not
//!    yet caught up are applied, and searches switch to the graph.
//!
//! Until the switch every search is an exact scan of the flat buffer, so
//! answers stay correct throughout, only slower. Nothing here touches the
//! log: the graph is derived state, rebuilt from the items after a crash.

use std::sync::Arc;
use std::time::Instant;

use mnemos_hnsw::{HnswParams, VectorIndex};
use mnemos_index_core::IndexWrite;

use crate::memory::VisualMemory;
use crate::vectors::{build_index, Vectors};
use crate::Result;

/// A snapshot of a memory's items to build its graph from.
pub struct GraphJob {
    dim: usize,
    params: HnswParams,
    ids: Vec<String>,
    rows: Arc<Vec<f32>>,
}

/// A graph built by [`GraphJob::build`], to hand to
/// [`VisualMemory::install_graph`].
pub struct BuiltGraph {
    pub(crate) index: VectorIndex,
}

/// Edits drained from a memory for a graph being built
/// ([`VisualMemory::drain_graph_edits`]).
#[derive(Default)]
pub struct Edits {
    upserts: Vec<(String, Vec<f32>)>,
    removes: Vec<String>,
}

impl Edits {
    /// Ids edited.
    pub fn len(&self) -> usize {
        self.upserts.len() + self.removes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl BuiltGraph {
    /// Applies drained edits to the graph; batches must come in the order
    /// they were drained (a later batch holds the later state of an id).
    pub fn catch_up(&self, edits: &Edits) -> Result<()> {
        let batch: Vec<(&str, u64, &[f32])> = edits
            .upserts
            .iter()
            .map(|(id, row)| (id.as_str(), 0, row.as_slice()))
            .collect();
        self.index.upsert(&batch)?;
        let gone: Vec<&str> = edits.removes.iter().map(String::as_str).collect();
        self.index.remove(&gone)?;
        Ok(())
    }
}

impl GraphJob {
    /// Items in the snapshot.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Builds the graph (minutes at a million items; all cores).
    pub fn build(self) -> Result<BuiltGraph> {
        let started = Instant::now();
        let entries = self
            .ids
            .iter()
            .zip(self.rows.chunks_exact(self.dim))
            .map(|(id, row)| (id.as_str(), row.into()));
        let index = build_index(self.dim, &self.params, entries)?;
        tracing::info!(
            items = self.ids.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "visual memory graph built"
        );
        Ok(BuiltGraph { index })
    }
}

impl VisualMemory {
    /// Whether upserts past the threshold leave the graph to
    /// [`VisualMemory::graph_job`] (see the module docs).
    pub fn defer_graph_builds(&mut self, defer: bool) {
        self.defer_graph = defer;
    }

    /// Whether the memory is past the threshold in exact search with no
    /// graph job out: the moment to take one.
    pub fn wants_graph(&self) -> bool {
        matches!(self.vectors, Vectors::Flat(_))
            && self.touched.is_none()
            && self.len() >= self.params.ann_above
    }

    /// A job that builds the graph of the items as they are now, if
    /// [`VisualMemory::wants_graph`]. Edits go on meanwhile; each job must
    /// end in [`VisualMemory::install_graph`] or
    /// [`VisualMemory::abandon_graph_job`] before another is handed out.
    pub fn graph_job(&mut self) -> Option<GraphJob> {
        if !self.wants_graph() {
            return None;
        }
        let job = self.snapshot()?;
        self.touched = Some(Default::default());
        Some(job)
    }

    /// The items as they are now, to build a graph from (`None` once the
    /// memory has one). The flat buffer is shared, not copied.
    pub(crate) fn snapshot(&self) -> Option<GraphJob> {
        let Vectors::Flat(rows) = &self.vectors else {
            return None;
        };
        Some(GraphJob {
            dim: self.dim,
            params: self.params.hnsw.clone(),
            ids: self.items.iter().map(|i| i.id.clone()).collect(),
            rows: Arc::clone(rows),
        })
    }

    /// The edits noted since the job was taken (or since the last call),
    /// drained: each edited id with its current vector, or its removal;
    /// empty if no job is out. Applied to the graph with
    /// [`BuiltGraph::catch_up`] outside the lock, they leave
    /// [`VisualMemory::install_graph`] only the edits made after this call.
    pub fn drain_graph_edits(&mut self) -> Edits {
        let ids = match &mut self.touched {
            Some(touched) => std::mem::take(touched),
            None => return Edits::default(),
        };
        let mut edits = Edits::default();
        for id in ids {
            match self.slots.get(&id) {
                Some(&slot) => {
                    let row = self.vector_at(slot).into_owned();
                    edits.upserts.push((id, row));
                }
                None => edits.removes.push(id),
            }
        }
        edits
    }

    /// Switches searches to `built` after applying the edits not yet
    /// drained. Returns `false`, changing nothing, if no job is out (one
    /// was abandoned, or the memory already has a graph). Either way the
    /// job ends here: if the graph refuses a catch-up edit, the memory
    /// stays in exact search and may hand out another job.
    pub fn install_graph(&mut self, built: BuiltGraph) -> Result<bool> {
        if self.touched.is_none() {
            return Ok(false);
        }
        if !matches!(self.vectors, Vectors::Flat(_)) {
            self.touched = None;
            return Ok(false);
        }
        let edits = self.drain_graph_edits();
        self.touched = None;
        built.catch_up(&edits)?;
        tracing::info!(
            items = self.len(),
            caught_up = edits.len(),
            "visual memory switched to graph search"
        );
        self.vectors = Vectors::Graph(built.index);
        Ok(true)
    }

    /// Forgets the job that is out (its build failed), so that
    /// [`VisualMemory::wants_graph`] may ask for another.
    pub fn abandon_graph_job(&mut self) {
        self.touched = None;
    }
}
