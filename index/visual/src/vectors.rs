//! Where the embeddings live, and the exact scan.
//!
//! A small memory keeps its vectors in one contiguous row-major buffer
//! (row `s` belongs to item slot `s`) and answers each query with one pass
//! of dot products: exact, and the cheapest thing there is at that size.
//! A large one hands them to a [`VectorIndex`] (an HNSW graph keyed by
//! item id) and keeps no copy of its own: the index already holds two
//! (its point table for exact scans and rebuilds, and hnsw_rs's graph
//! nodes), and at a million 1280-d items each copy is 5 GB.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use mnemos_hnsw::{dot, HnswParams, VectorIndex};
use mnemos_index_core::IndexWrite;

use crate::memory::Hit;
use crate::Result;

/// Vectors per graph upsert while a graph is built from existing items:
/// large enough that hnsw_rs's parallel insert keeps every core busy,
/// small enough that the index's transient copy of one batch (it
/// normalises into a new buffer) stays near 80 MB at 1280-d.
const BUILD_CHUNK: usize = 16_384;

/// The two ways the memory stores its embeddings.
pub(crate) enum Vectors {
    /// Row-major unit vectors, row `s` = item slot `s`. Shared with a
    /// graph being built in the background ([`crate::deferred`]); an edit
    /// meanwhile copies the buffer once (`Arc::make_mut`).
    Flat(Arc<Vec<f32>>),
    /// An HNSW graph index keyed by item id.
    Graph(VectorIndex),
}

/// The `k` rows nearest to `query` (smallest `1 − dot`), nearest first,
/// ties by slot, skipping `exclude`. A bounded heap keeps only the best
/// `k` so a query allocates O(k), not O(rows).
pub(crate) fn flat_top_k(
    rows: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    exclude: Option<usize>,
) -> Vec<Hit> {
    if k == 0 {
        return Vec::new();
    }
    // Max-heap on (distance, slot): its top is the worst kept so far.
    let mut best: BinaryHeap<Ranked> = BinaryHeap::with_capacity(k + 1);
    for (slot, row) in rows.chunks_exact(dim).enumerate() {
        if Some(slot) == exclude {
            continue;
        }
        let candidate = Ranked(Hit {
            slot,
            // Rounding puts an exact duplicate a hair below 0.
            distance: (1.0 - dot(query, row)).max(0.0),
        });
        if best.len() < k {
            best.push(candidate);
        } else if best.peek().is_some_and(|worst| candidate < *worst) {
            best.pop();
            best.push(candidate);
        }
    }
    let mut hits: Vec<Hit> = best.into_iter().map(|r| r.0).collect();
    sort_nearest_first(&mut hits);
    hits
}

/// Nearest first; equal distances by slot, so results are deterministic.
pub(crate) fn sort_nearest_first(hits: &mut [Hit]) {
    hits.sort_by(Ranked::order);
}

/// A hit ordered by distance, then slot.
struct Ranked(Hit);

impl Ranked {
    fn order(a: &Hit, b: &Hit) -> Ordering {
        a.distance.total_cmp(&b.distance).then(a.slot.cmp(&b.slot))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        Ranked::order(&self.0, &other.0)
    }
}

/// A graph index holding `entries` (id, unit vector), inserted in chunks
/// of [`BUILD_CHUNK`] so hnsw_rs inserts each chunk in parallel. Every
/// entry gets seq 0: the memory's own log orders edits, not the index.
pub(crate) fn build_index<'a>(
    dim: usize,
    params: &HnswParams,
    entries: impl Iterator<Item = (&'a str, Cow<'a, [f32]>)>,
) -> Result<VectorIndex> {
    let index = VectorIndex::new(dim, params.clone())?;
    let mut chunk: Vec<(&str, Cow<'_, [f32]>)> = Vec::with_capacity(BUILD_CHUNK);
    let flush = |chunk: &mut Vec<(&str, Cow<'_, [f32]>)>| -> Result<()> {
        let batch: Vec<(&str, u64, &[f32])> =
            chunk.iter().map(|(id, v)| (*id, 0, v.as_ref())).collect();
        index.upsert(&batch)?;
        chunk.clear();
        Ok(())
    };
    for entry in entries {
        chunk.push(entry);
        if chunk.len() == BUILD_CHUNK {
            flush(&mut chunk)?;
        }
    }
    flush(&mut chunk)?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_top_k_is_sorted_bounded_and_skips_the_excluded_row() {
        // Unit vectors at angles 0, 0.1, ..., 0.9 rad from the query.
        let rows: Vec<f32> = (0..10)
            .flat_map(|i| {
                let a = i as f32 * 0.1;
                [a.cos(), a.sin()]
            })
            .collect();
        let hits = flat_top_k(&rows, 2, &[1.0, 0.0], 3, Some(1));
        let slots: Vec<usize> = hits.iter().map(|h| h.slot).collect();
        assert_eq!(slots, [0, 2, 3]);
        assert!(hits[0].distance.abs() < 1e-6);
        assert_eq!(flat_top_k(&rows, 2, &[1.0, 0.0], 50, None).len(), 10);
        assert!(flat_top_k(&rows, 2, &[1.0, 0.0], 0, None).is_empty());
    }

    #[test]
    fn equal_distances_come_back_by_slot() {
        let rows = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0];
        let hits = flat_top_k(&rows, 2, &[1.0, 0.0], 2, None);
        let slots: Vec<usize> = hits.iter().map(|h| h.slot).collect();
        assert_eq!(slots, [0, 2]);
    }
}
