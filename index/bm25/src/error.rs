//! The crate's error type.
//!
//! tantivy's errors are flattened to messages here, at the boundary, so that
//! no tantivy type appears in this crate's public API (not even in a `From`
//! impl): callers match on what went wrong, not on which library said so.

use std::fmt::Display;
use std::path::PathBuf;

use mnemos_index_core::IndexError;

/// Everything that can go wrong in the BM25 index.
#[derive(Debug, thiserror::Error)]
pub enum Bm25Error {
    /// `k1` or `b` out of range; see [`crate::Bm25Params::validate`].
    #[error("invalid BM25 parameters: {0}")]
    InvalidParams(String),

    /// The index directory could not be created or read.
    #[error("index directory {}: {source}", path.display())]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Another writer (in this or another process) holds the directory's
    /// lock; tantivy allows one writer per index.
    #[error("index directory {} is locked by another writer", path.display())]
    Locked { path: PathBuf },

    /// An id longer than tantivy can index as one term (~64 KiB); it could
    /// never be replaced or removed, so the whole batch is refused.
    #[error("document id of {len} bytes exceeds the {max}-byte limit of an index term")]
    IdTooLong { len: usize, max: usize },

    /// The directory holds an index this crate cannot read: another schema,
    /// a missing column, or damaged files.
    #[error("index is corrupt or incompatible: {0}")]
    Corrupt(String),

    /// tantivy failed while doing `context`.
    #[error("tantivy failed while {context}: {message}")]
    Backend {
        context: &'static str,
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Bm25Error> = std::result::Result<T, E>;

impl From<Bm25Error> for IndexError {
    fn from(err: Bm25Error) -> Self {
        match err {
            Bm25Error::InvalidParams(_) | Bm25Error::IdTooLong { .. } => {
                IndexError::InvalidArgument(err.to_string())
            }
            Bm25Error::Directory { source, .. } => IndexError::Io(source),
            Bm25Error::Corrupt(message) => IndexError::Corrupt(message),
            Bm25Error::Locked { .. } | Bm25Error::Backend { .. } => IndexError::Backend {
                backend: "bm25",
                message: err.to_string(),
            },
        }
    }
}

/// Attaches what we were doing to a library error and turns it into a
/// [`Bm25Error::Backend`]; crate-private so tantivy errors stay inside.
pub(crate) trait Context<T> {
    fn context(self, context: &'static str) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn context(self, context: &'static str) -> Result<T> {
        self.map_err(|err| Bm25Error::Backend {
            context,
            message: err.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_the_matching_index_error() {
        let e: IndexError = Bm25Error::InvalidParams("b must be ...".into()).into();
        assert!(matches!(e, IndexError::InvalidArgument(_)));
        let e: IndexError = Bm25Error::Corrupt("no id column".into()).into();
        assert!(matches!(e, IndexError::Corrupt(_)));
        let e: IndexError = Err::<(), _>("disk full")
            .context("committing")
            .unwrap_err()
            .into();
        match e {
            IndexError::Backend { backend, message } => {
                assert_eq!(backend, "bm25");
                assert_eq!(message, "tantivy failed while committing: disk full");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
