//! Model traits shared by every mnemos model crate, and their one error type.
//!
//! Model crates (`mnemos-text`, later vision and language models) implement
//! these traits; `services/engine` consumes them without knowing which
//! architecture or runtime is behind them. Keeping the traits here, apart
//! from candle, lets the engine and its tests depend on them without
//! compiling any tensor library.
//!
//! Inference is synchronous on purpose: it is CPU-bound work, so the engine
//! runs it on a dedicated thread pool at one seam instead of inside async
//! tasks (see `STYLE.md`, "Compute is synchronous").

pub mod hub;
pub mod rng;
pub mod simd;

use std::path::PathBuf;

/// Errors from loading or running a model.
///
/// Runtime errors from the tensor library and the tokenizer are carried as
/// strings so that this crate, and everything matching on it, stays free of
/// those dependencies.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file the model needs is absent, usually because the weights were
    /// never installed.
    #[error(
        "model file {} not found ({what}); run scripts/install-models.sh, \
         or point the model directory at a Hugging Face hub-layout folder",
        path.display()
    )]
    MissingFile {
        /// The path that was looked for.
        path: PathBuf,
        /// What the file is for, e.g. "tokenizer".
        what: &'static str,
    },

    /// A file exists but could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A configuration file is malformed, or describes something this
    /// implementation does not support.
    #[error("bad model configuration in {}: {message}", path.display())]
    Config {
        /// The configuration file, or the model directory when the problem
        /// spans several files.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// The caller asked for something the model cannot do, e.g. an option
    /// out of range.
    #[error("invalid model input: {0}")]
    InvalidInput(String),

    /// The tokenizer failed to load or to encode input.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// The tensor runtime failed while loading weights or running a forward
    /// pass.
    #[error("model runtime error: {0}")]
    Runtime(String),
}

/// Result alias for model operations.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Turns text into fixed-size dense vectors.
///
/// Implementations hold read-only weights, so one instance can be shared
/// across worker threads (`Send + Sync`); calls may run concurrently.
pub trait Encoder: Send + Sync {
    /// Length of every vector [`Encoder::embed`] returns.
    fn dim(&self) -> usize;

    /// Number of tokens, special tokens included, that an input is cut to
    /// before encoding; text past this limit does not affect its vector.
    fn max_tokens(&self) -> usize;

    /// Encodes each text into one vector of length [`Encoder::dim`], in
    /// input order.
    ///
    /// An empty slice returns an empty vector. Any string, including the
    /// empty one, is a valid input. Whether vectors are unit-length is a
    /// property of the model; implementations document it.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_message_says_how_to_fix_it() {
        let err = ModelError::MissingFile {
            path: PathBuf::from("/nowhere/model.safetensors"),
            what: "weights",
        };
        let message = err.to_string();
        assert!(message.contains("/nowhere/model.safetensors"), "{message}");
        assert!(message.contains("scripts/install-models.sh"), "{message}");
    }

    #[test]
    fn encoder_is_object_safe() {
        struct Constant;
        impl Encoder for Constant {
            fn dim(&self) -> usize {
                2
            }
            fn max_tokens(&self) -> usize {
                8
            }
            fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
                Ok(texts.iter().map(|_| vec![1.0, 0.0]).collect())
            }
        }
        let encoder: Box<dyn Encoder> = Box::new(Constant);
        let vectors = encoder.embed(&["a", "b"]).expect("constant encoder");
        assert_eq!(vectors.len(), 2);
        assert!(vectors.iter().all(|v| v.len() == encoder.dim()));
    }
}
