//! The likelihood a model gives a text: what `POST /v1/lm/score` reports.

use crate::error::{LmError, Result};
use crate::model::Lm;
use crate::train::{cross_entropy, Batch};

/// Negative log-likelihood of a token sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextScore {
    /// Tokens predicted: all but the first.
    pub tokens: usize,
    /// Mean negative log-likelihood per predicted token, in nats.
    pub nll: f64,
    /// `exp(nll)`.
    pub perplexity: f64,
}

/// Scores `tokens[1..]`, each given the tokens before it. A sequence longer
/// than the model's context is scored in consecutive windows of
/// `max_seq_len` predictions, each window starting without earlier context
/// (as in [`crate::train::evaluate`], so the two figures agree).
pub fn score_tokens(model: &Lm, tokens: &[u32]) -> Result<TextScore> {
    if tokens.len() < 2 {
        return Err(LmError::InvalidInput(format!(
            "scoring needs at least 2 tokens, got {}",
            tokens.len()
        )));
    }
    let window = model.config().max_seq_len;
    let predictions = tokens.len() - 1;
    let mut total = 0f64;
    let mut start = 0;
    while start < predictions {
        let len = window.min(predictions - start);
        let batch = Batch::from_windows(tokens, &[start], len)?;
        let loss = cross_entropy(&model.forward(&batch.inputs)?, &batch.targets)?;
        total += loss.to_scalar::<f32>()? as f64 * len as f64;
        start += len;
    }
    let nll = total / predictions as f64;
    Ok(TextScore {
        tokens: predictions,
        nll,
        perplexity: nll.exp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LmConfig;

    fn tiny(max_seq_len: usize) -> Lm {
        let cfg = LmConfig {
            vocab_size: 32,
            dim: 16,
            layers: 1,
            heads: 2,
            ffn_hidden: 32,
            max_seq_len,
            ..LmConfig::default()
        };
        Lm::new(cfg, 3).expect("model")
    }

    #[test]
    fn windows_cover_every_prediction_and_agree_with_evaluate() -> Result<()> {
        let model = tiny(4);
        let tokens: Vec<u32> = (0..13).map(|i| (i * 7 % 32) as u32).collect();
        let s = score_tokens(&model, &tokens)?;
        assert_eq!(s.tokens, 12);
        // 12 predictions = three full windows of 4: the same as evaluate.
        let e = crate::train::evaluate(&model, &tokens, 4, 8)?;
        assert!((s.nll - e.loss).abs() < 1e-5, "{} vs {}", s.nll, e.loss);
        assert!((s.perplexity - s.nll.exp()).abs() < 1e-9);
        // A ragged tail window still counts every token once.
        assert_eq!(score_tokens(&model, &tokens[..11])?.tokens, 10);
        Ok(())
    }

    #[test]
    fn fewer_than_two_tokens_is_an_error() {
        let model = tiny(4);
        assert!(score_tokens(&model, &[1]).is_err());
        assert!(score_tokens(&model, &[]).is_err());
    }
}
