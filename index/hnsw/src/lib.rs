//! Vector search for mnemos: an HNSW graph (hnsw_rs) made updatable.
//!
//! [`VectorIndex`] implements [`IndexRead<[f32]>`](mnemos_index_core::IndexRead)
//! and [`IndexWrite<[f32]>`](mnemos_index_core::IndexWrite) over unit
//! vectors scored by dot product (cosine similarity; higher is better).
//!
//! # Design
//!
//! hnsw_rs builds good graphs fast but has no delete or update, and a few
//! sharp edges (see `PITFALLS.md`). This crate wraps it so none of that
//! leaks out:
//!
//! - **Deletes and updates.** Each written vector gets a fresh graph point
//!   (a *slot*); our own table maps ids to their one live slot. Updating or
//!   removing an id only marks its old slot dead. Dead points still route
//!   graph walks; a search asks the graph for enough extra results to cover
//!   them and drops them, then, if that came up short, walks again with
//!   hnsw_rs's in-walk filter (`search_filter`), and finally scans exactly,
//!   so `k` live results come back whenever `k` exist and a dead or
//!   superseded point never does.
//! - **Compaction.** When dead points pass a configured fraction, a
//!   background thread rebuilds the graph from live vectors while searches
//!   use the old one; writes made during the rebuild are replayed onto the
//!   new graph before the swap (see the `compaction` module).
//! - **Exact search** over the stored vectors serves small collections
//!   (below [`HnswParams::exact_below`]) and is the recall reference.
//! - **Persistence** stores vectors, ids and seqs in one checksummed file
//!   written atomically. On open the file is read and verified, and the
//!   graph is rebuilt from it in the background while searches are served
//!   by exact scan. We do not use hnsw_rs's own dump because its loader
//!   exits the process on a truncated file.
//! - **Safety.** Parameters are validated before hnsw_rs sees them (it exits
//!   the process for `m > 256`); inputs are normalised and checked finite;
//!   the distance is clamped so near-duplicates cannot trip hnsw_rs's
//!   assertions. hnsw_rs prints to stdout only in debug-dump and
//!   level-scale functions, which are never called.
//!
//! # Memory
//!
//! Each live or dead vector is held twice: once in hnsw_rs's graph and once
//! in our table (for exact search, persistence and rebuilds). At 384
//! dimensions that is about 3 KiB per point plus graph links.
//!
//! # Build profile
//!
//! hnsw_rs's graph code is generic over the distance, so it is compiled
//! into this crate at this crate's opt-level; `[profile.dev.package."*"]`
//! does not reach it. Unoptimised, graph builds run about 20× slower (a
//! 20k-point test graph: ~10 minutes instead of ~30 s). Give this crate
//! `opt-level = 3` in the dev profile of the workspace; until then the
//! 20k recall test skips itself (see `build.rs`).

mod compaction;
mod distance;
mod graph;
mod index;
mod params;
mod persist;
mod points;
mod search;

pub use distance::normalised;
pub use index::{IndexStats, VectorIndex};
pub use mnemos_index_core::vector::{dot, MAX_DIM};
pub use params::HnswParams;

#[cfg(test)]
mod tests {
    use super::VectorIndex;

    #[test]
    fn index_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<VectorIndex>();
    }
}
