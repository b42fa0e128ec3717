//! The only module that touches hnsw_rs.
//!
//! A [`Graph`] is an append-only HNSW graph over *slots*: dense `usize`
//! numbers handed out by [`crate::points::PointTable`]. It knows nothing of
//! document ids, versions or deletions; the caller passes a liveness test to
//! every search, which hnsw_rs applies inside the graph walk
//! (`search_filter`), so dead points still route the walk but are never
//! collected as results.
//!
//! Only hnsw_rs calls that neither print to stdout nor exit the process are
//! used here (`new` with a validated `m`, `insert_slice`,
//! `parallel_insert_slice`, `search_filter`).

use hnsw_rs::prelude::{FilterT, Hnsw};

use crate::distance::ClampedDot;
use crate::params::HnswParams;

/// hnsw_rs's own ceiling on the number of layers (`NB_LAYER_MAX`).
const MAX_LAYERS: usize = 16;

/// Below this many points a batch is inserted on the calling thread: rayon's
/// fan-out costs more than it saves and would compete with query threads.
const PARALLEL_INSERT_MIN: usize = 64;

/// An HNSW graph of unit vectors keyed by slot.
pub(crate) struct Graph {
    hnsw: Hnsw<'static, f32, ClampedDot>,
}

impl Graph {
    /// An empty graph. `params` must have passed [`HnswParams::validate`]:
    /// hnsw_rs exits the process for `m > 256`. `capacity` only sizes the
    /// first allocations.
    pub(crate) fn new(params: &HnswParams, capacity: usize) -> Self {
        debug_assert!(params.validate().is_ok());
        let hnsw = Hnsw::new(
            params.m,
            capacity.max(1),
            MAX_LAYERS,
            params.ef_construction,
            ClampedDot,
        );
        Self { hnsw }
    }

    /// Adds points. The caller guarantees every slot is new to this graph
    /// (hnsw_rs would otherwise keep two points under one slot) and every
    /// vector has unit length and the index's dimension.
    ///
    /// Takes `&self`: hnsw_rs locks internally, so searches run during
    /// inserts.
    pub(crate) fn insert(&self, points: &[(&[f32], usize)]) {
        if points.len() >= PARALLEL_INSERT_MIN {
            self.hnsw.parallel_insert_slice(&points.to_vec());
        } else {
            for &point in points {
                self.hnsw.insert_slice(point);
            }
        }
    }

    /// Up to `k` slots near `query`, with `ef` candidates in the bottom
    /// layer, skipping slots that fail `is_live` inside the walk.
    ///
    /// May return fewer than `k` live slots even when more exist (hnsw_rs
    /// cuts its candidate list to `k` before it drops filtered points), so
    /// the caller retries wider when short. With a filter, hnsw_rs also
    /// gives up its early exit and expands every queued candidate, so the
    /// caller prefers `None` and drops unwanted slots afterwards.
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        is_live: Option<&dyn Fn(usize) -> bool>,
    ) -> Vec<usize> {
        let filter = is_live.map(|is_live| move |slot: &usize| is_live(*slot));
        let filter = filter.as_ref().map(|f| f as &dyn FilterT);
        self.hnsw
            .search_filter(query, k, ef.max(k), filter)
            .into_iter()
            .map(|neighbour| neighbour.d_id)
            .collect()
    }

    /// Points inserted, live or dead.
    pub(crate) fn len(&self) -> usize {
        self.hnsw.get_nb_point()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::normalised;

    fn unit(seed: usize) -> Vec<f32> {
        let raw: Vec<f32> = (0..16)
            .map(|i| ((i * 31 + seed * 17) as f32).sin())
            .collect();
        normalised(&raw, 16).unwrap()
    }

    #[test]
    fn filter_hides_points_during_the_walk() {
        let graph = Graph::new(&HnswParams::default(), 100);
        let vectors: Vec<Vec<f32>> = (0..100).map(unit).collect();
        let batch: Vec<(&[f32], usize)> = vectors
            .iter()
            .enumerate()
            .map(|(slot, v)| (v.as_slice(), slot))
            .collect();
        graph.insert(&batch);
        assert_eq!(graph.len(), 100);

        let all = graph.search(&vectors[42], 5, 64, None);
        assert_eq!(all.first(), Some(&42));
        let odd = graph.search(&vectors[42], 5, 64, Some(&|slot| slot % 2 == 1));
        assert!(!odd.is_empty());
        assert!(odd.iter().all(|slot| slot % 2 == 1), "{odd:?}");
    }

    #[test]
    fn empty_graph_returns_nothing() {
        let graph = Graph::new(&HnswParams::default(), 0);
        assert!(graph.search(&unit(1), 3, 10, None).is_empty());
    }
}
