//! The memory itself: (id, label, embedding) items searched exactly, edited
//! in place, pruned on demand.
//!
//! Embeddings are stored L2-normalised in one contiguous row-major buffer,
//! so a query is one pass of dot products (`mnemos_hnsw::dot`) (`d = 1 − cosine = 1 − dot`) and
//! a removal is a swap with the last row: removed items are gone from the
//! buffer at once, not hidden behind a filter, so they can never be
//! returned. Approximate search for large memories and durability are the
//! next layers; they keep this type as the source of truth.

use std::collections::HashMap;

use mnemos_hnsw::dot;

use crate::vote::{aggregate, Aggregation, Decision, DistanceRange, Neighbor};
use crate::{Result, VisualError};

/// Items used to estimate the memory's distance range for the softmax
/// aggregation: all pairs among the first this many rows.
const RANGE_SAMPLE: usize = 512;

/// One stored sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    pub label: String,
    /// Vote multiplier: 1, or 1.75/(1 + wrong-count) after soft pruning.
    pub multiplier: f32,
}

/// A retrieved neighbour, nearest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub slot: usize,
    pub distance: f32,
}

/// What a pruning pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PruneReport {
    /// Items examined.
    pub examined: usize,
    /// Hard pruning: `(id, label, wrong_count)` of the items dropped.
    pub removed: Vec<(String, String, u32)>,
    /// Soft pruning: `(id, new multiplier)` of the items down-weighted.
    pub downweighted: Vec<(String, f32)>,
}

/// How to prune (`SPECS.md` §3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prune {
    /// Drop items that appear with the wrong label in at least `threshold`
    /// other items' top-`k`.
    Hard { k: usize, threshold: u32 },
    /// Multiply each item's vote by 1.75/(1 + wrong-count).
    Soft { k: usize },
}

/// An in-memory visual memory of fixed embedding dimension.
#[derive(Debug, Clone)]
pub struct VisualMemory {
    dim: usize,
    rows: Vec<f32>,
    items: Vec<Item>,
    slots: HashMap<String, usize>,
    range: Option<DistanceRange>,
}

impl VisualMemory {
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(VisualError::InvalidInput(
                "embedding dimension must be at least 1".into(),
            ));
        }
        Ok(Self {
            dim,
            rows: Vec::new(),
            items: Vec::new(),
            slots: HashMap::new(),
            range: None,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
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
        if id.is_empty() || label.is_empty() {
            return Err(VisualError::InvalidInput(
                "id and label must not be empty".into(),
            ));
        }
        let row = self.normalised(embedding)?;
        let item = Item {
            id: id.to_owned(),
            label: label.to_owned(),
            multiplier: 1.0,
        };
        match self.slots.get(id) {
            Some(&slot) => {
                self.rows[slot * self.dim..(slot + 1) * self.dim].copy_from_slice(&row);
                self.items[slot] = item;
            }
            None => {
                self.slots.insert(id.to_owned(), self.items.len());
                self.rows.extend_from_slice(&row);
                self.items.push(item);
            }
        }
        self.range = None;
        Ok(())
    }

    /// Removes `id`; returns whether it was stored.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.slots.remove(id) else {
            return false;
        };
        let last = self.items.len() - 1;
        if slot != last {
            let (head, tail) = self.rows.split_at_mut(last * self.dim);
            head[slot * self.dim..(slot + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
            self.items.swap(slot, last);
            self.slots.insert(self.items[slot].id.clone(), slot);
        }
        self.items.pop();
        self.rows.truncate(last * self.dim);
        self.range = None;
        true
    }

    /// Removes every item labelled `label`; returns their ids.
    pub fn remove_class(&mut self, label: &str) -> Vec<String> {
        let ids: Vec<String> = self
            .items
            .iter()
            .filter(|i| i.label == label)
            .map(|i| i.id.clone())
            .collect();
        for id in &ids {
            self.remove(id);
        }
        ids
    }

    /// The `k` items nearest to the unit vector `query`, nearest first
    /// (ties by slot), skipping `exclude`.
    pub fn search(&self, query: &[f32], k: usize, exclude: Option<usize>) -> Vec<Hit> {
        let mut hits: Vec<Hit> = self
            .rows
            .chunks_exact(self.dim)
            .enumerate()
            .filter(|(slot, _)| Some(*slot) != exclude)
            .map(|(slot, row)| Hit {
                slot,
                distance: 1.0 - dot(query, row),
            })
            .collect();
        let k = k.min(hits.len());
        if k == 0 {
            return Vec::new();
        }
        let by_distance =
            |a: &Hit, b: &Hit| a.distance.total_cmp(&b.distance).then(a.slot.cmp(&b.slot));
        hits.select_nth_unstable_by(k - 1, by_distance);
        hits.truncate(k);
        hits.sort_by(by_distance);
        hits
    }

    /// Classifies `embedding` by its `k` nearest items.
    pub fn classify(
        &mut self,
        embedding: &[f32],
        k: usize,
        aggregation: Aggregation,
    ) -> Result<Decision> {
        if k == 0 {
            return Err(VisualError::InvalidInput("k must be at least 1".into()));
        }
        let query = self.normalised(embedding)?;
        // Only softmax uses the range; it costs all pairs of a sample.
        let range = if aggregation == Aggregation::Softmax {
            self.distance_range()
        } else {
            DistanceRange::FULL
        };
        let hits = self.search(&query, k, None);
        let neighbors: Vec<Neighbor<'_>> = hits
            .iter()
            .map(|h| {
                let item = &self.items[h.slot];
                Neighbor {
                    id: &item.id,
                    label: &item.label,
                    distance: h.distance,
                    multiplier: item.multiplier,
                }
            })
            .collect();
        Ok(aggregate(&neighbors, aggregation, range))
    }

    /// The min and max distance between stored items (over all pairs of
    /// the first [`RANGE_SAMPLE`] rows), for the softmax aggregation;
    /// cached until the next edit.
    pub fn distance_range(&mut self) -> DistanceRange {
        if let Some(r) = self.range {
            return r;
        }
        let n = self.items.len().min(RANGE_SAMPLE);
        let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
        for i in 0..n {
            for j in i + 1..n {
                let d = 1.0 - dot(self.row(i), self.row(j));
                min = min.min(d);
                max = max.max(d);
            }
        }
        let range = if min < max {
            DistanceRange { min, max }
        } else {
            DistanceRange::FULL
        };
        self.range = Some(range);
        range
    }

    /// Runs every item as a query against the others and counts, for each
    /// item, how often it appears in another item's top-`k` with a label
    /// that differs from that item's; then says what `how` would do,
    /// changing nothing (so a durable caller can log it first).
    pub fn plan_prune(&self, how: Prune) -> Result<PruneReport> {
        let k = match how {
            Prune::Hard { threshold: 0, .. } => {
                return Err(VisualError::InvalidInput(
                    "prune threshold must be at least 1".into(),
                ))
            }
            Prune::Hard { k, .. } | Prune::Soft { k } => k,
        };
        if k == 0 {
            return Err(VisualError::InvalidInput(
                "prune k must be at least 1".into(),
            ));
        }
        let mut wrong = vec![0u32; self.items.len()];
        for i in 0..self.items.len() {
            for hit in self.search(self.row(i), k, Some(i)) {
                if self.items[hit.slot].label != self.items[i].label {
                    wrong[hit.slot] += 1;
                }
            }
        }
        let mut report = PruneReport {
            examined: self.items.len(),
            ..PruneReport::default()
        };
        for (item, &w) in self.items.iter().zip(&wrong) {
            match how {
                Prune::Hard { threshold, .. } if w >= threshold => {
                    report
                        .removed
                        .push((item.id.clone(), item.label.clone(), w));
                }
                Prune::Soft { .. } if w > 0 => {
                    report
                        .downweighted
                        .push((item.id.clone(), 1.75 / (1.0 + w as f32)));
                }
                _ => {}
            }
        }
        Ok(report)
    }

    /// Carries out a [`VisualMemory::plan_prune`] report.
    pub fn apply_prune(&mut self, report: &PruneReport) {
        for (id, _, _) in &report.removed {
            self.remove(id);
        }
        for (id, m) in &report.downweighted {
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
    pub fn iter(&self) -> impl Iterator<Item = (&Item, &[f32])> {
        self.items.iter().zip(self.rows.chunks_exact(self.dim))
    }

    fn row(&self, slot: usize) -> &[f32] {
        &self.rows[slot * self.dim..(slot + 1) * self.dim]
    }
}
