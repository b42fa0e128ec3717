//! Visual memory (Geirhos et al. 2024, "Towards flexible perception with
//! visual memory", `SPECS.md` §3): an image is classified by the labels of
//! its nearest stored embeddings, so knowledge is added or unlearned by
//! editing the store, never by training.
//!
//! This crate holds the compute, free of HTTP and of any image model:
//! [`memory::VisualMemory`] stores L2-normalised embeddings with their
//! labels, searches them (exactly while the memory is small, through an
//! HNSW graph above [`VisualParams::ann_above`] items), adds and unlearns
//! samples or whole classes in place, and prunes (hard or soft); [`vote`]
//! turns the k nearest neighbours into class scores with the paper's four
//! aggregations, and keeps every decision explainable (each neighbour's
//! weight is returned with the answer); [`durable::DurableMemory`] logs
//! every edit to a checksummed, fsynced write-ahead log ([`log`]) before
//! applying it, so an acknowledged edit survives a crash and a removal is
//! never undone by a restart.
//!
//! Reads take `&self` and both memory types are `Send + Sync`, so a server
//! can keep one behind a `RwLock` and classify on many threads at once.

mod codec;
pub mod compact;
pub mod deferred;
pub mod durable;
pub mod log;
pub mod memory;
mod params;
mod prune;
mod search;
mod vectors;
pub mod vote;

pub use compact::{compact_shared, Compaction};
pub use deferred::{BuiltGraph, Edits, GraphJob};
pub use durable::{DurableMemory, NewItem};
pub use log::Retired;
pub use memory::{Hit, Item, Prune, PruneReport, VisualMemory, VisualStats};
pub use params::VisualParams;
pub use vote::{aggregate, Aggregation, Decision, DistanceRange, Neighbor, Vote};

use mnemos_index_core::IndexError;

/// Errors of the visual memory.
#[derive(Debug, thiserror::Error)]
pub enum VisualError {
    /// A request parameter is out of range; the message names it.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Reading or writing the memory's files failed; nothing was applied.
    #[error("i/o error: {0}")]
    Io(String),
    /// A file fails its checksum or format in a way a crash cannot
    /// explain; the memory refuses to open rather than lose edits.
    #[error("corrupt visual memory: {0}")]
    Corrupt(String),
    /// Another process holds the memory's directory.
    #[error("{0}")]
    Locked(String),
    /// The HNSW graph failed in a way that is not the caller's input.
    #[error("vector index: {0}")]
    Index(String),
}

/// The graph index's errors in this crate's terms: bad arguments stay the
/// caller's fault, the rest keep their meaning.
impl From<IndexError> for VisualError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::InvalidArgument(m) => VisualError::InvalidInput(m),
            IndexError::Corrupt(m) => VisualError::Corrupt(m),
            IndexError::Io(e) => VisualError::Io(e.to_string()),
            e @ IndexError::Backend { .. } => VisualError::Index(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, VisualError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<VisualMemory>();
        assert_send_sync::<DurableMemory>();
    }
}
