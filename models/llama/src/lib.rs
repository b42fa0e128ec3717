//! A pretrained Llama-architecture language model from a GGUF file —
//! SmolLM2-135M-Instruct in mnemos — run on candle with its weights kept
//! quantized, and with room for **appended feed-forward units**: the form
//! the hierarchical memory blocks of SPECS §5 take at inference.
//!
//! - [`Llama::load`]: weights, shape ([`LlamaConfig`]) and tokenizer, all
//!   from the one GGUF file (its metadata carries the BPE vocabulary and
//!   merges; [`tokenizer::from_gguf`] rebuilds the `tokenizers` pipeline).
//! - [`Llama::forward_hidden`] / [`Llama::logits`]: the forward pass with
//!   a KV cache ([`LlamaCache`]) and optional [`FfnUnits`].
//! - [`score`] and [`generate`]: what the LM routes serve.
//!
//! - [`train_units`]: trains appended units with the anchor frozen.
//!
//! Inference uses candle's fused RMSNorm, softmax and rotary kernels, which
//! have no backward pass (PITFALLS); training runs the same blocks in plain
//! ops, over f32 weights (quantized products have no backward either).

mod config;
mod error;
mod model;
mod ops;
mod run;
pub mod tokenizer;
mod train;
mod units;

pub use config::LlamaConfig;
pub use error::{LlamaError, Result};
pub use model::{find_gguf, Llama, LlamaCache, WeightFormat, MAX_POSITIONS};
pub use run::{chat_prompt, generate, generate_with, score, Score};
pub use tokenizer::SpecialTokens;
pub use train::{train_units, TrainText, UnitTraining, UnitTrainingReport};
pub use units::{FfnUnits, UnitWeights};
