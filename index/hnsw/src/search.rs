//! The read path: graph search with tombstone filtering, exact search, and
//! recall measurement.

use std::collections::HashSet;

use mnemos_index_core::{Hit, IndexRead, Result};

use crate::distance::normalised;
use crate::index::{to_hits, State, VectorIndex};
use crate::points::sort_best_first;

/// What [`crate::graph::Graph::search`] hides inside its walk, if anything.
type LiveTest<'a> = Option<&'a dyn Fn(usize) -> bool>;

impl VectorIndex {
    /// [`IndexRead::search`] with a per-call `ef` in place of
    /// [`crate::HnswParams::ef_search`]: trade latency for recall on one request.
    /// `ef` has no effect where the search is exact.
    pub fn search_with_ef(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>> {
        let query = normalised(query, self.inner.dim)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let state = self.inner.read_state();
        let live = state.points.live_count();
        let scored = if live == 0 {
            Vec::new()
        } else if live < self.inner.params.exact_below || !state.graph_ready {
            state.points.top_k_exact(&query, k)
        } else {
            self.graph_top_k(&state, &query, k, ef.max(1))
        };
        Ok(to_hits(&state.points, &scored))
    }

    /// The exact `k` best live entries by a flat scan of every vector:
    /// perfect recall at O(n·dim) per query. [`IndexRead::search`] uses it
    /// below [`crate::HnswParams::exact_below`]; it is also the recall reference.
    pub fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        let query = normalised(query, self.inner.dim)?;
        let state = self.inner.read_state();
        let scored = state.points.top_k_exact(&query, k);
        Ok(to_hits(&state.points, &scored))
    }

    /// Mean recall@k of [`IndexRead::search`] against [`Self::search_exact`]
    /// over `queries`: the fraction of the exact top k that search returned.
    /// 1.0 when there is nothing to find.
    pub fn recall_at_k(&self, queries: &[Vec<f32>], k: usize) -> Result<f64> {
        self.recall_at_k_with_ef(queries, k, self.inner.params.ef_search)
    }

    /// [`Self::recall_at_k`] of [`Self::search_with_ef`].
    pub fn recall_at_k_with_ef(&self, queries: &[Vec<f32>], k: usize, ef: usize) -> Result<f64> {
        let mut found = 0usize;
        let mut expected = 0usize;
        for query in queries {
            let truth: HashSet<String> = self
                .search_exact(query, k)?
                .into_iter()
                .map(|hit| hit.id)
                .collect();
            expected += truth.len();
            found += self
                .search_with_ef(query, k, ef)?
                .iter()
                .filter(|hit| truth.contains(&hit.id))
                .count();
        }
        Ok(if expected == 0 {
            1.0
        } else {
            found as f64 / expected as f64
        })
    }

    /// Graph search for the `k` best live slots.
    ///
    /// Dead points are hidden by over-fetching, not by hnsw_rs's in-walk
    /// filter: with a filter hnsw_rs gives up its early exit and expands
    /// every queued candidate, which measured several times slower at 100k
    /// points than an unfiltered walk of similar recall. So the first try
    /// asks for `k` scaled up by the dead fraction (compaction keeps that
    /// small) and drops dead slots afterwards. If that comes up short, the
    /// filtered walk, which cannot return dead points, gets a turn, and the
    /// exact scan is the last resort: `k` live results whenever `k` exist.
    fn graph_top_k(&self, state: &State, query: &[f32], k: usize, ef: usize) -> Vec<(usize, f32)> {
        let points = &state.points;
        let k = k.min(points.live_count());
        let is_live = |slot: usize| points.is_live(slot);
        let live_fraction = points.live_count() as f64 / points.slots().max(1) as f64;
        let scale = |n: usize| (n as f64 / live_fraction).ceil() as usize;
        let want = if points.dead_count() == 0 {
            k
        } else {
            scale(k) + 2
        };
        let ef = scale(ef.max(k));
        let filtered: LiveTest = Some(&is_live);
        let tries = [(want, ef, None), (want * 2, ef * 2, filtered)];
        for (want, ef, filter) in tries {
            let mut slots = state.graph.search(query, want, ef, filter);
            slots.sort_unstable();
            // One slot is one graph point unless an insert panicked half-way
            // and its slot was handed out again; never return it twice.
            slots.dedup();
            // Also drops slots of inserts still in flight, which the table
            // does not know yet.
            let mut scored: Vec<(usize, f32)> = slots
                .into_iter()
                .filter(|&slot| points.is_live(slot))
                .map(|slot| (slot, points.score(slot, query)))
                .collect();
            if scored.len() >= k {
                sort_best_first(&mut scored);
                scored.truncate(k);
                return scored;
            }
        }
        tracing::debug!(k, "hnsw graph search came up short; using exact scan");
        points.top_k_exact(query, k)
    }
}

impl IndexRead<[f32]> for VectorIndex {
    /// The best `k` live entries by dot product with the normalised `query`.
    /// Exact below [`crate::HnswParams::exact_below`] live entries (and while the
    /// graph is first built after [`VectorIndex::open`]), approximate above;
    /// either way `min(k, len)` hits are returned, every one live.
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.search_with_ef(query, k, self.inner.params.ef_search)
    }

    fn len(&self) -> usize {
        self.inner.read_state().points.live_count()
    }
}
