//! Slot-major vector storage, the part of a vector index's table that does
//! not depend on how the index hands out slots.
//!
//! A *slot* is a row number: slot `s` holds one vector in a contiguous
//! `slots × dim` matrix, the id whose version it is while that version is
//! live, and the seq of the write that stored it. When an index drops a
//! version it clears the slot's owner and keeps the row; whether the slot is
//! later reused (the Hypencoder index) or kept as a tombstone until a
//! rebuild (the HNSW index) is the index's own business, as is the map from
//! ids to their live slot.

use std::sync::Arc;

use crate::Seq;

/// Vectors, owners and seqs of every slot, live or not.
#[derive(Debug, Clone)]
pub struct SlotVectors {
    dim: usize,
    /// Slot `s` occupies `vectors[s * dim..(s + 1) * dim]`.
    vectors: Vec<f32>,
    /// The id a slot holds while it is live; `None` otherwise.
    owners: Vec<Option<Arc<str>>>,
    seqs: Vec<Seq>,
}

impl SlotVectors {
    pub fn with_capacity(dim: usize, slots: usize) -> Self {
        Self {
            dim,
            vectors: Vec::with_capacity(slots * dim),
            owners: Vec::with_capacity(slots),
            seqs: Vec::with_capacity(slots),
        }
    }

    #[inline]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of slots, live or not: the row count of [`Self::vectors`].
    #[inline]
    pub fn slots(&self) -> usize {
        self.owners.len()
    }

    /// True for a slot with an owner; false for any other, and for slots
    /// past the end.
    #[inline]
    pub fn is_live(&self, slot: usize) -> bool {
        matches!(self.owners.get(slot), Some(Some(_)))
    }

    /// The id held by a live slot.
    #[inline]
    pub fn owner(&self, slot: usize) -> Option<&Arc<str>> {
        self.owners.get(slot).and_then(Option::as_ref)
    }

    #[inline]
    pub fn seq(&self, slot: usize) -> Seq {
        self.seqs[slot]
    }

    #[inline]
    pub fn set_seq(&mut self, slot: usize, seq: Seq) {
        self.seqs[slot] = seq;
    }

    /// The vector of one slot, live or not.
    #[inline]
    pub fn vector(&self, slot: usize) -> &[f32] {
        let start = slot * self.dim;
        &self.vectors[start..start + self.dim]
    }

    /// The whole `slots × dim` matrix, rows of dead slots included.
    #[inline]
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    /// Appends a slot and returns it (always the old [`Self::slots`]).
    pub fn push(&mut self, vector: &[f32], owner: Option<Arc<str>>, seq: Seq) -> usize {
        debug_assert_eq!(vector.len(), self.dim);
        let slot = self.owners.len();
        self.vectors.extend_from_slice(vector);
        self.owners.push(owner);
        self.seqs.push(seq);
        slot
    }

    /// Replaces the vector of an existing slot.
    pub fn set_vector(&mut self, slot: usize, vector: &[f32]) {
        let start = slot * self.dim;
        self.vectors[start..start + self.dim].copy_from_slice(vector);
    }

    /// Gives `slot` a new owner (`None`: no longer live) and returns the
    /// previous one.
    pub fn set_owner(&mut self, slot: usize, owner: Option<Arc<str>>) -> Option<Arc<str>> {
        std::mem::replace(&mut self.owners[slot], owner)
    }

    /// Live slots in slot order.
    #[inline]
    pub fn live_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.owners
            .iter()
            .enumerate()
            .filter(|(_, owner)| owner.is_some())
            .map(|(slot, _)| slot)
    }

    /// `(id, seq, vector)` of every live slot, in slot order.
    pub fn live_entries(&self) -> impl Iterator<Item = (&Arc<str>, Seq, &[f32])> + '_ {
        self.owners.iter().enumerate().filter_map(|(slot, owner)| {
            owner
                .as_ref()
                .map(|id| (id, self.seqs[slot], self.vector(slot)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_keep_rows_and_report_only_owned_ones_live() {
        let mut store = SlotVectors::with_capacity(2, 0);
        assert_eq!(store.push(&[1.0, 0.0], Some(Arc::from("a")), 1), 0);
        assert_eq!(store.push(&[0.0, 1.0], None, 0), 1);
        assert_eq!(store.push(&[2.0, 2.0], Some(Arc::from("c")), 3), 2);
        assert_eq!(store.slots(), 3);
        assert!(store.is_live(0) && !store.is_live(1) && !store.is_live(3));
        assert_eq!(store.live_slots().collect::<Vec<_>>(), [0, 2]);

        let old = store.set_owner(0, None);
        assert_eq!(old.as_deref(), Some("a"));
        assert_eq!(store.vector(0), &[1.0, 0.0], "the row stays");
        store.set_vector(1, &[5.0, 6.0]);
        store.set_owner(1, Some(Arc::from("b")));
        store.set_seq(1, 7);
        let entries: Vec<(&str, Seq, &[f32])> = store
            .live_entries()
            .map(|(id, seq, v)| (&**id, seq, v))
            .collect();
        assert_eq!(
            entries,
            [("b", 7, &[5.0, 6.0][..]), ("c", 3, &[2.0, 2.0][..])]
        );
        assert_eq!(store.vectors(), &[1.0, 0.0, 5.0, 6.0, 2.0, 2.0]);
        assert_eq!(store.owner(2).map(|id| &**id), Some("c"));
        assert_eq!(store.seq(2), 3);
    }
}
