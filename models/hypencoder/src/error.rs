//! The crate's one error type.

use std::path::PathBuf;

/// Errors from building, running, training, saving or loading a Hypencoder.
#[derive(Debug, thiserror::Error)]
pub enum HypencoderError {
    /// The configuration is out of range; the message names the field.
    #[error("invalid hypencoder configuration: {0}")]
    Config(String),

    /// The caller passed tensors of the wrong shape, dtype or content, e.g.
    /// document vectors of another width than the model's.
    #[error("invalid hypencoder input: {0}")]
    InvalidInput(String),

    /// A file a saved model needs is absent.
    #[error("hypencoder file {} not found ({what})", path.display())]
    MissingFile {
        /// The path that was looked for.
        path: PathBuf,
        /// What the file is for.
        what: &'static str,
    },

    /// A file exists but could not be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A saved model's files are malformed or do not fit each other, e.g.
    /// a tensor is missing or its shape disagrees with `config.json`.
    #[error("bad hypencoder model in {}: {message}", path.display())]
    Model {
        /// The offending file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// The tensor runtime failed.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Result alias for this crate.
pub type Result<T, E = HypencoderError> = std::result::Result<T, E>;
