//! Visual memory (Geirhos et al. 2024, "Towards flexible perception with
//! visual memory", `SPECS.md` §3): an image is classified by the labels of
//! its nearest stored embeddings, so knowledge is added or unlearned by
//! editing the store, never by training.
//!
//! This crate holds the compute, free of HTTP and of any image model:
//! [`memory::VisualMemory`] stores L2-normalised embeddings with their
//! labels, searches them exactly, adds and unlearns samples or whole
//! classes in place, and prunes (hard or soft); [`vote`] turns the k
//! nearest neighbours into class scores with the paper's four
//! aggregations, and keeps every decision explainable (each neighbour's
//! weight is returned with the answer); [`durable::DurableMemory`] logs
//! every edit to a checksummed, fsynced write-ahead log ([`log`]) before
//! applying it, so an acknowledged edit survives a crash and a removal is
//! never undone by a restart.

pub mod durable;
pub mod log;
pub mod memory;
pub mod vote;

pub use durable::DurableMemory;
pub use memory::{Hit, Item, Prune, PruneReport, VisualMemory};
pub use vote::{aggregate, Aggregation, Decision, DistanceRange, Neighbor, Vote};

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
}

pub type Result<T> = std::result::Result<T, VisualError>;
