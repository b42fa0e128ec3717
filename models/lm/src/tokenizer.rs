//! A byte-level BPE tokenizer (GPT-2's scheme: Radford et al. 2019)
//! trained with the `tokenizers` crate and saved as `tokenizer.json`.
//!
//! Byte-level means the initial alphabet is the 256 bytes, so every string
//! encodes without an unknown token and decodes back to itself; BPE merges
//! then learn frequent byte sequences of the training text up to the
//! vocabulary size. No normaliser and no prefix space, so the round trip
//! is exact.

use std::path::{Path, PathBuf};

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{LmError, Result};

/// The document separator, id 0 of a trained vocabulary: concatenated
/// training documents are joined with it, and generation may stop on it.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The smallest vocabulary worth training: the 256 bytes, the separator
/// and a few merges.
pub const MIN_VOCAB_SIZE: usize = 260;

/// A byte-level BPE tokenizer.
#[derive(Debug, Clone)]
pub struct LmTokenizer {
    inner: Tokenizer,
}

fn tokenizer_error(err: impl std::fmt::Display) -> LmError {
    LmError::Tokenizer(err.to_string())
}

impl LmTokenizer {
    /// Trains on the lines of `files` up to `vocab_size` tokens (fewer if
    /// the text has fewer distinct merges).
    pub fn train_from_files(files: &[PathBuf], vocab_size: usize) -> Result<Self> {
        for path in files {
            if !path.is_file() {
                return Err(LmError::MissingFile {
                    path: path.clone(),
                    what: "tokenizer training text",
                });
            }
        }
        let names = files
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        Self::train_with(vocab_size, |tokenizer, trainer| {
            tokenizer.train_from_files(trainer, names).map(|_| ())
        })
    }

    /// Trains on in-memory texts up to `vocab_size` tokens.
    pub fn train_from_texts<I, S>(texts: I, vocab_size: usize) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        I::IntoIter: Send,
        S: AsRef<str> + Send,
    {
        Self::train_with(vocab_size, |tokenizer, trainer| {
            tokenizer.train(trainer, texts.into_iter()).map(|_| ())
        })
    }

    fn train_with(
        vocab_size: usize,
        train: impl FnOnce(&mut Tokenizer, &mut TrainerWrapper) -> tokenizers::Result<()>,
    ) -> Result<Self> {
        if !(MIN_VOCAB_SIZE..=1 << 24).contains(&vocab_size) {
            return Err(LmError::Config(format!(
                "vocab_size must be in {MIN_VOCAB_SIZE}..={}, got {vocab_size}",
                1 << 24
            )));
        }
        let mut trainer = TrainerWrapper::BpeTrainer(
            BpeTrainerBuilder::new()
                .show_progress(false)
                .vocab_size(vocab_size)
                .min_frequency(2)
                .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
                .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
                .build(),
        );
        let mut tokenizer = Tokenizer::new(BPE::default());
        // No prefix space: a leading space would not survive decoding.
        tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        train(&mut tokenizer, &mut trainer).map_err(tokenizer_error)?;
        Ok(Self { inner: tokenizer })
    }

    /// Loads `tokenizer.json` from `path`, a file or a model directory.
    pub fn load(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join(crate::TOKENIZER_FILE)
        } else {
            path.to_path_buf()
        };
        if !file.is_file() {
            return Err(LmError::MissingFile {
                path: file,
                what: "tokenizer",
            });
        }
        let inner = Tokenizer::from_file(&file)
            .map_err(|err| tokenizer_error(format!("{}: {err}", file.display())))?;
        Ok(Self { inner })
    }

    /// Writes `tokenizer.json` to `path`, a file or a model directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        let file = if path.is_dir() {
            path.join(crate::TOKENIZER_FILE)
        } else {
            path.to_path_buf()
        };
        self.inner
            .save(&file, false)
            .map_err(|err| tokenizer_error(format!("{}: {err}", file.display())))
    }

    /// Token ids of `text`, without added special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, false).map_err(tokenizer_error)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`; special tokens are left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(tokenizer_error)
    }

    /// Tokens in the vocabulary, special tokens included: the smallest
    /// valid [`crate::LmConfig::vocab_size`].
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of [`END_OF_TEXT`], if the vocabulary has it.
    pub fn end_of_text(&self) -> Option<u32> {
        self.inner.token_to_id(END_OF_TEXT)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}
