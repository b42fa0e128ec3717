//! A small decoder-only language model on candle, with product-key memory
//! layers (Lample et al. 2019) and the Memory+ variant of "Memory Layers
//! at Scale" (Berges et al. 2024); SPECS §4.
//!
//! - [`Lm`]: token embeddings, pre-norm blocks of causal self-attention
//!   with rotary positions and a SwiGLU network — or, in the blocks that
//!   [`MemoryConfig::layers`] names, a [`MemoryLayer`] — then RMSNorm and
//!   an output projection, tied to the embeddings by default
//!   ([`LmConfig::tie_embeddings`] says why). `save`/`load` use a
//!   hub-style directory (`config.json`, `model.safetensors`,
//!   `tokenizer.json`).
//! - [`MemoryLayer`]: `N = n²` values of which each token reads `H·k`,
//!   found with `O(√N)` key work; usable on its own (benches).
//! - [`generate()`]: KV-cached decoding, greedy or temperature + top-p
//!   sampling with a seed.
//! - [`LmTokenizer`]: byte-level BPE trained with `tokenizers`.
//! - [`train`]: cross-entropy, AdamW with the memory values in their own
//!   group at a higher learning rate, validation perplexity.
//!
//! Training uses only ops that candle can differentiate: its fused
//! softmax, RMSNorm and rotary kernels have no backward pass, so they run
//! at inference only (PITFALLS, "candle training").
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use mnemos_lm::{Lm, LmConfig, MemoryConfig};
//!
//! let config = LmConfig {
//!     vocab_size: 300, dim: 32, layers: 2, heads: 2, ffn_hidden: 64, max_seq_len: 16,
//!     memory: Some(MemoryConfig { layers: vec![1], n_keys: 16, k: 4, heads: 2, key_dim: 16,
//!                                 ..MemoryConfig::default() }),
//!     ..LmConfig::default()
//! };
//! let model = Lm::new(config, 0)?;
//! let ids = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu)?;
//! assert_eq!(model.forward(&ids)?.dims(), &[1, 3, 300]);
//! # Ok::<(), mnemos_lm::LmError>(())
//! ```

mod attention;
mod bag;
mod batchnorm;
mod config;
mod error;
mod ffn;
pub mod generate;
mod model;
mod ops;
mod paged;
mod params;
mod picks;
mod pkm;
mod query_proj;
mod rmsnorm;
mod rng;
mod rope;
mod score;
mod subkeys;
mod subkeys_i8;
mod tokenizer;
mod topk;
mod topk_wide;
pub mod train;

pub use attention::KvCache;
pub use config::{LmConfig, MemoryConfig, MemoryVariant};
pub use error::{LmError, Result};
pub use ffn::SwiGlu;
pub use generate::{generate, generate_text, generate_with, GenerateOptions, Sampler};
pub use model::{Lm, CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
pub use paged::{PageReads, PagedValues};
pub use pkm::{Lookup, MemoryLayer};
pub use rng::SplitMix64;
pub use score::{score_tokens, TextScore};
pub use subkeys::KeyPrecision;
pub use tokenizer::{LmTokenizer, END_OF_TEXT, MIN_VOCAB_SIZE};
