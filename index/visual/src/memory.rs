//! The memory itself: (id, label, embedding) items, searched exactly while
//! few and through an HNSW graph once many, edited in place, pruned on
//! demand.
//!
//! Items live in a dense table (`items`, slot = position) with an id →
//! slot map; a removal swaps the last item into the hole, so slots stay
//! dense and a slot is only valid until the next edit. The embeddings live
//! in [`Vectors`]: a flat buffer parallel to the table below
//! [`VisualParams::ann_above`] items, a graph index keyed by id from then
//! on. Removed items are never returned in either mode: the flat buffer
//! drops their row at once, the graph index tombstones them before
//! `remove` returns, and graph hits are mapped back through the id → slot
//! map, which no longer knows them.
//!
//! A memory that shrinks below the threshold again keeps its graph: a
//! rebuild back and forth around the threshold would cost far more than
//! it saves, and the graph index itself scans exactly below
//! `hnsw.exact_below` live items.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use mnemos_hnsw::VectorIndex;
use mnemos_index_core::IndexWrite;
use serde::Serialize;

use crate::params::VisualParams;
use crate::prune;
use crate::vectors::{build_index, Vectors};
use crate::vote::DistanceRange;
use crate::{Result, VisualError};

pub use crate::prune::{Prune, PruneReport};

/// One stored sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    pub label: String,
    /// Vote multiplier: 1, or 1.75/(1 + wrong-count) after soft pruning.
    pub multiplier: f32,
    /// The caller's metadata, opaque here (shared, so answers can carry it
    /// without copying).
    pub metadata: Option<Arc<str>>,
}

/// A retrieved neighbour, nearest first. `slot` indexes [`VisualMemory::item`]
/// until the next edit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub slot: usize,
    pub distance: f32,
}

/// What a stats endpoint shows about a memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VisualStats {
    /// Live items.
    pub items: usize,
    /// Distinct labels among them.
    pub classes: usize,
    /// Whether searches go through the HNSW graph.
    pub graph: bool,
    /// Points in the graph, live and dead (0 without a graph).
    pub graph_points: usize,
    /// Replaced or removed points still in the graph, hidden from searches
    /// until the graph's background compaction drops them.
    pub dead_points: usize,
}

/// A visual memory of fixed embedding dimension.
///
/// Reads take `&self` and it is `Send + Sync`: many threads may classify
/// at once while edits (`&mut self`) are serialised by the caller.
pub struct VisualMemory {
    pub(crate) dim: usize,
    pub(crate) params: VisualParams,
    pub(crate) items: Vec<Item>,
    pub(crate) slots: HashMap<String, usize>,
    /// label → number of items carrying it.
    classes: HashMap<String, usize>,
    pub(crate) vectors: Vectors,
    /// The softmax aggregation's distance range; reset by every edit.
    pub(crate) range: OnceLock<DistanceRange>,
    /// Leave the graph to [`VisualMemory::graph_job`] instead of building
    /// it inside the upsert that reaches `ann_above` ([`crate::deferred`]).
    pub(crate) defer_graph: bool,
    /// While a graph job is out: the ids edited since it was taken.
    pub(crate) touched: Option<HashSet<String>>,
}

impl VisualMemory {
    /// An empty memory with the default [`VisualParams`].
    pub fn new(dim: usize) -> Result<Self> {
        Self::with_params(dim, VisualParams::default())
    }

    pub fn with_params(dim: usize, params: VisualParams) -> Result<Self> {
        params.validate(dim)?;
        let vectors = if params.ann_above == 0 {
            Vectors::Graph(VectorIndex::new(dim, params.hnsw.clone())?)
        } else {
            Vectors::Flat(Arc::default())
        };
        Ok(Self {
            dim,
            params,
            items: Vec::new(),
            slots: HashMap::new(),
            classes: HashMap::new(),
            vectors,
            range: OnceLock::new(),
            defer_graph: false,
            touched: None,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn params(&self) -> &VisualParams {
        &self.params
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.slots.contains_key(id)
    }

    pub fn item(&self, slot: usize) -> &Item {
        &self.items[slot]
    }

    /// The item stored under `id`.
    pub fn get(&self, id: &str) -> Option<&Item> {
        self.slots.get(id).map(|&slot| &self.items[slot])
    }

    /// Sets `id`'s metadata; returns whether it is stored.
    pub fn set_metadata(&mut self, id: &str, metadata: Option<Arc<str>>) -> bool {
        match self.slots.get(id) {
            Some(&slot) => {
                self.items[slot].metadata = metadata;
                true
            }
            None => false,
        }
    }

    /// Every item, in slot order, without its embedding.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.iter()
    }

    /// The stored (normalised) embedding of `id`.
    pub fn embedding(&self, id: &str) -> Option<Vec<f32>> {
        self.slots
            .get(id)
            .map(|&slot| self.vector_at(slot).into_owned())
    }

    /// Whether searches go through the HNSW graph.
    pub fn is_graph(&self) -> bool {
        matches!(self.vectors, Vectors::Graph(_))
    }

    pub fn stats(&self) -> VisualStats {
        let (graph_points, dead_points) = match &self.vectors {
            Vectors::Flat(_) => (0, 0),
            Vectors::Graph(index) => {
                let s = index.stats();
                (s.graph_points, s.dead)
            }
        };
        VisualStats {
            items: self.items.len(),
            classes: self.classes.len(),
            graph: self.is_graph(),
            graph_points,
            dead_points,
        }
    }

    /// Checks and L2-normalises `embedding` (right dimension, finite, not
    /// all zeros; unit vectors are kept bit for bit, so re-normalising a
    /// stored row changes nothing). Nothing is stored by a failing call.
    pub fn normalised(&self, embedding: &[f32]) -> Result<Vec<f32>> {
        mnemos_hnsw::normalised(embedding, self.dim)
            .map_err(|e| VisualError::InvalidInput(e.to_string()))
    }

    /// Adds or replaces the item `id`. New labels need no training: a new
    /// class exists as soon as its first sample is stored.
    pub fn upsert(&mut self, id: &str, label: &str, embedding: &[f32]) -> Result<()> {
        self.upsert_batch(&[(id, label, embedding)])
    }

    /// Adds or replaces `(id, label, embedding)` items, all or none (every
    /// item is checked before anything changes); a repeated id keeps its
    /// last occurrence. A replaced item's vote multiplier is reset to 1.
    ///
    /// In graph mode the batch goes to the graph in one call, which
    /// inserts it on all cores: bulk loads should come in large batches.
    /// The batch that brings the memory to [`VisualParams::ann_above`]
    /// items builds the graph from every stored vector first, unless graph
    /// builds are deferred to a background job ([`crate::deferred`]).
    pub fn upsert_batch(&mut self, batch: &[(&str, &str, &[f32])]) -> Result<()> {
        let mut rows = Vec::with_capacity(batch.len());
        for (i, (id, label, embedding)) in batch.iter().enumerate() {
            if id.is_empty() || label.is_empty() {
                return Err(VisualError::InvalidInput(format!(
                    "item {i}: id and label must not be empty"
                )));
            }
            rows.push(self.normalised(embedding)?);
        }
        self.range = OnceLock::new();
        let mut next = 0;
        while next < batch.len() && !self.is_graph() {
            let (id, label, _) = batch[next];
            let (slot, added) = self.put_item(id, label);
            if let Vectors::Flat(flat) = &mut self.vectors {
                let flat = Arc::make_mut(flat);
                if added {
                    flat.extend_from_slice(&rows[next]);
                } else {
                    flat[slot * self.dim..(slot + 1) * self.dim].copy_from_slice(&rows[next]);
                }
            }
            self.touch(id);
            next += 1;
            if self.items.len() >= self.params.ann_above && !self.defer_graph {
                self.enter_graph_mode()?;
            }
        }
        if let Vectors::Graph(index) = &self.vectors {
            let entries: Vec<(&str, u64, &[f32])> = batch[next..]
                .iter()
                .zip(&rows[next..])
                .map(|((id, _, _), row)| (*id, 0, row.as_slice()))
                .collect();
            // The index first: if it refused, the table must not change.
            index.upsert(&entries)?;
            for (id, label, _) in &batch[next..] {
                self.put_item(id, label);
            }
        }
        Ok(())
    }

    /// Removes `id`; returns whether it was stored.
    pub fn remove(&mut self, id: &str) -> bool {
        !self.remove_many(&[id]).is_empty()
    }

    /// Removes the given ids; returns those that were stored. None of them
    /// is returned by any search once this returns.
    pub fn remove_many(&mut self, ids: &[&str]) -> Vec<String> {
        let mut present: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| self.slots.contains_key(*id))
            .collect();
        present.sort_unstable();
        present.dedup();
        if present.is_empty() {
            return Vec::new();
        }
        if let Vectors::Graph(index) = &self.vectors {
            // Cannot fail today; should it, searches still drop the ids,
            // which the table below forgets.
            if let Err(e) = index.remove(&present) {
                tracing::error!("visual memory: graph index refused a removal: {e}");
            }
        }
        for id in &present {
            self.drop_item(id);
        }
        self.range = OnceLock::new();
        present.into_iter().map(str::to_owned).collect()
    }

    /// Removes every item labelled `label`; returns their ids.
    pub fn remove_class(&mut self, label: &str) -> Vec<String> {
        let ids: Vec<String> = self
            .items
            .iter()
            .filter(|i| i.label == label)
            .map(|i| i.id.clone())
            .collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.remove_many(&refs);
        ids
    }

    /// Counts, for each item, how often it appears in another item's
    /// top-`k` with a different label (every item is run as a query, on
    /// all cores; through the graph in graph mode), then says what `how`
    /// would do, changing nothing (so a durable caller can log it first).
    pub fn plan_prune(&self, how: Prune) -> Result<PruneReport> {
        prune::plan(self, how)
    }

    /// Carries out a [`VisualMemory::plan_prune`] report.
    pub fn apply_prune(&mut self, report: &PruneReport) {
        let ids: Vec<&str> = report.removed.iter().map(|r| r.0.as_str()).collect();
        self.remove_many(&ids);
        for (id, m) in &report.multipliers {
            self.set_multiplier(id, *m);
        }
    }

    /// Plans and applies a pruning pass.
    pub fn prune(&mut self, how: Prune) -> Result<PruneReport> {
        let report = self.plan_prune(how)?;
        self.apply_prune(&report);
        Ok(report)
    }

    /// Sets `id`'s vote multiplier; returns whether it is stored.
    pub fn set_multiplier(&mut self, id: &str, multiplier: f32) -> bool {
        match self.slots.get(id) {
            Some(&slot) => {
                self.items[slot].multiplier = multiplier;
                true
            }
            None => false,
        }
    }

    /// Every item with its stored (normalised) embedding, in slot order.
    /// In graph mode each embedding is copied out of the index as it is
    /// reached, so a pass over a large memory never holds them all.
    pub fn iter(&self) -> impl Iterator<Item = (&Item, Cow<'_, [f32]>)> {
        self.items
            .iter()
            .enumerate()
            .map(|(slot, item)| (item, self.vector_at(slot)))
    }

    /// The embedding of the item in `slot`.
    pub(crate) fn vector_at(&self, slot: usize) -> Cow<'_, [f32]> {
        match &self.vectors {
            Vectors::Flat(rows) => Cow::Borrowed(&rows[slot * self.dim..(slot + 1) * self.dim]),
            Vectors::Graph(index) => Cow::Owned(
                index
                    .get_vector(&self.items[slot].id)
                    .expect("every item of the table is live in the graph index"),
            ),
        }
    }

    /// Records `(id, label)` in the item table (new items at the end);
    /// returns the slot and whether the id is new.
    fn put_item(&mut self, id: &str, label: &str) -> (usize, bool) {
        *self.classes.entry(label.to_owned()).or_insert(0) += 1;
        let item = Item {
            id: id.to_owned(),
            label: label.to_owned(),
            multiplier: 1.0,
            metadata: None,
        };
        match self.slots.get(id) {
            Some(&slot) => {
                let old = std::mem::replace(&mut self.items[slot], item);
                self.forget_label(&old.label);
                (slot, false)
            }
            None => {
                let slot = self.items.len();
                self.slots.insert(id.to_owned(), slot);
                self.items.push(item);
                (slot, true)
            }
        }
    }

    /// Drops `id` from the table (and its row, in flat mode) by moving the
    /// last item into its slot.
    fn drop_item(&mut self, id: &str) {
        let Some(slot) = self.slots.remove(id) else {
            return;
        };
        let last = self.items.len() - 1;
        self.touch(id);
        if let Vectors::Flat(rows) = &mut self.vectors {
            let rows = Arc::make_mut(rows);
            if slot != last {
                let (head, tail) = rows.split_at_mut(last * self.dim);
                head[slot * self.dim..(slot + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
            }
            rows.truncate(last * self.dim);
        }
        let removed = self.items.swap_remove(slot);
        if slot != last {
            self.slots.insert(self.items[slot].id.clone(), slot);
        }
        self.forget_label(&removed.label);
    }

    /// Notes an edit of `id`'s vector for a graph job that is out.
    fn touch(&mut self, id: &str) {
        if let Some(touched) = &mut self.touched {
            touched.insert(id.to_owned());
        }
    }

    fn forget_label(&mut self, label: &str) {
        if let Some(n) = self.classes.get_mut(label) {
            *n -= 1;
            if *n == 0 {
                self.classes.remove(label);
            }
        }
    }

    /// Moves every stored vector into a new graph index and drops the flat
    /// buffer. Until the graph is complete the flat buffer stays in place,
    /// so a failure leaves the memory as it was. Peak memory is the flat
    /// buffer plus the index's two copies, i.e. three times
    /// `ann_above × dim × 4` bytes. The same build as a deferred one
    /// ([`crate::deferred`]), here under the caller's `&mut`.
    fn enter_graph_mode(&mut self) -> Result<()> {
        let Some(job) = self.snapshot() else {
            return Ok(());
        };
        self.vectors = Vectors::Graph(job.build()?.index);
        Ok(())
    }
}

/// A deep copy. In graph mode that means building a second graph from the
/// stored vectors, which at scale takes as long as the first build did.
impl Clone for VisualMemory {
    fn clone(&self) -> Self {
        let vectors = match &self.vectors {
            // Shared until either side's next edit copies it (`Arc::make_mut`).
            Vectors::Flat(rows) => Vectors::Flat(Arc::clone(rows)),
            Vectors::Graph(_) => {
                let entries = self
                    .items
                    .iter()
                    .enumerate()
                    .map(|(slot, item)| (item.id.as_str(), self.vector_at(slot)));
                // The vectors came out of an index built with these very
                // parameters, so nothing here can be refused.
                Vectors::Graph(
                    build_index(self.dim, &self.params.hnsw, entries)
                        .expect("rebuilding a graph from its own vectors"),
                )
            }
        };
        Self {
            dim: self.dim,
            params: self.params.clone(),
            items: self.items.clone(),
            slots: self.slots.clone(),
            classes: self.classes.clone(),
            vectors,
            range: self.range.clone(),
            defer_graph: self.defer_graph,
            // A job taken from the original installs there, not here.
            touched: None,
        }
    }
}

impl fmt::Debug for VisualMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VisualMemory")
            .field("dim", &self.dim)
            .field("params", &self.params)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
