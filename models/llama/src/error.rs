//! The crate's one error type.

use std::path::PathBuf;

/// Errors from loading or running a Llama-architecture model.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    /// A file the model needs is absent or unreadable (the wording all
    /// model crates share).
    #[error(transparent)]
    File(#[from] mnemos_models_core::ModelError),

    /// The weights file is malformed or describes a model this crate does
    /// not run (another architecture, missing metadata, a tensor of the
    /// wrong shape).
    #[error("bad model file {}: {message}", path.display())]
    Model {
        /// The offending file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// The caller passed something the model cannot use: an empty or
    /// over-long sequence, token ids outside the vocabulary, memory units
    /// of the wrong shape, bad sampling options.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The tokenizer failed to build, encode or decode.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// The tensor runtime failed.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl From<mnemos_lm::LmError> for LlamaError {
    /// Sampling and tokenizer helpers come from `mnemos-lm`; their errors
    /// keep their meaning here.
    fn from(err: mnemos_lm::LmError) -> Self {
        match err {
            mnemos_lm::LmError::InvalidInput(m) => LlamaError::InvalidInput(m),
            mnemos_lm::LmError::Tokenizer(m) => LlamaError::Tokenizer(m),
            mnemos_lm::LmError::Tensor(e) => LlamaError::Tensor(e),
            other => LlamaError::InvalidInput(other.to_string()),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = LlamaError> = std::result::Result<T, E>;
