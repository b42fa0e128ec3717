//! Bounded selection: the `k` smallest keys seen so far, in `O(log k)` per
//! accepted item and one comparison per rejected one.
//!
//! Used for each document's nearest neighbours while the graph is built
//! (key = distance) and for a query's top-k hits (key = −score).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One kept item; ordered by key, then slot, so results are deterministic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keyed {
    pub(crate) key: f32,
    pub(crate) slot: u32,
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Keyed {}

impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .total_cmp(&other.key)
            .then(self.slot.cmp(&other.slot))
    }
}

/// The `cap` smallest keys pushed so far (a max-heap of them).
pub(crate) struct SmallestK {
    cap: usize,
    heap: BinaryHeap<Keyed>,
    /// Keys at or above this cannot enter: the largest kept key once full.
    bound: f32,
}

impl SmallestK {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            heap: BinaryHeap::with_capacity(cap + 1),
            bound: if cap == 0 {
                f32::NEG_INFINITY
            } else {
                f32::INFINITY
            },
        }
    }

    /// Keys `>=` this are rejected by [`Self::push`]; the hot loops compare
    /// against it before calling.
    #[inline]
    pub(crate) fn bound(&self) -> f32 {
        self.bound
    }

    /// Offers an item; returns whether it was kept.
    #[inline]
    pub(crate) fn push(&mut self, key: f32, slot: u32) -> bool {
        // NaN is incomparable and never kept.
        if key.partial_cmp(&self.bound) != Some(Ordering::Less) {
            return false;
        }
        self.heap.push(Keyed { key, slot });
        if self.heap.len() > self.cap {
            self.heap.pop();
        }
        if self.heap.len() == self.cap {
            self.bound = self.heap.peek().map_or(f32::INFINITY, |top| top.key);
        }
        true
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The kept items, smallest key first.
    pub(crate) fn into_sorted(self) -> Vec<Keyed> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_smallest_in_order() {
        let mut top = SmallestK::new(3);
        for (i, key) in [5.0, 1.0, 4.0, 2.0, 3.0, 0.5, f32::NAN]
            .into_iter()
            .enumerate()
        {
            top.push(key, i as u32);
        }
        assert_eq!(top.len(), 3);
        assert_eq!(top.bound(), 2.0);
        let kept: Vec<(f32, u32)> = top.into_sorted().iter().map(|k| (k.key, k.slot)).collect();
        assert_eq!(kept, [(0.5, 5), (1.0, 1), (2.0, 3)]);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut top = SmallestK::new(0);
        assert!(!top.push(0.0, 0));
        assert!(top.into_sorted().is_empty());
    }
}
