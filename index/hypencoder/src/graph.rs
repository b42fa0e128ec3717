//! The neighbour graph: for every live slot, its `k` nearest other live
//! slots by L2 distance between document vectors, nearest first, with the
//! distances (SPECS §2: "precompute, for every document, its 100 nearest
//! neighbours").
//!
//! Lists live in two flat `slots × k` arrays (neighbour slots and squared
//! distances) plus a length per slot: no allocation per document, cheap to
//! scan, and written to disk as they are. Keeping the distances makes
//! maintenance cheap: whether a new document enters a list is one
//! comparison with the list's last distance, and a list can be refilled
//! without recomputing its kept entries.
//!
//! Inserts keep the graph exact (see [`crate::knn`]). Removals do not:
//! [`NeighborGraph::detach`] drops the removed slots from every list and
//! refills each list that lost an entry from the removed documents' own
//! lists, nearest first. A neighbour of a neighbour is where a replacement
//! most likely is, and that costs `O(k)` distances per affected list
//! instead of a pass over the whole collection; the list may miss a
//! document that only a full pass would find, which
//! [`crate::HypencoderIndex::rebuild_graph`] restores.
//!
//! Finding the lists that contain a removed slot scans every list (`slots ×
//! k` comparisons, a few milliseconds at 100k × 100) rather than keeping a
//! reverse index: the reverse index would cost another ~40 MB at 100k × 100
//! and would have to be updated on every list change of every insert, which
//! happen far more often than removals; a batch of removals shares one scan.

use mnemos_index_core::vector::dot;

use crate::distance::from_dot;
use crate::docs::DocTable;

/// Per-slot nearest-neighbour lists of fixed capacity `k`.
pub(crate) struct NeighborGraph {
    k: usize,
    neighbors: Vec<u32>,
    distances: Vec<f32>,
    lens: Vec<u32>,
}

impl NeighborGraph {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            neighbors: Vec::new(),
            distances: Vec::new(),
            lens: Vec::new(),
        }
    }

    /// List capacity.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Grows the arrays to hold `slots` lists; new lists are empty.
    pub(crate) fn ensure_slots(&mut self, slots: usize) {
        if self.lens.len() < slots {
            self.lens.resize(slots, 0);
            self.neighbors.resize(slots * self.k, 0);
            self.distances.resize(slots * self.k, 0.0);
        }
    }

    /// Number of edges, for stats.
    pub(crate) fn edges(&self) -> usize {
        self.lens.iter().map(|&len| len as usize).sum()
    }

    /// The neighbours of `slot`, nearest first.
    pub(crate) fn neighbors(&self, slot: u32) -> &[u32] {
        let (start, len) = self.span(slot);
        &self.neighbors[start..start + len]
    }

    /// The squared distances matching [`Self::neighbors`].
    pub(crate) fn distances(&self, slot: u32) -> &[f32] {
        let (start, len) = self.span(slot);
        &self.distances[start..start + len]
    }

    fn span(&self, slot: u32) -> (usize, usize) {
        match self.lens.get(slot as usize) {
            Some(&len) => (slot as usize * self.k, len as usize),
            None => (0, 0),
        }
    }

    /// Distances at or above this cannot enter `slot`'s list: its farthest
    /// neighbour's once the list is full, infinity before.
    pub(crate) fn bound(&self, slot: u32) -> f32 {
        let (start, len) = self.span(slot);
        if len < self.k {
            f32::INFINITY
        } else {
            self.distances[start + len - 1]
        }
    }

    /// Replaces `slot`'s list with `entries` (`(distance, neighbour)`,
    /// nearest first, at most `k`).
    pub(crate) fn set(&mut self, slot: u32, entries: impl ExactSizeIterator<Item = (f32, u32)>) {
        let len = entries.len().min(self.k);
        let start = slot as usize * self.k;
        for (i, (distance, neighbor)) in entries.take(len).enumerate() {
            self.distances[start + i] = distance;
            self.neighbors[start + i] = neighbor;
        }
        self.lens[slot as usize] = len as u32;
    }

    pub(crate) fn clear(&mut self, slot: u32) {
        if let Some(len) = self.lens.get_mut(slot as usize) {
            *len = 0;
        }
    }

    /// Puts `neighbor` at `distance` into `slot`'s list if it is nearer than
    /// the farthest kept one (or the list has room), dropping the farthest
    /// when full. The caller guarantees `neighbor` is not in the list yet.
    /// Returns whether it entered.
    pub(crate) fn insert(&mut self, slot: u32, neighbor: u32, distance: f32) -> bool {
        // Written so that NaN is refused too.
        if distance.partial_cmp(&self.bound(slot)) != Some(std::cmp::Ordering::Less) {
            return false;
        }
        let (start, len) = self.span(slot);
        let dists = &mut self.distances[start..start + self.k];
        let nbrs = &mut self.neighbors[start..start + self.k];
        let at = dists[..len].partition_point(|&d| d <= distance);
        let end = (len + 1).min(self.k);
        dists.copy_within(at..end - 1, at + 1);
        nbrs.copy_within(at..end - 1, at + 1);
        dists[at] = distance;
        nbrs[at] = neighbor;
        self.lens[slot as usize] = end as u32;
        true
    }

    /// Keeps only the first `k` entries of every list (they are sorted, so
    /// this is exactly the graph for the smaller `k`).
    pub(crate) fn truncate(self, k: usize) -> Self {
        if k >= self.k {
            return self;
        }
        let mut out = Self::new(k);
        out.ensure_slots(self.lens.len());
        for slot in 0..self.lens.len() as u32 {
            let entries = self
                .distances(slot)
                .iter()
                .copied()
                .zip(self.neighbors(slot).iter().copied());
            out.set(slot, entries);
        }
        out
    }

    /// Drops every slot in `removed` from every list, and refills each list
    /// that lost entries from the lost neighbours' own lists (see the module
    /// docs). `removed` slots may stay live in `docs` (an upsert detaches a
    /// replaced version before its replacement is linked); they are never
    /// refill candidates. Their own lists are left as they are: the caller
    /// clears them when it frees the slots.
    pub(crate) fn detach(&mut self, docs: &DocTable, removed: &[u32]) {
        if removed.is_empty() {
            return;
        }
        let slots = self.lens.len();
        let mut gone = vec![false; slots.max(docs.slots())];
        for &slot in removed {
            gone[slot as usize] = true;
        }
        // Pass 1: drop removed entries in place, remembering who lost what.
        let mut affected: Vec<(u32, Vec<u32>)> = Vec::new();
        for slot in 0..slots {
            let len = self.lens[slot] as usize;
            let start = slot * self.k;
            let nbrs = &self.neighbors[start..start + len];
            if gone[slot] || !nbrs.iter().any(|&n| gone[n as usize]) {
                continue;
            }
            let lost: Vec<u32> = nbrs.iter().copied().filter(|&n| gone[n as usize]).collect();
            let mut kept = 0;
            for i in 0..len {
                let n = self.neighbors[start + i];
                if !gone[n as usize] {
                    self.neighbors[start + kept] = n;
                    self.distances[start + kept] = self.distances[start + i];
                    kept += 1;
                }
            }
            self.lens[slot] = kept as u32;
            affected.push((slot as u32, lost));
        }
        // Pass 2: refill from the lost neighbours' lists, which are intact.
        // `stamp[c] == owner + 1` marks slots already in, or already offered
        // to, the list being refilled.
        let mut stamp = vec![0u32; gone.len()];
        for (slot, lost) in affected {
            let mark = slot + 1;
            stamp[slot as usize] = mark;
            for &n in self.neighbors(slot) {
                stamp[n as usize] = mark;
            }
            let mut offers: Vec<(f32, u32)> = Vec::new();
            for &l in &lost {
                let start = l as usize * self.k;
                let len = self.lens[l as usize] as usize;
                for &c in &self.neighbors[start..start + len] {
                    let ci = c as usize;
                    if stamp[ci] == mark || gone[ci] || !docs.is_live(c) {
                        continue;
                    }
                    stamp[ci] = mark;
                    let d = from_dot(
                        docs.sq_norms()[slot as usize],
                        docs.sq_norms()[ci],
                        dot(docs.row(slot), docs.row(c)),
                    );
                    offers.push((d, c));
                }
            }
            for (d, c) in offers {
                self.insert(slot, c, d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn list(graph: &NeighborGraph, slot: u32) -> Vec<(u32, f32)> {
        graph
            .neighbors(slot)
            .iter()
            .copied()
            .zip(graph.distances(slot).iter().copied())
            .collect()
    }

    #[test]
    fn insert_keeps_the_nearest_k_sorted() {
        let mut graph = NeighborGraph::new(3);
        graph.ensure_slots(1);
        assert!(graph.insert(0, 7, 5.0));
        assert!(graph.insert(0, 8, 1.0));
        assert!(graph.insert(0, 9, 3.0));
        assert_eq!(graph.bound(0), 5.0);
        assert!(!graph.insert(0, 10, 6.0));
        assert!(graph.insert(0, 11, 2.0));
        assert_eq!(list(&graph, 0), [(8, 1.0), (11, 2.0), (9, 3.0)]);
        let small = graph.truncate(2);
        assert_eq!(list(&small, 0), [(8, 1.0), (11, 2.0)]);
    }

    #[test]
    fn detach_drops_and_refills_from_the_lost_neighbours_lists() {
        // Points on a line: 0, 1, 2, 3, 10.
        let xs = [0.0f32, 1.0, 2.0, 3.0, 10.0];
        let mut docs = DocTable::new(1);
        for (i, &x) in xs.iter().enumerate() {
            let slot = docs.reserve(&[x]);
            docs.commit(slot, Arc::from(format!("d{i}")), 1);
        }
        let mut graph = NeighborGraph::new(2);
        graph.ensure_slots(xs.len());
        for a in 0..xs.len() as u32 {
            for b in 0..xs.len() as u32 {
                if a != b {
                    let d = (xs[a as usize] - xs[b as usize]).powi(2);
                    graph.insert(a, b, d);
                }
            }
        }
        assert_eq!(list(&graph, 0), [(1, 1.0), (2, 4.0)]);
        // Removing 1: 0 refills from 1's list {0, 2}, which offers nothing
        // new (0 is itself, 2 is kept); 2 gains 0 from it.
        graph.detach(&docs, &[1]);
        docs.release(1);
        graph.clear(1);
        for slot in [0u32, 2, 3, 4] {
            assert!(!graph.neighbors(slot).contains(&1), "slot {slot}");
        }
        assert_eq!(list(&graph, 0), [(2, 4.0)]);
        assert_eq!(list(&graph, 2), [(3, 1.0), (0, 4.0)]);
        // Removing 2 as well: 0 lost 2, whose list {3, 0} offers 3.
        graph.detach(&docs, &[2]);
        assert_eq!(list(&graph, 0), [(3, 9.0)]);
    }
}
