//! The training and validation token streams and the tokenizer.
//!
//! Only WikiText-2's validation split is available here, so it serves as
//! the Wikipedia training text and its last 10% (by bytes) is held out for
//! validation (`../shared/data/README.md`). The split is at the end rather
//! than at random lines so that no validation paragraph has its
//! neighbours, from the same article, in the training text. The validation
//! text reaches neither the tokenizer's BPE merges nor the training
//! windows: a tokenizer trained on it would give its frequent words single
//! tokens and flatter the validation perplexity.

use std::path::{Path, PathBuf};

use mnemos_lm::LmTokenizer;
use serde::Serialize;

use crate::{LmTrainError, Result, TrainConfig};

/// Splits `text` into `(train, validation)`, the validation part being
/// its last `floor(len · val_fraction)` bytes (the cut moved forward to
/// the next character boundary, at most 3 bytes, if it falls inside one).
pub fn split_validation(text: &str, val_fraction: f64) -> (&str, &str) {
    let val_bytes = (text.len() as f64 * val_fraction.clamp(0.0, 1.0)).floor() as usize;
    let mut cut = text.len() - val_bytes.min(text.len());
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text.split_at(cut)
}

/// What the corpus was made of, for `training.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusReport {
    /// The Wikipedia text.
    pub text: PathBuf,
    /// Training-only additions.
    pub extra_texts: Vec<PathBuf>,
    pub text_bytes: usize,
    /// Bytes of `text` before the cut: the Wikipedia training part.
    pub train_bytes: usize,
    /// Bytes of `text` after the cut: the validation part.
    pub val_bytes: usize,
    pub extra_bytes: usize,
    pub val_fraction: f64,
    /// Tokens of the training stream (Wikipedia part and extras).
    pub train_tokens: usize,
    pub val_tokens: usize,
    /// `"trained"` or the `tokenizer.json` that was reused.
    pub tokenizer: String,
    pub vocab_size: usize,
}

/// The tokenizer and the two token streams every model trains and is
/// validated on.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub tokenizer: LmTokenizer,
    /// Training tokens: the Wikipedia training part, then each extra text,
    /// separated by the end-of-text token.
    pub train: Vec<u32>,
    /// Validation tokens: the held-out end of the Wikipedia text.
    pub val: Vec<u32>,
    pub report: CorpusReport,
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| LmTrainError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl Corpus {
    /// Reads the texts of `config`, splits, trains or loads the tokenizer
    /// and encodes both parts.
    pub fn build(config: &TrainConfig) -> Result<Self> {
        let text = read_text(&config.text)?;
        let extras = config
            .extra_texts
            .iter()
            .map(|p| read_text(p))
            .collect::<Result<Vec<_>>>()?;
        let tokenizer = config
            .tokenizer
            .as_deref()
            .map(LmTokenizer::load)
            .transpose()?;
        let started = std::time::Instant::now();
        let mut corpus =
            Self::from_texts(&text, &extras, config.val_fraction, tokenizer, config.vocab)?;
        corpus.report.text = config.text.clone();
        corpus.report.extra_texts = config.extra_texts.clone();
        if let Some(path) = &config.tokenizer {
            corpus.report.tokenizer = path.display().to_string();
        }
        let min = config.seq_len + 1;
        if corpus.train.len() <= min || corpus.val.len() <= min {
            return Err(LmTrainError::Invalid(format!(
                "the corpus is too small for seq_len {}: {} training and {} validation tokens",
                config.seq_len,
                corpus.train.len(),
                corpus.val.len()
            )));
        }
        tracing::info!(
            train_tokens = corpus.train.len(),
            val_tokens = corpus.val.len(),
            vocab = corpus.tokenizer.vocab_size(),
            tokenizer = %corpus.report.tokenizer,
            secs = format!("{:.1}", started.elapsed().as_secs_f64()),
            "corpus"
        );
        Ok(corpus)
    }

    /// The same from texts in memory: `text` is split, `extras` are
    /// training-only; a new tokenizer of `vocab` tokens is trained on the
    /// training texts when `tokenizer` is `None`.
    pub fn from_texts(
        text: &str,
        extras: &[String],
        val_fraction: f64,
        tokenizer: Option<LmTokenizer>,
        vocab: usize,
    ) -> Result<Self> {
        let (train_text, val_text) = split_validation(text, val_fraction);
        let training_texts: Vec<&str> = std::iter::once(train_text)
            .chain(extras.iter().map(String::as_str))
            .collect();
        let trained = tokenizer.is_none();
        let tokenizer = match tokenizer {
            Some(t) => t,
            // Lines with their newline, so that merges across line ends
            // (" \n" is frequent in WikiText) are learnt too.
            None => LmTokenizer::train_from_texts(
                training_texts.iter().flat_map(|t| t.split_inclusive('\n')),
                vocab,
            )?,
        };
        let mut train = Vec::new();
        for (i, part) in training_texts.iter().enumerate() {
            if i > 0 {
                train.extend(tokenizer.end_of_text());
            }
            train.extend(tokenizer.encode(part)?);
        }
        let val = tokenizer.encode(val_text)?;
        let report = CorpusReport {
            text: PathBuf::new(),
            extra_texts: Vec::new(),
            text_bytes: text.len(),
            train_bytes: train_text.len(),
            val_bytes: val_text.len(),
            extra_bytes: extras.iter().map(String::len).sum(),
            val_fraction,
            train_tokens: train.len(),
            val_tokens: val.len(),
            tokenizer: if trained { "trained" } else { "given" }.into(),
            vocab_size: tokenizer.vocab_size(),
        };
        Ok(Self {
            tokenizer,
            train,
            val,
            report,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_tenth_is_held_out_exactly() {
        let text: String = (0..1000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let (train, val) = split_validation(&text, 0.1);
        assert_eq!(val.len(), 100);
        assert_eq!(val, &text[900..]);
        assert_eq!(format!("{train}{val}"), text);
        // 1,005 bytes: floor(100.5) = 100 held out.
        let text = "x".repeat(1005);
        assert_eq!(split_validation(&text, 0.1).1.len(), 100);
        // A cut inside a multi-byte character moves forward to its end.
        let text = format!("{}é{}", "a".repeat(899), "b".repeat(99)); // 1,000 bytes
        let (train, val) = split_validation(&text, 0.1);
        assert_eq!(val, "b".repeat(99));
        assert!(train.ends_with('é'));
    }

    #[test]
    fn the_real_text_splits_at_its_last_tenth() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(crate::DEFAULT_TEXT);
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!("skipped: no {}", path.display());
            return;
        };
        let (train, val) = split_validation(&text, 0.1);
        assert!(
            text.len() / 10 - val.len() <= 3,
            "{} of {}",
            val.len(),
            text.len()
        );
        assert!(text.ends_with(val) && text.starts_with(train));
        assert_eq!(train.len() + val.len(), text.len());
    }

    /// Sentences over a small vocabulary; the validation part alone uses
    /// the word `zyxwv`, many times.
    fn marked_text() -> String {
        let mut text = String::new();
        for i in 0..180 {
            text.push_str(&format!(" the river {} flows into the sea .\n", i % 7));
        }
        text.push_str(&" zyxwv zyxwv zyxwv .\n".repeat(20));
        text
    }

    #[test]
    fn validation_text_stays_out_of_the_tokenizer_and_the_training_stream() -> Result<()> {
        let text = marked_text();
        let (train_text, val_text) = split_validation(&text, 0.1);
        assert!(!train_text.contains("zyxwv") && val_text.contains("zyxwv zyxwv"));
        let extra = vec![" a shakespeare line .\n".repeat(5)];
        let corpus = Corpus::from_texts(&text, &extra, 0.1, None, 400)?;
        let tok = &corpus.tokenizer;
        // Had the validation text been seen, its frequent word would be
        // merged into one token (or two); it is not in the vocabulary.
        assert!(
            tok.encode("zyxwv")?.len() >= 4,
            "{:?}",
            tok.encode("zyxwv")?
        );
        assert!(tok.encode(" river")?.len() == 1);
        assert!(!tok
            .inner()
            .get_vocab(true)
            .keys()
            .any(|k| k.contains("zyx")));
        // The training stream is the training part and the extra text,
        // nothing of the validation part; the validation stream is exactly
        // the held-out text.
        let eot = tok.end_of_text().expect("end of text");
        let at = corpus.train.iter().position(|&t| t == eot).expect("sep");
        assert_eq!(tok.decode(&corpus.train[..at])?, train_text);
        assert_eq!(tok.decode(&corpus.train[at + 1..])?, extra[0]);
        assert_eq!(tok.decode(&corpus.val)?, val_text);
        assert_eq!(
            corpus.report.train_bytes + corpus.report.val_bytes,
            text.len()
        );
        assert_eq!(corpus.report.tokenizer, "trained");
        // A given tokenizer is used as is.
        let again = Corpus::from_texts(&text, &[], 0.1, Some(tok.clone()), 9999)?;
        assert_eq!(again.report.vocab_size, tok.vocab_size());
        assert_eq!(again.val, corpus.val);
        Ok(())
    }
}
