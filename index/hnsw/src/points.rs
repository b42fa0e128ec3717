//! The bookkeeping hnsw_rs lacks: which graph point holds which id and
//! version, and which points are dead.
//!
//! Every vector written gets a fresh *slot*, the number it is inserted into
//! the graph under. Re-writing an id gives it a new slot and leaves the old
//! one dead (a tombstone); removing an id leaves its slot dead. Dead slots
//! stay in the graph, where they still help route searches, until a
//! compaction rebuilds the graph from live slots only.
//!
//! The table also keeps its own copy of every vector: exact search scans
//! them, persistence writes them, and compaction rebuilds from them.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use mnemos_index_core::slots::SlotVectors;
use mnemos_index_core::vector::dot;
use mnemos_index_core::Seq;

/// Vectors and id/version maps for every slot of one graph.
#[derive(Debug, Clone)]
pub(crate) struct PointTable {
    /// Vector, owner and seq per slot, live or dead; a dead slot has no
    /// owner.
    store: SlotVectors,
    /// id → its one live slot.
    live: HashMap<Arc<str>, usize>,
}

impl PointTable {
    pub(crate) fn new(dim: usize) -> Self {
        Self::with_capacity(dim, 0)
    }

    pub(crate) fn with_capacity(dim: usize, slots: usize) -> Self {
        Self {
            store: SlotVectors::with_capacity(dim, slots),
            live: HashMap::with_capacity(slots),
        }
    }

    /// Slots ever handed out, live and dead: the graph's size.
    pub(crate) fn slots(&self) -> usize {
        self.store.slots()
    }

    pub(crate) fn live_count(&self) -> usize {
        self.live.len()
    }

    pub(crate) fn dead_count(&self) -> usize {
        self.slots() - self.live_count()
    }

    /// True for a slot whose vector is its id's current version. Slots not
    /// yet committed by [`Self::push`] (a write in progress) are not live.
    pub(crate) fn is_live(&self, slot: usize) -> bool {
        self.store.is_live(slot)
    }

    pub(crate) fn vector(&self, slot: usize) -> &[f32] {
        self.store.vector(slot)
    }

    /// The id held by a live slot.
    pub(crate) fn owner(&self, slot: usize) -> Option<&Arc<str>> {
        self.store.owner(slot)
    }

    /// Seq and vector of the live version of `id`.
    pub(crate) fn get(&self, id: &str) -> Option<(Seq, &[f32])> {
        let &slot = self.live.get(id)?;
        Some((self.store.seq(slot), self.vector(slot)))
    }

    /// Appends a vector as the live version of `id`, tombstoning the previous
    /// one, and returns its slot (always the old [`Self::slots`]).
    pub(crate) fn push(&mut self, id: Arc<str>, seq: Seq, vector: &[f32]) -> usize {
        let slot = self.store.push(vector, Some(Arc::clone(&id)), seq);
        if let Some(old) = self.live.insert(id, slot) {
            self.store.set_owner(old, None);
        }
        slot
    }

    /// Tombstones the live version of `id`; false if there was none.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        match self.live.remove(id) {
            Some(slot) => {
                self.store.set_owner(slot, None);
                true
            }
            None => false,
        }
    }

    /// (id, seq, vector) of every live slot, in slot order.
    pub(crate) fn live_entries(&self) -> impl Iterator<Item = (&Arc<str>, Seq, &[f32])> + '_ {
        self.store.live_entries()
    }

    /// A new table holding only the live entries, renumbered from slot 0:
    /// the starting point of a compaction.
    pub(crate) fn compacted(&self) -> Self {
        let mut table = Self::with_capacity(self.store.dim(), self.live_count());
        for (id, seq, vector) in self.live_entries() {
            table.push(Arc::clone(id), seq, vector);
        }
        table
    }

    /// Dot product of `query` with a slot's vector: the hit score.
    pub(crate) fn score(&self, slot: usize, query: &[f32]) -> f32 {
        dot(self.vector(slot), query)
    }

    /// The `k` live slots with the highest dot product with `query`, best
    /// first, by a flat scan. Exact, and fast enough below a few thousand
    /// vectors; also the reference that graph recall is measured against.
    pub(crate) fn top_k_exact(&self, query: &[f32], k: usize) -> Vec<(usize, f32)> {
        if k == 0 {
            return Vec::new();
        }
        // Min-heap of the best k so far: its top is the one to evict.
        let mut best: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(k + 1);
        for slot in self.store.live_slots() {
            let candidate = Scored {
                score: self.score(slot, query),
                slot,
            };
            if best.len() < k {
                best.push(Reverse(candidate));
            } else if best.peek().is_some_and(|worst| candidate > worst.0) {
                best.pop();
                best.push(Reverse(candidate));
            }
        }
        let mut hits: Vec<(usize, f32)> = best
            .into_iter()
            .map(|Reverse(s)| (s.slot, s.score))
            .collect();
        sort_best_first(&mut hits);
        hits
    }
}

/// Sorts (slot, score) pairs by descending score; ties by slot so results
/// are deterministic.
pub(crate) fn sort_best_first(hits: &mut [(usize, f32)]) {
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

/// A slot ordered by score (higher is better), ties broken towards the
/// lower slot so that exact search is deterministic.
#[derive(Debug, Clone, Copy)]
struct Scored {
    score: f32,
    slot: usize,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.slot.cmp(&self.slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_with(entries: &[(&str, Seq, [f32; 2])]) -> PointTable {
        let mut table = PointTable::new(2);
        for (id, seq, v) in entries {
            table.push(Arc::from(*id), *seq, v);
        }
        table
    }

    #[test]
    fn push_again_tombstones_the_old_slot() {
        let mut table = table_with(&[("a", 1, [1.0, 0.0]), ("b", 2, [0.0, 1.0])]);
        let slot = table.push(Arc::from("a"), 3, &[0.6, 0.8]);
        assert_eq!(slot, 2);
        assert!(!table.is_live(0));
        assert_eq!((table.live_count(), table.dead_count()), (2, 1));
        assert_eq!(table.get("a"), Some((3, &[0.6, 0.8][..])));
    }

    #[test]
    fn remove_hides_and_is_idempotent() {
        let mut table = table_with(&[("a", 1, [1.0, 0.0])]);
        assert!(table.remove("a"));
        assert!(!table.remove("a"));
        assert!(table.get("a").is_none());
        assert!(table.top_k_exact(&[1.0, 0.0], 5).is_empty());
    }

    #[test]
    fn exact_top_k_is_sorted_and_skips_dead() {
        let mut table = table_with(&[
            ("x", 1, [1.0, 0.0]),
            ("y", 1, [0.0, 1.0]),
            ("z", 1, [0.8, 0.6]),
        ]);
        let top = table.top_k_exact(&[1.0, 0.0], 2);
        assert_eq!(top.iter().map(|h| h.0).collect::<Vec<_>>(), vec![0, 2]);
        table.remove("x");
        let top = table.top_k_exact(&[1.0, 0.0], 5);
        assert_eq!(top.iter().map(|h| h.0).collect::<Vec<_>>(), vec![2, 1]);
    }

    #[test]
    fn compacted_keeps_only_live_entries() {
        let mut table = table_with(&[("a", 1, [1.0, 0.0]), ("b", 1, [0.0, 1.0])]);
        table.push(Arc::from("a"), 2, &[0.6, 0.8]);
        table.remove("b");
        let fresh = table.compacted();
        assert_eq!((fresh.slots(), fresh.dead_count()), (1, 0));
        assert_eq!(fresh.get("a"), Some((2, &[0.6, 0.8][..])));
    }
}
