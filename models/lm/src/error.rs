//! The crate's one error type.

use std::path::PathBuf;

/// Errors from building, running, training, saving or loading a language
/// model or its tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    /// The configuration is out of range; the message names the field.
    #[error("invalid language model configuration: {0}")]
    Config(String),

    /// The caller passed something the model cannot use: token ids out of
    /// the vocabulary, a sequence longer than the context, a bad sampling
    /// option, tensors of the wrong shape.
    #[error("invalid language model input: {0}")]
    InvalidInput(String),

    /// A file a saved model or tokenizer needs is absent.
    #[error("language model file {} not found ({what})", path.display())]
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
    #[error("bad language model in {}: {message}", path.display())]
    Model {
        /// The offending file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// The tokenizer failed to train, load, save, encode or decode.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// The tensor runtime failed.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),

    /// Paged value tables: the memory tiers could not be set up or read.
    #[error("memory tiers: {0}")]
    Unavailable(String),
}

/// Result alias for this crate.
pub type Result<T, E = LmError> = std::result::Result<T, E>;
