//! Generation and scoring with a [`Llama`], optionally with memory units
//! appended: what `/v1/lm/generate` and `/v1/lm/score` run for a GGUF
//! model. Sampling is `mnemos-lm`'s (greedy at temperature 0, otherwise
//! nucleus sampling with a seed), so every served model samples alike.

use mnemos_lm::generate::{GenerateOptions, Sampler};

use candle_core::{DType, Device, Tensor, D};

use crate::error::{LlamaError, Result};
use crate::model::{Llama, LlamaCache};
use crate::units::FfnUnits;

impl Llama {
    /// Log-probabilities of `targets[i]` given hidden state `i`, computed
    /// over the vocabulary in slices of rows so that a long text never
    /// holds all its logits at once.
    pub fn target_log_probs(&self, hidden: &Tensor, targets: &[u32]) -> Result<Vec<f32>> {
        const ROWS: usize = 128;
        let t = hidden.dim(0)?;
        if targets.len() != t {
            return Err(LlamaError::InvalidInput(format!(
                "{} targets for {t} positions",
                targets.len()
            )));
        }
        let mut out = Vec::with_capacity(t);
        let mut start = 0;
        while start < t {
            let n = ROWS.min(t - start);
            let logits = self.logits(&hidden.narrow(0, start, n)?)?;
            let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let idx = Tensor::new(&targets[start..start + n], &Device::Cpu)?.unsqueeze(1)?;
            let picked = log_probs.gather(&idx, 1)?.squeeze(1)?;
            out.extend(picked.to_dtype(DType::F32)?.to_vec1::<f32>()?);
            start += n;
        }
        Ok(out)
    }
}

/// Negative log-likelihood of a token sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Tokens predicted: all but the first.
    pub tokens: usize,
    /// Mean negative log-likelihood per predicted token, in nats.
    pub nll: f64,
    /// `exp(nll)`.
    pub perplexity: f64,
}

/// Scores `tokens[1..]`, each given the tokens before it, in consecutive
/// windows of at most `window` predictions (each window starts without
/// earlier context, so the cost stays linear in the length).
pub fn score(
    model: &Llama,
    tokens: &[u32],
    window: usize,
    units: Option<&FfnUnits>,
) -> Result<Score> {
    if tokens.len() < 2 {
        return Err(LlamaError::InvalidInput(format!(
            "scoring needs at least 2 tokens, got {}",
            tokens.len()
        )));
    }
    let window = window.clamp(1, model.max_positions());
    let predictions = tokens.len() - 1;
    let mut total = 0f64;
    let mut start = 0;
    while start < predictions {
        let len = window.min(predictions - start);
        let mut cache = LlamaCache::new();
        let hidden = model.forward_hidden(&tokens[start..start + len], &mut cache, units)?;
        let lp = model.target_log_probs(&hidden, &tokens[start + 1..start + len + 1])?;
        total -= lp.iter().map(|&v| f64::from(v)).sum::<f64>();
        start += len;
    }
    let nll = total / predictions as f64;
    Ok(Score {
        tokens: predictions,
        nll,
        perplexity: nll.exp(),
    })
}

/// Continues `prompt` (token ids) and returns the new tokens only. Stops
/// at `max_new_tokens`, at a stop token (the model's end-of-sequence token
/// is always one), or when the context is full.
pub fn generate(
    model: &Llama,
    prompt: &[u32],
    options: &GenerateOptions,
    units: Option<&FfnUnits>,
) -> Result<Vec<u32>> {
    generate_with(model, prompt, options, units, |_| true)
}

/// [`generate`], calling `on_token` with each new token as soon as it is
/// chosen (for streaming); generation stops early when it returns false.
pub fn generate_with(
    model: &Llama,
    prompt: &[u32],
    options: &GenerateOptions,
    units: Option<&FfnUnits>,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<Vec<u32>> {
    let mut sampler = Sampler::new(options)?;
    let max = model.max_positions();
    if prompt.is_empty() || prompt.len() >= max {
        return Err(LlamaError::InvalidInput(format!(
            "the prompt must have 1..{max} tokens, got {}",
            prompt.len()
        )));
    }
    let mut stops = options.stop_tokens.clone();
    stops.extend(model.special_tokens().eos);
    let mut cache = LlamaCache::new();
    let mut out = Vec::with_capacity(options.max_new_tokens);
    let mut input = prompt.to_vec();
    while out.len() < options.max_new_tokens && cache.len() + input.len() <= max {
        let hidden = model.forward_hidden(&input, &mut cache, units)?;
        let last = hidden.narrow(0, hidden.dim(0)? - 1, 1)?;
        let logits = model.logits(&last)?.squeeze(0)?.to_vec1::<f32>()?;
        let next = sampler.sample(&logits);
        if stops.contains(&next) {
            break;
        }
        out.push(next);
        if !on_token(next) {
            break;
        }
        input = vec![next];
    }
    Ok(out)
}

/// The chat layout of SmolLM2-Instruct (ChatML): a user turn, then the
/// opening of the assistant's turn. With the default system prompt of the
/// model's own template.
pub fn chat_prompt(user: &str) -> String {
    format!(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )
}
