//! The document table: every stored vector in one slot-major matrix, with
//! its id and seq per slot.
//!
//! One contiguous `slots × dim` matrix is what both consumers want: the
//! q-nets score it block by block ([`mnemos_hypencoder::QNets::score_slice`])
//! and the neighbour graph is built from matrix products over it. A removed
//! document frees its slot, which a later insert reuses, so the matrix does
//! not grow with churn; a freed slot keeps its stale vector until reused and
//! is skipped by every search and graph step because it has no owner.

use std::collections::HashMap;
use std::sync::Arc;

use mnemos_index_core::slots::SlotVectors;
use mnemos_index_core::Seq;

use crate::distance::squared_norm;

/// Slot-major vectors with their owners. Slots are `u32`: the neighbour
/// graph stores them by the hundred per document.
pub(crate) struct DocTable {
    /// Vector, owner and seq per slot. The owner is `None` for a free slot
    /// and for one reserved by an insert that has not committed yet.
    store: SlotVectors,
    /// `|x|²` per slot, for L2 distances from dot products.
    sq_norms: Vec<f32>,
    by_id: HashMap<Arc<str>, u32>,
    /// Free slots, reused last-freed first.
    free: Vec<u32>,
}

impl DocTable {
    pub(crate) fn new(dim: usize) -> Self {
        Self::with_capacity(dim, 0)
    }

    pub(crate) fn with_capacity(dim: usize, slots: usize) -> Self {
        Self {
            store: SlotVectors::with_capacity(dim, slots),
            sq_norms: Vec::with_capacity(slots),
            by_id: HashMap::with_capacity(slots),
            free: Vec::new(),
        }
    }

    pub(crate) fn dim(&self) -> usize {
        self.store.dim()
    }

    /// Number of slots, live or not: the row count of [`Self::vectors`].
    pub(crate) fn slots(&self) -> usize {
        self.store.slots()
    }

    pub(crate) fn live_count(&self) -> usize {
        self.by_id.len()
    }

    /// Slots that hold no live document (free or reserved).
    pub(crate) fn dead_count(&self) -> usize {
        self.slots() - self.live_count()
    }

    pub(crate) fn is_live(&self, slot: u32) -> bool {
        self.store.is_live(slot as usize)
    }

    pub(crate) fn owner(&self, slot: u32) -> Option<&Arc<str>> {
        self.store.owner(slot as usize)
    }

    pub(crate) fn slot_of(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    pub(crate) fn seq(&self, slot: u32) -> Seq {
        self.store.seq(slot as usize)
    }

    pub(crate) fn set_seq(&mut self, slot: u32, seq: Seq) {
        self.store.set_seq(slot as usize, seq);
    }

    /// The whole `slots × dim` matrix, dead rows included.
    pub(crate) fn vectors(&self) -> &[f32] {
        self.store.vectors()
    }

    pub(crate) fn sq_norms(&self) -> &[f32] {
        &self.sq_norms
    }

    pub(crate) fn row(&self, slot: u32) -> &[f32] {
        self.store.vector(slot as usize)
    }

    /// Live slots in slot order.
    pub(crate) fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.store.live_slots().map(|slot| slot as u32)
    }

    /// `(id, seq, vector)` of every live document, in slot order.
    pub(crate) fn live_entries(&self) -> impl Iterator<Item = (&Arc<str>, Seq, &[f32])> + '_ {
        self.store.live_entries()
    }

    /// Stores `vector` in a free or new slot that no search sees until
    /// [`Self::commit`]. Returns the slot.
    pub(crate) fn reserve(&mut self, vector: &[f32]) -> u32 {
        debug_assert_eq!(vector.len(), self.dim());
        let norm = squared_norm(vector);
        match self.free.pop() {
            Some(slot) => {
                self.store.set_vector(slot as usize, vector);
                self.sq_norms[slot as usize] = norm;
                slot
            }
            None => {
                let slot = u32::try_from(self.slots()).expect("fewer than 2^32 slots");
                self.store.push(vector, None, 0);
                self.sq_norms.push(norm);
                slot
            }
        }
    }

    /// Makes a reserved slot the live version of `id`. The caller releases
    /// the slot of the version it replaces.
    pub(crate) fn commit(&mut self, slot: u32, id: Arc<str>, seq: Seq) {
        self.store.set_seq(slot as usize, seq);
        self.store.set_owner(slot as usize, Some(Arc::clone(&id)));
        self.by_id.insert(id, slot);
    }

    /// Frees `slot` for reuse; its id stops mapping to it if it still did.
    pub(crate) fn release(&mut self, slot: u32) {
        if let Some(id) = self.store.set_owner(slot as usize, None) {
            if self.by_id.get(&id) == Some(&slot) {
                self.by_id.remove(&id);
            }
        }
        self.free.push(slot);
    }

    /// The next `n` slots [`Self::reserve`] will hand out, in order.
    #[cfg(test)]
    pub(crate) fn next_slots(&self, n: usize) -> Vec<u32> {
        let reused = self.free.iter().rev().take(n).copied();
        let fresh = (self.slots() as u32..).take(n.saturating_sub(self.free.len()));
        reused.chain(fresh).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_slots_are_reused_and_invisible() {
        let mut table = DocTable::new(2);
        let a = table.reserve(&[1.0, 0.0]);
        table.commit(a, Arc::from("a"), 1);
        let b = table.reserve(&[0.0, 2.0]);
        assert!(!table.is_live(b), "reserved is not live");
        table.commit(b, Arc::from("b"), 2);
        assert_eq!(table.sq_norms(), &[1.0, 4.0]);
        table.release(a);
        assert!(!table.is_live(a) && table.slot_of("a").is_none());
        assert_eq!(table.next_slots(2), vec![a, 2]);
        let c = table.reserve(&[3.0, 0.0]);
        assert_eq!(c, a);
        assert_eq!(table.row(c), &[3.0, 0.0]);
        assert_eq!(table.sq_norms()[c as usize], 9.0);
        table.commit(c, Arc::from("c"), 3);
        assert_eq!(table.live_count(), 2);
        let ids: Vec<&str> = table.live_entries().map(|(id, _, _)| &**id).collect();
        assert_eq!(ids, ["c", "b"]);
    }

    #[test]
    fn releasing_a_replaced_slot_keeps_the_new_mapping() {
        let mut table = DocTable::new(1);
        let old = table.reserve(&[1.0]);
        table.commit(old, Arc::from("x"), 1);
        let new = table.reserve(&[2.0]);
        table.commit(new, Arc::from("x"), 2);
        table.release(old);
        assert_eq!(table.slot_of("x"), Some(new));
        assert_eq!(table.seq(new), 2);
        assert_eq!(table.live_count(), 1);
        assert_eq!(table.dead_count(), 1);
    }
}
