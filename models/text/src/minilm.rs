//! all-MiniLM-L6-v2 and other BERT sentence encoders on candle.
//!
//! The network is BERT ([`crate::bert`]); this file adds everything around
//! it that sentence-transformers does in Python: tokenisation with the right
//! truncation, batches of texts run end to end without padding
//! ([`crate::ragged`]), pooling over each text's own tokens, and L2
//! normalisation.

use std::cmp::Reverse;
use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use mnemos_models_core::{Encoder, ModelError, Result};
use tokenizers::Encoding;

use crate::bert::Bert;
use crate::layout::ModelLayout;
use crate::pooling::{pool_rows, Pooling};
use crate::ragged::Ragged;
use crate::runtime_error;
use crate::tokenize::{ragged_inputs, SentenceTokenizer};

/// Settings for [`MiniLmEncoder::load`]; `None` means "as the model
/// directory says".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderOptions {
    /// Inputs are cut to this many tokens, `[CLS]` and `[SEP]` included.
    /// all-MiniLM-L6-v2 was trained with 128 and is used with 256 by
    /// sentence-transformers; it must not exceed the model's position
    /// table (512 for BERT).
    pub max_tokens: usize,
    /// Override the pooling mode read from `1_Pooling/config.json`.
    pub pooling: Option<Pooling>,
    /// Override whether outputs are L2-normalised; by default they are
    /// unless `modules.json` exists and lists no Normalize module.
    pub normalize: Option<bool>,
    /// Most texts run through the network at once; larger calls are split
    /// after sorting by length. On one thread, groups of 4–8 ~40-token
    /// sentences ran ~10% faster per sentence than groups of 32 (their
    /// activations stay in cache), and a bound keeps the memory of one
    /// call predictable.
    pub max_batch: usize,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            pooling: None,
            normalize: None,
            max_batch: 8,
        }
    }
}

/// Final-layer token states of a batch of texts, from
/// [`MiniLmEncoder::token_states`]: plain row-major buffers, so callers need
/// no tensor library.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenStates {
    /// Number of texts.
    pub rows: usize,
    /// Tokens per row after padding: the longest text's token count,
    /// `[CLS]` and `[SEP]` included.
    pub seq_len: usize,
    /// Width of each token state (the model's hidden size).
    pub dim: usize,
    /// `rows × seq_len × dim` token states; zero at padding positions.
    pub states: Vec<f32>,
    /// `rows × seq_len` attention mask: 1 for real tokens, 0 for padding.
    pub mask: Vec<f32>,
}

/// A BERT sentence encoder loaded from a hub-layout directory, by default
/// sentence-transformers/all-MiniLM-L6-v2 (384 dimensions, mean pooling,
/// unit-length outputs).
///
/// Runs on the CPU. Thread use is candle's: set `RAYON_NUM_THREADS=1`
/// before the first call to keep each inference worker on one core, which
/// measured faster than sharing cores inside one matrix product.
pub struct MiniLmEncoder {
    model: Bert,
    tokenizer: SentenceTokenizer,
    device: Device,
    pooling: Pooling,
    normalize: bool,
    max_tokens: usize,
    max_batch: usize,
    dim: usize,
}

impl MiniLmEncoder {
    /// Loads the model in `model_dir` (see [`crate`] for the layout).
    ///
    /// Fails with [`ModelError::MissingFile`] when a required file is
    /// absent, [`ModelError::Config`] when a file is malformed, describes
    /// an unsupported model, or does not match the weights, and
    /// [`ModelError::InvalidInput`] for out-of-range options.
    pub fn load(model_dir: &Path, opts: EncoderOptions) -> Result<Self> {
        let layout = ModelLayout::read(model_dir)?;
        let config = &layout.config;
        if opts.max_tokens < 2 || opts.max_tokens > config.max_position_embeddings {
            return Err(ModelError::InvalidInput(format!(
                "max_tokens must be between 2 and the model's {} positions, got {}",
                config.max_position_embeddings, opts.max_tokens
            )));
        }
        if opts.max_batch == 0 {
            return Err(ModelError::InvalidInput(
                "max_batch must be at least 1".into(),
            ));
        }
        let tokenizer = SentenceTokenizer::load(&layout.tokenizer, opts.max_tokens)?;

        let device = Device::Cpu;
        // Reading the file into memory keeps this crate free of `unsafe`
        // (memory-mapping is unsafe in candle); it costs ~90 MB briefly,
        // once, at start-up.
        let bytes = std::fs::read(&layout.weights).map_err(|source| ModelError::Io {
            path: layout.weights.clone(),
            source,
        })?;
        let bad_weights = |err: candle_core::Error| ModelError::Config {
            path: layout.weights.clone(),
            message: format!("weights do not load as BERT described by config.json: {err}"),
        };
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
            .map_err(bad_weights)?;
        let model = Bert::load(vb, config).map_err(bad_weights)?;

        Ok(Self {
            model,
            tokenizer,
            device,
            pooling: opts.pooling.unwrap_or(layout.pooling),
            normalize: opts.normalize.or(layout.normalize).unwrap_or(true),
            max_tokens: opts.max_tokens,
            max_batch: opts.max_batch,
            dim: config.hidden_size,
        })
    }

    /// The pooling mode in use.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether [`Encoder::embed`] returns unit-length vectors.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// Number of tokens `text` becomes, special tokens included, after
    /// truncation to [`Encoder::max_tokens`].
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.tokenizer.encode(text)?.len())
    }

    /// Final-layer token states of `texts`, before pooling: what the
    /// Hypencoder's hyperheads read (SPECS §2), where [`Encoder::embed`]
    /// keeps only the pooled vector.
    ///
    /// Texts run in length-sorted groups of at most `max_batch` as in
    /// `embed`, then come back in input order, padded on the right to the
    /// longest text; padding states are zero.
    /// Mean-pooling the states under the mask and L2-normalising gives
    /// `embed`'s vectors for a mean-pooling, normalising model.
    pub fn token_states(&self, texts: &[&str]) -> Result<TokenStates> {
        let encodings = texts
            .iter()
            .map(|text| self.tokenizer.encode(text))
            .collect::<Result<Vec<_>>>()?;
        let seq_len = encodings.iter().map(Encoding::len).max().unwrap_or(0);
        let dim = self.dim;
        let mut out = TokenStates {
            rows: texts.len(),
            seq_len,
            dim,
            states: vec![0.0; texts.len() * seq_len * dim],
            mask: vec![0.0; texts.len() * seq_len],
        };
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| Reverse(encodings[i].len()));
        for chunk in order.chunks(self.max_batch) {
            let group: Vec<&Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
            let (hidden, _) = self.hidden_states(&group).map_err(runtime_error)?;
            let mut rows = hidden.chunks_exact(dim);
            for &i in chunk {
                let len = encodings[i].len();
                out.mask[i * seq_len..i * seq_len + len].fill(1.0);
                let start = i * seq_len * dim;
                for (t, state) in rows.by_ref().take(len).enumerate() {
                    out.states[start + t * dim..][..dim].copy_from_slice(state);
                }
            }
        }
        Ok(out)
    }

    /// Final-layer token states of a group of tokenised texts, end to end:
    /// `tokens × dim` floats, and the batch layout that says whose they are.
    fn hidden_states(&self, group: &[&Encoding]) -> candle_core::Result<(Vec<f32>, Ragged)> {
        let (ids, type_ids, batch) = ragged_inputs(group, &self.device)?;
        let span = tracing::debug_span!(
            "minilm_forward",
            rows = group.len(),
            tokens = batch.tokens()
        );
        let _entered = span.enter();
        let hidden = self.model.forward(&ids, &type_ids, &batch)?;
        Ok((hidden.flatten_all()?.to_vec1::<f32>()?, batch))
    }

    /// One forward pass over a group of tokenised texts, pooled.
    fn forward(&self, group: &[&Encoding]) -> candle_core::Result<Vec<Vec<f32>>> {
        let (hidden, batch) = self.hidden_states(group)?;
        Ok(pool_rows(
            &hidden,
            self.dim,
            batch.lengths(),
            self.pooling,
            self.normalize,
        ))
    }
}

impl Encoder for MiniLmEncoder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Returns unit-length vectors unless normalisation was turned off (see
    /// [`MiniLmEncoder::normalizes`]). Inputs are sorted by token count and
    /// run in groups of at most `max_batch`: no group computes padding in
    /// its linear layers, and sorting keeps what attention pads small.
    /// Outputs come back in input order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = texts
            .iter()
            .map(|text| self.tokenizer.encode(text))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| Reverse(encodings[i].len()));

        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.max_batch) {
            let group: Vec<&Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
            let vectors = self.forward(&group).map_err(runtime_error)?;
            for (&i, vector) in chunk.iter().zip(vectors) {
                out[i] = vector;
            }
        }
        Ok(out)
    }
}
