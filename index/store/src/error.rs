//! The store's one error type.
//!
//! Every I/O error carries the path it happened on: when a node refuses to
//! start, "which file" is the first thing an operator needs.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The files hold something the store did not write, or no longer
    /// agree with each other. The store refuses to open rather than guess,
    /// because guessing could drop acknowledged writes.
    #[error("{path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    /// A document id the store will not accept; the message says why.
    #[error("invalid document id: {0}")]
    InvalidId(String),

    /// One batch encodes to more than a WAL record can frame (4 GiB).
    #[error("batch encodes to {bytes} bytes, more than one WAL record can hold")]
    RecordTooLarge { bytes: usize },

    /// Encoding a WAL record failed.
    #[error("cannot encode WAL record: {0}")]
    Encode(String),

    /// Writing or reading a snapshot failed inside the Arrow library.
    #[error("snapshot (Arrow IPC) error: {0}")]
    Arrow(String),

    /// Another `Store` (in this or another process) has the directory open.
    #[error("{0} is already opened by another store")]
    Locked(PathBuf),

    /// An earlier write failed in a way that leaves the log's on-disk state
    /// unknown (for example a failed fsync). Further writes are refused until
    /// the store is reopened, which re-reads the log from disk.
    #[error("the store refused the write after an earlier I/O failure; reopen it")]
    Poisoned,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches the path to an [`io::Error`].
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
