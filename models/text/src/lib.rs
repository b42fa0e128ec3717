//! Text encoders for mnemos: sentence-transformers/all-MiniLM-L6-v2 and
//! other BERT sentence encoders, on candle.
//!
//! The default model, all-MiniLM-L6-v2, is a 6-layer, 384-wide MiniLM
//! (Wang et al. 2020, "MiniLM: Deep Self-Attention Distillation for
//! Task-Agnostic Compression of Pre-Trained Transformers",
//! arXiv:2002.10957) fine-tuned by sentence-transformers on ~1B sentence
//! pairs with a contrastive objective, and used as in Sentence-BERT
//! (Reimers & Gurevych 2019, arXiv:1908.10084): BERT token vectors
//! (Devlin et al. 2019, arXiv:1810.04805), mean-pooled, L2-normalised.
//! The BERT forward pass is our own, on candle's tensors and kernels,
//! tuned for one CPU thread per inference worker (see `src/bert.rs`).
//!
//! Threads: candle sizes its matrix-product and element-wise thread pools
//! from `RAYON_NUM_THREADS` (or all physical cores). Set it to 1 before
//! the first call when running one encoder per worker thread; two threads
//! inside one product measured slower than one (`PITFALLS.md`).
//!
//! [`MiniLmEncoder::token_states`] returns the final-layer token states and
//! attention mask instead of the pooled vector, for models that read a
//! query token by token (the Hypencoder's hyperheads).
//!
//! [`MiniLmEncoder::load`] accepts any directory in the Hugging Face hub
//! layout (`config.json`, `model.safetensors`, `tokenizer.json`, optional
//! `modules.json` and `1_Pooling/config.json`), so compatible BERT
//! checkpoints work too. `scripts/install-models.sh` puts all-MiniLM-L6-v2
//! in `models/weights/all-MiniLM-L6-v2`.
//!
//! ```no_run
//! use mnemos_models_core::Encoder;
//! use mnemos_text::{EncoderOptions, MiniLmEncoder};
//!
//! let dir = std::path::Path::new("models/weights/all-MiniLM-L6-v2");
//! let encoder = MiniLmEncoder::load(dir, EncoderOptions::default())?;
//! let vectors = encoder.embed(&["a sentence", "another one"])?;
//! assert_eq!(vectors[0].len(), encoder.dim());
//! # Ok::<(), mnemos_models_core::ModelError>(())
//! ```

mod bert;
mod fastmath;
mod gelu;
mod layout;
mod minilm;
mod norm;
mod packed;
mod pooling;
mod ragged;
mod softmax;
mod tokenize;

pub use minilm::{EncoderOptions, MiniLmEncoder, TokenStates};
pub use mnemos_models_core::{Encoder, ModelError, Result};
pub use pooling::Pooling;

/// candle's errors reach callers as [`ModelError::Runtime`] text, so that
/// `mnemos-models-core` does not depend on candle.
fn runtime_error(err: candle_core::Error) -> ModelError {
    ModelError::Runtime(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<MiniLmEncoder>();
    }
}
