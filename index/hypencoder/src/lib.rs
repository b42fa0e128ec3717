//! Hypencoder search for mnemos (SPECS §2): document vectors scored by each
//! query's q-net, exhaustively or by the paper's graph search.
//!
//! A Hypencoder query is a small neural network, not a vector, so no
//! inner-product index (HNSW, IVF) can serve it: the best documents under
//! a q-net need not be near any single query point. The paper's answer,
//! implemented here, is a k-nearest-neighbour graph over the *document*
//! vectors and a best-first walk on it guided by the q-net's scores.
//!
//! # Design
//!
//! - **Documents** ([`HypencoderIndex`]) live in one slot-major `f32`
//!   matrix with an id and seq per slot. Vectors are stored as given (the
//!   engine passes the same mean-pooled, L2-normalised MiniLM vectors the
//!   dense backend indexes). A removal frees its slot for later inserts, and
//!   an upsert of an existing id stores the new vector in a new slot and
//!   frees the old one in the same locked step, so a search sees exactly
//!   one version of every id.
//! - **Exhaustive search** ([`HypencoderIndex::search_exhaustive`]) scores
//!   every live row with [`mnemos_hypencoder::QNets::score_slice`]: blocked
//!   matrix products, never a per-document loop.
//! - **The neighbour graph** (SPECS §2: 100 nearest neighbours by L2 per
//!   document, [`GraphParams::neighbors`]) is kept *exact under inserts*:
//!   a new document's list comes from one pass of blocked matrix products
//!   over all live rows, and the same products offer the new document to
//!   every existing list whose farthest entry is farther. Removals drop the
//!   document from every list and refill those lists from its own list,
//!   which is cheap and close but not exact;
//!   [`HypencoderIndex::rebuild_graph`] restores exactness. A full build
//!   is the same linking, chunk after chunk, so each pair's product is
//!   computed once.
//! - **Graph search** ([`HypencoderIndex::search_graph`], knobs in
//!   [`GraphSearch`]): `C` random live entry points, then rounds that score
//!   all candidates in one batch
//!   ([`mnemos_hypencoder::QNets::score_gathered`]) and expand the best
//!   `nCand`'s unvisited neighbours, for at most `maxIter` rounds, stopping
//!   early when a round improves nothing. Removed documents are never
//!   returned: lists only hold live slots and every step checks liveness
//!   under the same read lock.
//! - **Persistence** is a snapshot (vectors, ids, seqs and lists) in one
//!   checksummed file written atomically; the engine reconciles it against
//!   the document store at start-up through
//!   [`mnemos_index_core::IndexWrite::indexed_versions`].
//!
//! # Cost
//!
//! Memory per document: `4·dim` bytes of vector plus `8·neighbors` of
//! list, 1.5 KiB + 0.8 KiB at 384 and 100 (~240 MB at 100k). Linking is
//! `2·dim` flops per pair of documents, so a full build of `N` documents is
//! `N²·dim` flops. Measured with `examples/graph_scale.rs` on a 2-core AMD
//! EPYC shared with another job (so upper bounds): 100k × 384 with 100
//! neighbours built in 72–89 s; one new document linked in 8–15 ms, one
//! removal 8–16 ms (the list scan); the snapshot written in 0.26 s and read
//! in 0.3–0.4 s. Query figures are on [`GraphSearch`].
//!
//! # Build profile
//!
//! The graph build's selection loop and the refill arithmetic are compiled
//! at this crate's opt-level; unoptimised they are several times slower,
//! so the crate's tests keep collections small.

mod distance;
mod docs;
mod graph;
mod index;
mod knn;
mod params;
mod persist;
mod search;
mod topk;

pub use index::{HypencoderIndex, IndexStats, SearchOutcome};
pub use mnemos_index_core::vector::MAX_DIM;
pub use params::{GraphParams, GraphSearch, MAX_NEIGHBORS};

#[cfg(test)]
mod tests {
    use super::HypencoderIndex;

    #[test]
    fn index_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<HypencoderIndex>();
    }
}
