//! Text generation with a KV cache: the prompt is run once, then each new
//! token costs one single-token forward pass over the cached keys and
//! values. Sampling is greedy at temperature 0, otherwise from the softmax
//! at that temperature restricted to the smallest set of tokens whose
//! probability reaches `top_p` (nucleus sampling, Holtzman et al. 2020),
//! with a seeded generator so a run can be repeated.

use candle_core::{Device, Tensor};

use crate::attention::KvCache;
use crate::error::{LmError, Result};
use crate::model::Lm;
use crate::rng::SplitMix64;
use crate::tokenizer::LmTokenizer;

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Tokens to generate at most; generation also stops at a stop token
    /// or when the context (`max_seq_len`) is full.
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 picks the most likely token every time.
    pub temperature: f64,
    /// Nucleus mass in (0, 1]; 1 samples from the whole vocabulary.
    pub top_p: f64,
    /// Seed of the sampling generator.
    pub seed: u64,
    /// Tokens that end generation (not included in the output).
    pub stop_tokens: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            temperature: 0.8,
            top_p: 0.95,
            seed: 0,
            stop_tokens: Vec::new(),
        }
    }
}

impl GenerateOptions {
    /// Checks the sampling options; the error names the bad one.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(LmError::InvalidInput(format!(
                "temperature must be finite and >= 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(LmError::InvalidInput(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// Draws token ids from logits.
#[derive(Debug, Clone)]
pub struct Sampler {
    rng: SplitMix64,
    temperature: f64,
    top_p: f64,
    order: Vec<(f64, u32)>,
}

impl Sampler {
    /// A sampler for `options` (validated).
    pub fn new(options: &GenerateOptions) -> Result<Self> {
        options.validate()?;
        Ok(Self {
            rng: SplitMix64::new(options.seed),
            temperature: options.temperature,
            top_p: options.top_p,
            order: Vec::new(),
        })
    }

    /// One token id from next-token `logits`; NaN logits are never chosen
    /// unless every logit is NaN.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let best = logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                if v > bv {
                    (i, v)
                } else {
                    (bi, bv)
                }
            });
        if self.temperature == 0.0 || !best.1.is_finite() {
            return best.0 as u32;
        }
        // Probabilities in f64, relative to the best logit for stability.
        self.order.clear();
        let mut total = 0.0;
        for (i, &v) in logits.iter().enumerate() {
            let p = ((v - best.1) as f64 / self.temperature).exp();
            if p > 0.0 {
                self.order.push((p, i as u32));
                total += p;
            }
        }
        let mut kept = self.order.len();
        if self.top_p < 1.0 {
            self.order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
            let mut mass = 0.0;
            for (n, &(p, _)) in self.order.iter().enumerate() {
                mass += p;
                if mass >= self.top_p * total {
                    kept = n + 1;
                    break;
                }
            }
            total = mass.min(total);
        }
        let mut target = self.rng.uniform() * total;
        for &(p, id) in &self.order[..kept] {
            target -= p;
            if target <= 0.0 {
                return id;
            }
        }
        self.order[kept - 1].1
    }
}

/// Continues `prompt` (token ids) and returns the new tokens only.
pub fn generate(model: &Lm, prompt: &[u32], options: &GenerateOptions) -> Result<Vec<u32>> {
    generate_with(model, prompt, options, |_| true)
}

/// [`generate`], calling `on_token` with each new token as soon as it is
/// chosen (for streaming); generation stops early when it returns false
/// (e.g. the client has gone).
pub fn generate_with(
    model: &Lm,
    prompt: &[u32],
    options: &GenerateOptions,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<Vec<u32>> {
    let mut sampler = Sampler::new(options)?;
    let max_seq_len = model.config().max_seq_len;
    if prompt.is_empty() || prompt.len() > max_seq_len {
        return Err(LmError::InvalidInput(format!(
            "the prompt must have 1..={max_seq_len} tokens, got {}",
            prompt.len()
        )));
    }
    let _span = tracing::debug_span!("generate", prompt = prompt.len()).entered();
    let mut cache = KvCache::new();
    let mut out = Vec::with_capacity(options.max_new_tokens);
    let mut input = Tensor::new(prompt, &Device::Cpu)?.unsqueeze(0)?;
    while out.len() < options.max_new_tokens {
        let logits = model.forward_cached(&input, &mut cache)?;
        let last = logits.get(0)?.get(input.dim(1)? - 1)?.to_vec1::<f32>()?;
        let next = sampler.sample(&last);
        if options.stop_tokens.contains(&next) {
            break;
        }
        out.push(next);
        if !on_token(next) || cache.len() >= max_seq_len {
            break;
        }
        input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
    }
    Ok(out)
}

/// Continues `prompt` (text) and returns the generated text; stops at the
/// tokenizer's end-of-text token as well as at `options.stop_tokens`.
pub fn generate_text(
    model: &Lm,
    tokenizer: &LmTokenizer,
    prompt: &str,
    options: &GenerateOptions,
) -> Result<String> {
    let ids = tokenizer.encode(prompt)?;
    let mut options = options.clone();
    options.stop_tokens.extend(tokenizer.end_of_text());
    tokenizer.decode(&generate(model, &ids, &options)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_best_and_top_p_limits_the_choice() -> Result<()> {
        let logits = [0.0f32, 3.0, 2.9, -1.0];
        let greedy = GenerateOptions {
            temperature: 0.0,
            ..GenerateOptions::default()
        };
        assert_eq!(Sampler::new(&greedy)?.sample(&logits), 1);
        // With top_p tiny only the best token is in the nucleus.
        let narrow = GenerateOptions {
            temperature: 1.0,
            top_p: 1e-6,
            ..GenerateOptions::default()
        };
        let mut sampler = Sampler::new(&narrow)?;
        assert!((0..100).all(|_| sampler.sample(&logits) == 1));
        // The full distribution reaches every token eventually, and the
        // same seed repeats the same draws.
        let full = GenerateOptions {
            temperature: 2.0,
            top_p: 1.0,
            seed: 9,
            ..GenerateOptions::default()
        };
        let draws: Vec<u32> = {
            let mut s = Sampler::new(&full)?;
            (0..400).map(|_| s.sample(&logits)).collect()
        };
        assert!((0..4).all(|id| draws.contains(&id)));
        let mut again = Sampler::new(&full)?;
        assert!(draws.iter().all(|&d| again.sample(&logits) == d));
        Ok(())
    }

    #[test]
    fn bad_options_are_errors() {
        for opts in [
            GenerateOptions {
                temperature: -1.0,
                ..GenerateOptions::default()
            },
            GenerateOptions {
                top_p: 0.0,
                ..GenerateOptions::default()
            },
            GenerateOptions {
                top_p: f64::NAN,
                ..GenerateOptions::default()
            },
        ] {
            assert!(Sampler::new(&opts).is_err());
        }
    }
}
