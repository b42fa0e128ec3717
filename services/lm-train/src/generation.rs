//! Single-request decoding speed: the paper's second claim is that a
//! memory model decodes faster than the dense model it matches, because a
//! lookup reads `H·k` values where a deeper model runs whole blocks.
//!
//! Measured as a server would decode one request: batch 1, greedy, with
//! the KV cache, on one thread (training has every core; a served model
//! runs one request per worker thread, see the `mnemos` binary). Time is
//! the whole request, prompt included, divided by the new tokens.

use std::time::Instant;

use mnemos_lm::{generate, GenerateOptions, Lm, LmTokenizer};
use serde::Serialize;

use crate::{LmTrainError, Result};

/// How generation speed is measured.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// A short prompt (from no article of the corpus).
    pub prompt: String,
    /// Tokens generated per request; end-of-text does not stop it, so
    /// every model generates exactly this many.
    pub new_tokens: usize,
    /// Timed requests after one untimed warm-up; the median is reported,
    /// and the fastest, which a busy machine disturbs least.
    pub repeats: usize,
    /// Threads while decoding; `None` leaves the current setting (tests,
    /// which must not change the process environment under other tests).
    pub threads: Option<usize>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            prompt: " The history of the".into(),
            new_tokens: 128,
            repeats: 10,
            threads: Some(1),
        }
    }
}

impl GenerationConfig {
    /// Checks the numbers.
    pub fn validate(&self) -> Result<()> {
        if self.prompt.is_empty() || self.new_tokens == 0 || self.repeats == 0 {
            return Err(LmTrainError::Invalid(
                "generation needs a prompt, new_tokens >= 1 and repeats >= 1".into(),
            ));
        }
        if self.threads == Some(0) {
            return Err(LmTrainError::Invalid(
                "generation threads must be >= 1".into(),
            ));
        }
        Ok(())
    }
}

/// Speed and output of greedy decoding, for `training.json`.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationReport {
    pub prompt: String,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    /// Threads used, or `None` if left to the environment.
    pub threads: Option<usize>,
    /// New tokens per second of the median request.
    pub tokens_per_sec: f64,
    /// New tokens per second of the fastest request.
    pub best_tokens_per_sec: f64,
    /// Seconds of each timed request.
    pub request_secs: Vec<f64>,
    /// The greedy continuation (decoded; special tokens left out).
    pub text: String,
}

/// Times greedy decoding of `config.new_tokens` tokens after the prompt.
pub fn measure(
    model: &Lm,
    tokenizer: &LmTokenizer,
    config: &GenerationConfig,
) -> Result<GenerationReport> {
    config.validate()?;
    let prompt = tokenizer.encode(&config.prompt)?;
    let options = GenerateOptions {
        max_new_tokens: config.new_tokens,
        temperature: 0.0,
        ..GenerateOptions::default()
    };
    let run = || -> Result<(Vec<u32>, Vec<f64>)> {
        let mut out = generate(model, &prompt, &options)?;
        let mut secs = Vec::with_capacity(config.repeats);
        for _ in 0..config.repeats {
            let started = Instant::now();
            out = generate(model, &prompt, &options)?;
            secs.push(started.elapsed().as_secs_f64());
        }
        Ok((out, secs))
    };
    let (out, mut secs) = match config.threads {
        None => run()?,
        Some(n) => with_threads(n, run)?,
    };
    let report_secs = secs.clone();
    secs.sort_by(f64::total_cmp);
    let median = secs[secs.len() / 2];
    Ok(GenerationReport {
        prompt: config.prompt.clone(),
        prompt_tokens: prompt.len(),
        new_tokens: out.len(),
        threads: config.threads,
        tokens_per_sec: out.len() as f64 / median,
        best_tokens_per_sec: out.len() as f64 / secs[0],
        request_secs: report_secs,
        text: tokenizer.decode(&out)?,
    })
}

/// Runs `f` on `n` threads: inside a rayon pool of that size (candle's
/// element-wise kernels use the current pool) with `RAYON_NUM_THREADS`
/// set to `n` (candle reads it before every matrix product to choose
/// gemm's parallelism). The variable is restored afterwards; nothing else
/// computes meanwhile, as training is over when this runs.
fn with_threads<T>(n: usize, f: impl FnOnce() -> Result<T> + Send) -> Result<T>
where
    T: Send,
{
    const VAR: &str = "RAYON_NUM_THREADS";
    let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build()?;
    let before = std::env::var_os(VAR);
    std::env::set_var(VAR, n.to_string());
    let result = pool.install(f);
    match before {
        Some(value) => std::env::set_var(VAR, value),
        None => std::env::remove_var(VAR),
    }
    result
}
