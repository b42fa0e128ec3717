//! `[lm]`: the language models served under `/v1/lm/*`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::settings::{in_range, invalid};
use crate::Result;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmSettings {
    /// Serve `/v1/lm/*`.
    pub enabled: bool,
    /// Every sub-directory holding `config.json`, `model.safetensors` and
    /// `tokenizer.json` (the output of `mnemos train lm`) is served under
    /// the directory's name. A missing directory serves no model.
    pub models_dir: PathBuf,
    /// Largest `max_tokens` a generation may ask for.
    pub max_tokens: usize,
    /// `max_tokens` when a request names none.
    pub default_max_tokens: usize,
    /// Longest prompt, in bytes (the model's context also limits tokens).
    pub max_prompt_bytes: usize,
    /// Longest text `/v1/lm/score` accepts, in bytes.
    pub max_score_bytes: usize,
    /// Requests run at once (each on tokio's blocking pool); 0 = one per
    /// CPU core.
    pub workers: usize,
    /// Requests waiting beyond the workers before new ones get 503.
    pub queue_capacity: usize,
}

impl Default for LmSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            models_dir: PathBuf::from("models/trained/lm"),
            max_tokens: 512,
            default_max_tokens: 64,
            max_prompt_bytes: 16 * 1024,
            max_score_bytes: 256 * 1024,
            workers: 0,
            queue_capacity: 64,
        }
    }
}

impl LmSettings {
    pub fn validate(&self) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        in_range("lm.max_tokens", self.max_tokens, 1..=100_000)?;
        in_range(
            "lm.default_max_tokens",
            self.default_max_tokens,
            1..=self.max_tokens,
        )?;
        in_range("lm.max_prompt_bytes", self.max_prompt_bytes, 1..=16 << 20)?;
        in_range("lm.max_score_bytes", self.max_score_bytes, 1..=64 << 20)?;
        if self.workers > 64 {
            return Err(invalid("lm.workers", "must be in 0..=64 (0: one per core)"));
        }
        if self.queue_capacity == 0 {
            return Err(invalid("lm.queue_capacity", "must be at least 1"));
        }
        Ok(())
    }

    /// Requests to run at once.
    pub fn workers(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}
