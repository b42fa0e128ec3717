//! Tokenisation into model inputs.
//!
//! The `tokenizer.json` shipped with all-MiniLM-L6-v2 pads every input to
//! 128 tokens and truncates at 128 (see `PITFALLS.md`): used as is, a
//! 40-token sentence costs as much as a 128-token one, and text between
//! 128 and the model's 256-token limit is silently dropped. We therefore
//! replace its truncation with our own limit and turn its padding off: a
//! batch runs its texts end to end, unpadded (`crate::ragged`). Encoding
//! one text at a time also keeps the tokenizer off its internal rayon pool, so the
//! inference worker's one-thread budget holds.

use std::path::Path;

use candle_core::{Device, Tensor};
use mnemos_models_core::{ModelError, Result};
use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::ragged::Ragged;
/// A tokenizer configured for one-sentence inputs of at most `max_tokens`.
pub(crate) struct SentenceTokenizer {
    inner: Tokenizer,
}

impl SentenceTokenizer {
    /// Loads `tokenizer.json`, truncating at `max_tokens` (special tokens
    /// included) and with padding disabled.
    pub fn load(path: &Path, max_tokens: usize) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path)
            .map_err(|err| ModelError::Tokenizer(format!("{}: {err}", path.display())))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|err| ModelError::Tokenizer(err.to_string()))?;
        Ok(Self { inner })
    }

    /// Tokenises one text with special tokens, truncated, unpadded.
    pub fn encode(&self, text: &str) -> Result<Encoding> {
        // `encode_fast` skips computing character offsets, which we never use.
        self.inner
            .encode_fast(text, true)
            .map_err(|err| ModelError::Tokenizer(err.to_string()))
    }
}

/// Model inputs for a group of texts laid end to end, unpadded
/// ([`Ragged`]): token ids and segment ids, `(tokens)` u32 each.
pub(crate) fn ragged_inputs(
    encodings: &[&Encoding],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor, Ragged)> {
    let batch = Ragged::new(encodings.iter().map(|e| e.len()).collect(), device)?;
    let ids: Vec<u32> = encodings
        .iter()
        .flat_map(|e| e.get_ids())
        .copied()
        .collect();
    let type_ids: Vec<u32> = encodings
        .iter()
        .flat_map(|e| e.get_type_ids())
        .copied()
        .collect();
    Ok((
        Tensor::from_vec(ids, batch.tokens(), device)?,
        Tensor::from_vec(type_ids, batch.tokens(), device)?,
        batch,
    ))
}
