//! The read path: nearest-neighbour search (a flat scan or the graph),
//! classification by the neighbours' votes, and the distance range the
//! softmax aggregation normalises with. Everything here takes `&self`, so
//! any number of threads may classify at once.

use std::borrow::Cow;

use mnemos_hnsw::dot;
use mnemos_index_core::IndexRead;

use crate::memory::{Hit, VisualMemory};
use crate::vectors::{flat_top_k, sort_nearest_first, Vectors};
use crate::vote::{aggregate, Aggregation, Decision, DistanceRange, Neighbor};
use crate::{Result, VisualError};

/// Items used to estimate the memory's distance range for the softmax
/// aggregation: all pairs among the first this many items.
const RANGE_SAMPLE: usize = 512;
/// Largest per-query `ef` accepted (as [`mnemos_hnsw::HnswParams`] does):
/// beyond it a query would walk most of the graph.
const MAX_EF: usize = 100_000;

impl VisualMemory {
    /// The `k` items nearest to the unit vector `query`, nearest first
    /// (ties by slot), skipping the item in slot `exclude`. Approximate in
    /// graph mode. A query of the wrong dimension finds nothing.
    pub fn search(&self, query: &[f32], k: usize, exclude: Option<usize>) -> Vec<Hit> {
        self.search_with_ef(query, k, exclude, None)
            .unwrap_or_default()
    }

    /// [`Self::search`] with the graph's search breadth for this query
    /// (`None`: `hnsw.ef_search`); `ef` has no effect on exact scans.
    pub fn search_with_ef(
        &self,
        query: &[f32],
        k: usize,
        exclude: Option<usize>,
        ef: Option<usize>,
    ) -> Result<Vec<Hit>> {
        match &self.vectors {
            Vectors::Flat(rows) => {
                if query.len() != self.dim {
                    return Err(VisualError::InvalidInput(format!(
                        "query has {} dimensions, the memory {}",
                        query.len(),
                        self.dim
                    )));
                }
                Ok(flat_top_k(rows, self.dim, query, k, exclude))
            }
            Vectors::Graph(index) => {
                // One more, in case the excluded item is among them.
                let want = k + usize::from(exclude.is_some());
                let hits = match ef {
                    Some(ef) => index.search_with_ef(query, want, ef)?,
                    None => index.search(query, want)?,
                };
                Ok(self.graph_hits(hits, k, exclude))
            }
        }
    }

    /// The exact `k` nearest items by a scan of every stored vector, in
    /// either mode: the reference graph recall is measured against.
    pub fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        match &self.vectors {
            Vectors::Flat(_) => self.search_with_ef(query, k, None, None),
            Vectors::Graph(index) => Ok(self.graph_hits(index.search_exact(query, k)?, k, None)),
        }
    }

    /// Classifies `embedding` by its `k` nearest items.
    pub fn classify(
        &self,
        embedding: &[f32],
        k: usize,
        aggregation: Aggregation,
    ) -> Result<Decision> {
        self.classify_with_ef(embedding, k, aggregation, None)
    }

    /// [`Self::classify`] with the graph's search breadth for this query
    /// (`None`: `hnsw.ef_search`; it only matters in graph mode): a larger
    /// `ef` finds the true neighbours more often and takes longer.
    pub fn classify_with_ef(
        &self,
        embedding: &[f32],
        k: usize,
        aggregation: Aggregation,
        ef: Option<usize>,
    ) -> Result<Decision> {
        if k == 0 {
            return Err(VisualError::InvalidInput("k must be at least 1".into()));
        }
        if let Some(ef) = ef.filter(|ef| !(1..=MAX_EF).contains(ef)) {
            return Err(VisualError::InvalidInput(format!(
                "ef must be in 1..={MAX_EF}, got {ef}"
            )));
        }
        let query = self.normalised(embedding)?;
        // Only softmax uses the range; it costs all pairs of a sample.
        let range = if aggregation == Aggregation::Softmax {
            self.distance_range()
        } else {
            DistanceRange::FULL
        };
        let hits = self.search_with_ef(&query, k, None, ef)?;
        Ok(aggregate(&self.neighbors(&hits), aggregation, range))
    }

    /// The voters behind `hits` (from a search of this memory, before any
    /// edit), in order.
    pub fn neighbors(&self, hits: &[Hit]) -> Vec<Neighbor<'_>> {
        hits.iter()
            .map(|h| {
                let item = &self.items[h.slot];
                Neighbor {
                    id: &item.id,
                    label: &item.label,
                    distance: h.distance,
                    multiplier: item.multiplier,
                }
            })
            .collect()
    }

    /// The min and max distance between stored items (over all pairs of
    /// the first [`RANGE_SAMPLE`] items), for the softmax aggregation;
    /// computed once and cached until the next edit.
    pub fn distance_range(&self) -> DistanceRange {
        *self.range.get_or_init(|| {
            let n = self.items.len().min(RANGE_SAMPLE);
            let sample: Vec<Cow<'_, [f32]>> = (0..n).map(|s| self.vector_at(s)).collect();
            let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
            for (i, a) in sample.iter().enumerate() {
                for b in &sample[i + 1..] {
                    let d = 1.0 - dot(a, b);
                    min = min.min(d);
                    max = max.max(d);
                }
            }
            if min < max {
                DistanceRange { min, max }
            } else {
                DistanceRange::FULL
            }
        })
    }

    /// Graph hits as slots: ids the table no longer holds are dropped (a
    /// removal is final even if the index were ever to lag), as is
    /// `exclude`; at most `k`, nearest first.
    fn graph_hits(
        &self,
        hits: Vec<mnemos_index_core::Hit>,
        k: usize,
        exclude: Option<usize>,
    ) -> Vec<Hit> {
        let mut out: Vec<Hit> = hits
            .into_iter()
            .filter_map(|h| {
                let slot = *self.slots.get(h.id.as_str())?;
                (Some(slot) != exclude).then_some(Hit {
                    slot,
                    distance: (1.0 - h.score).max(0.0),
                })
            })
            .collect();
        sort_nearest_first(&mut out);
        out.truncate(k);
        out
    }
}
