//! Tokenisation and padding into model inputs.
//!
//! The `tokenizer.json` shipped with all-MiniLM-L6-v2 pads every input to
//! 128 tokens and truncates at 128 (see `PITFALLS.md`): used as is, a
//! 40-token sentence costs as much as a 128-token one, and text between
//! 128 and the model's 256-token limit is silently dropped. We therefore
//! replace its truncation with our own limit, turn its padding off, and pad
//! each forward batch to its longest member ourselves (the `BatchLongest`
//! strategy) after grouping inputs of similar length. Encoding one text at
//! a time also keeps the tokenizer off its internal rayon pool, so the
//! inference worker's one-thread budget holds.

use std::path::Path;

use candle_core::{Device, Tensor};
use mnemos_models_core::{ModelError, Result};
use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// A tokenizer configured for one-sentence inputs of at most `max_tokens`.
pub(crate) struct SentenceTokenizer {
    inner: Tokenizer,
    pad_id: u32,
}

impl SentenceTokenizer {
    /// Loads `tokenizer.json`, truncating at `max_tokens` (special tokens
    /// included) and with padding disabled. `fallback_pad_id` is used when
    /// the file names no padding token.
    pub fn load(path: &Path, max_tokens: usize, fallback_pad_id: u32) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path)
            .map_err(|err| ModelError::Tokenizer(format!("{}: {err}", path.display())))?;
        let pad_id = inner.get_padding().map_or(fallback_pad_id, |p| p.pad_id);
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|err| ModelError::Tokenizer(err.to_string()))?;
        Ok(Self { inner, pad_id })
    }

    /// Tokenises one text with special tokens, truncated, unpadded.
    pub fn encode(&self, text: &str) -> Result<Encoding> {
        // `encode_fast` skips computing character offsets, which we never use.
        self.inner
            .encode_fast(text, true)
            .map_err(|err| ModelError::Tokenizer(err.to_string()))
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
}

/// Model inputs for a group of texts, padded on the right to the longest.
pub(crate) struct PaddedBatch {
    /// `(rows, seq_len)` u32 token ids.
    pub ids: Tensor,
    /// `(rows, seq_len)` u32 segment ids.
    pub type_ids: Tensor,
    /// `(rows, seq_len)` f32, 1 for real tokens and 0 for padding.
    pub mask: Tensor,
    pub seq_len: usize,
}

/// Pads `encodings` to their longest length and builds tensors on `device`.
pub(crate) fn pad_batch(
    encodings: &[&Encoding],
    pad_id: u32,
    device: &Device,
) -> candle_core::Result<PaddedBatch> {
    let rows = encodings.len();
    let seq_len = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
    let mut ids = vec![pad_id; rows * seq_len];
    let mut type_ids = vec![0u32; rows * seq_len];
    let mut mask = vec![0f32; rows * seq_len];
    for (row, encoding) in encodings.iter().enumerate() {
        let start = row * seq_len;
        let len = encoding.len();
        ids[start..start + len].copy_from_slice(encoding.get_ids());
        type_ids[start..start + len].copy_from_slice(encoding.get_type_ids());
        mask[start..start + len].fill(1.0);
    }
    Ok(PaddedBatch {
        ids: Tensor::from_vec(ids, (rows, seq_len), device)?,
        type_ids: Tensor::from_vec(type_ids, (rows, seq_len), device)?,
        mask: Tensor::from_vec(mask, (rows, seq_len), device)?,
        seq_len,
    })
}
