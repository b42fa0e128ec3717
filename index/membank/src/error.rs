//! The crate's one error type.

use std::path::{Path, PathBuf};

use mnemos_index_core::IndexError;

use crate::NodeId;

/// Errors from building, querying or storing a memory bank.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    /// The caller passed something the bank cannot use: bad tree
    /// parameters, a vector of the wrong length or with a non-finite
    /// component, units of the wrong shape.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A document id given to the tree twice.
    #[error("document {0:?} is already in the tree")]
    DuplicateDocument(String),

    /// A node id that is not in the tree, or the root where a block is
    /// needed (the root owns no block).
    #[error("no memory block node {0} in the tree")]
    UnknownNode(NodeId),

    /// The manifest says a node has an enabled block but its file is gone:
    /// serving without it would silently drop that node's knowledge.
    #[error("memory block of node {node} is missing: {}", path.display())]
    MissingBlock {
        /// The node whose block is missing.
        node: NodeId,
        /// Where its file should be.
        path: PathBuf,
    },

    /// A bank file is damaged, truncated, or not one this crate wrote.
    #[error("corrupt memory bank file {}: {message}", path.display())]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// Reading or writing a bank file failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        source: std::io::Error,
    },

    /// The tensor runtime failed.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),

    /// A block could not be read through the memory tiers (fetch failure,
    /// checksum, timeout) or the tiers could not be set up.
    #[error("memory tiers: {0}")]
    Tier(#[from] mnemos_tiers::TierError),

    /// Merging blocks into one set of units failed (`mnemos-llama`).
    #[error("memory units: {0}")]
    Units(#[from] mnemos_llama::LlamaError),
}

impl BankError {
    pub(crate) fn corrupt(path: &Path, message: impl std::fmt::Display) -> Self {
        BankError::Corrupt {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| BankError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// An index-core codec error about `path`, keeping its meaning.
    pub(crate) fn from_codec(path: &Path, err: IndexError) -> Self {
        match err {
            IndexError::Io(source) => BankError::Io {
                path: path.to_path_buf(),
                source,
            },
            IndexError::Corrupt(m) => BankError::corrupt(path, m),
            IndexError::InvalidArgument(m) => BankError::InvalidInput(m),
            other => BankError::corrupt(path, other),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = BankError> = std::result::Result<T, E>;
