//! The Hypencoder (Killingback, Zeng & Zamani, "Hypencoder: Hypernetworks
//! for Information Retrieval", SIGIR 2025) on candle, over a frozen
//! all-MiniLM-L6-v2 (h = 384). See `SPECS.md` §2.
//!
//! A query is not a vector but a small neural network, its *q-net*, whose
//! weights *hyperheads* generate from the query's token states; the q-net
//! maps a document vector to a relevance score. This lets relevance be a
//! non-linear function of the document vector, which an inner product
//! cannot express, while documents stay single precomputed vectors.
//!
//! - [`Hypencoder`]: hyperheads; [`Hypencoder::generate`] turns
//!   [`QueryStates`] into [`QNets`]; `save`/`load` use a hub-style
//!   directory (`config.json` + `model.safetensors`).
//! - [`QNets::score`] / [`QNets::score_rows`]: fast batched inference over
//!   all, or selected rows of, a `(N, h)` document matrix, by matrix
//!   products per block of documents ([`scoring`]); [`QNets::forward`] is
//!   the differentiable form.
//! - [`train`]: the paper's losses and an AdamW [`train::Trainer`].
//!
//! Document vectors are the encoder's mean-pooled, L2-normalised sentence
//! embeddings, the same vectors the dense backend indexes: all-MiniLM-L6-v2
//! was trained to put meaning in that pooled vector (its `[CLS]` state was
//! never trained as a summary), and sharing them means no second encoding
//! pass or second copy of the corpus vectors.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use mnemos_hypencoder::{Hypencoder, HypencoderConfig, QueryStates};
//!
//! let model = Hypencoder::new(HypencoderConfig::new(8, 2), 0)?;
//! // Two queries of three tokens (the second padded after two).
//! let states = Tensor::ones((2, 3, 8), candle_core::DType::F32, &Device::Cpu)?;
//! let mask = Tensor::new(&[[1f32, 1., 1.], [1., 1., 0.]], &Device::Cpu)?;
//! let qnets = model.generate(&QueryStates::new(states, mask)?)?;
//! let docs = Tensor::ones((5, 8), candle_core::DType::F32, &Device::Cpu)?;
//! let scores = qnets.score(&docs)?;
//! assert_eq!((scores.len(), scores[0].len()), (2, 5));
//! # Ok::<(), mnemos_hypencoder::HypencoderError>(())
//! ```

mod config;
mod error;
mod hyperhead;
mod model;
mod qnet;
mod rng;
pub mod scoring;
pub mod train;
mod warm_start;

pub use config::{HypencoderConfig, InitScale, Start, MINILM_HIDDEN_SIZE};
pub use error::{HypencoderError, Result};
pub use hyperhead::QueryStates;
pub use model::{Hypencoder, CONFIG_FILE, WEIGHTS_FILE};
pub use qnet::QNets;
