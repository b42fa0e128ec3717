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
    /// A pretrained GGUF model (a `.gguf` file, or a directory holding
    /// one), served as `anchor_name`: SmolLM2-135M-Instruct, installed by
    /// `scripts/install-models.sh`. A path without a GGUF file serves no
    /// anchor (with a warning), so a machine without it still starts.
    pub anchor_dir: PathBuf,
    /// The anchor's name in `/v1/lm/*`.
    pub anchor_name: String,
    /// How the anchor's weights are held: `f32` (exact, fastest to score,
    /// ~540 MB), `q8_0` (~145 MB, decodes ~2.8x faster, slightly different
    /// outputs) or `native` (as in the file; slow on CPU for Q4_1).
    pub anchor_weights: String,
    /// Longest stretch of text the anchor scores in one pass; longer texts
    /// are scored in consecutive windows of this many tokens.
    pub anchor_score_window: usize,
    /// The anchor's hierarchical memory bank (the output of `mnemos train
    /// memory`); none there, no memory (requests report no path).
    pub memory_bank_dir: PathBuf,
    /// The BEIR corpus the shipped bank was trained on: a bank without
    /// document texts (the shipped one keeps the data set out of the
    /// repository) takes them from here on first start, to retrain blocks
    /// after an unlearning.
    pub memory_bank_corpus: PathBuf,
    /// Per tree level, the cosine between a text's embedding and the node
    /// on its path below which the path is cut there (the last value holds
    /// for deeper levels): text unlike the bank's runs on the bare anchor,
    /// text near a topic but no leaf gets the topic's blocks only.
    pub memory_min_similarity: Vec<f32>,
    /// A leaf's block is fetched only for text whose cosine with one of
    /// the leaf's own documents reaches this (leaves hold their documents
    /// nearly verbatim: they help text close to one of them and hurt other
    /// text of the topic). Unset: the centroid thresholds alone decide.
    pub memory_leaf_gate: Option<f32>,
    /// Documents upserted through the admin API are added to the memory
    /// bank too (assigned to a leaf; the blocks on its path retrain in the
    /// background). Removals always unlearn.
    pub memory_learn_documents: bool,
    /// Requests waiting beyond the workers before new ones get 503.
    pub queue_capacity: usize,
    /// How served product-key models score their sub-keys: `int8` (the
    /// default: keys and queries in eight bits, half the key bytes, so a
    /// lookup at 1M values is ~20-25% faster and its cost grows ≤ 1.5×
    /// from 65k to 1M values; validation perplexity of the shipped memory
    /// models moved by under 0.02%) or `f16` (the checkpoint's scores
    /// exactly; on CPUs without AVX-512 VNNI it is the faster one).
    pub memory_key_precision: String,
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
            anchor_dir: PathBuf::from("models/weights/smollm2-135m"),
            anchor_name: "smollm2-135m".into(),
            anchor_weights: "f32".into(),
            anchor_score_window: 1024,
            memory_bank_dir: PathBuf::from("models/trained/memory-bank"),
            memory_bank_corpus: PathBuf::from("../shared/data/beir/scifact"),
            memory_min_similarity: vec![0.3, 0.0],
            memory_learn_documents: true,
            memory_leaf_gate: Some(0.8),
            queue_capacity: 64,
            memory_key_precision: "int8".into(),
        }
    }
}

/// Accepted values of `lm.anchor_weights`.
pub const ANCHOR_WEIGHTS: [&str; 3] = ["f32", "q8_0", "native"];
/// Accepted values of `lm.memory_key_precision`.
pub const MEMORY_KEY_PRECISIONS: [&str; 2] = ["f16", "int8"];

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
        if !ANCHOR_WEIGHTS.contains(&self.anchor_weights.as_str()) {
            return Err(invalid(
                "lm.anchor_weights",
                format!("must be one of {}", ANCHOR_WEIGHTS.join(", ")),
            ));
        }
        if !MEMORY_KEY_PRECISIONS.contains(&self.memory_key_precision.as_str()) {
            return Err(invalid(
                "lm.memory_key_precision",
                format!("must be one of {}", MEMORY_KEY_PRECISIONS.join(", ")),
            ));
        }
        let name_ok = !self.anchor_name.is_empty()
            && self.anchor_name.len() <= 64
            && self
                .anchor_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(invalid(
                "lm.anchor_name",
                "must be 1-64 characters of letters, digits, '-', '_' or '.'",
            ));
        }
        in_range("lm.anchor_score_window", self.anchor_score_window, 2..=8192)?;
        if self
            .memory_leaf_gate
            .is_some_and(|g| !(-1.0..=1.0).contains(&g))
        {
            return Err(invalid("lm.memory_leaf_gate", "must be a cosine in -1..=1"));
        }
        if self
            .memory_min_similarity
            .iter()
            .any(|c| !(-1.0..=1.0).contains(c))
        {
            return Err(invalid(
                "lm.memory_min_similarity",
                "must be cosines in -1..=1",
            ));
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
