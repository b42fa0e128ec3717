//! The vocabulary every mnemos index shares: documents, hits, and the
//! read/write traits an index implements.
//!
//! Indexes are *derived* state. The document store (`mnemos-store`) is the
//! source of truth; every index can be rebuilt from it. That is why the write
//! trait promises visibility but not durability: an index that loses its last
//! few writes in a crash is reconciled against the store on the next start
//! (see [`IndexWrite::indexed_versions`]).
//!
//! The vector indexes also share their building blocks from here: snapshot
//! files ([`codec`]), slot-major vector storage ([`slots`]) and vector
//! arithmetic and checks ([`vector`]).

pub mod codec;
pub mod slots;
pub mod vector;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// A document as clients send it and as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// The log sequence number of the write that produced a document version.
/// Indexes remember it per id so a restart can tell stale entries from fresh.
pub type Seq = u64;

/// One scored result of one index. Higher scores are better in every index.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub score: f32,
}

/// Errors an index can raise. Each index crate wraps its library's errors in
/// [`IndexError::Backend`] so tantivy/hnsw_rs types never leak upward.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("index is corrupt: {0}")]
    Corrupt(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{backend} error: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
}

pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// Read side of an index. `Q` is what a query is for this index: text for
/// BM25, a vector for HNSW.
pub trait IndexRead<Q: ?Sized> {
    /// The best `k` live entries for `query`, best first. Never returns an id
    /// removed by a [`IndexWrite::remove`] that has returned, nor a version
    /// superseded by a later [`IndexWrite::upsert`].
    fn search(&self, query: &Q, k: usize) -> Result<Vec<Hit>>;

    /// Number of live entries.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Write side of an index. `I` is what an entry is: a [`Document`] for BM25,
/// a vector for HNSW.
pub trait IndexWrite<I: ?Sized> {
    /// Insert or replace entries. Visible to `search` when this returns.
    fn upsert(&self, entries: &[(&str, Seq, &I)]) -> Result<()>;

    /// Remove entries by id; unknown ids are ignored. Invisible to `search`
    /// when this returns.
    fn remove(&self, ids: &[&str]) -> Result<()>;

    /// Persist what has been written so far to the index's own files. After
    /// a crash the index reopens at its last `persist` (or earlier); the
    /// engine reconciles the difference against the store.
    fn persist(&self) -> Result<()>;

    /// id → seq of every live entry, for reconciliation at start-up.
    fn indexed_versions(&self) -> Result<HashMap<String, Seq>>;
}
