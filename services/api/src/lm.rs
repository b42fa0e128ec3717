//! `/v1/lm/*`: the language models with product-key memory.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One served model.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LmModelInfo {
    pub name: String,
    pub parameters: usize,
    pub layers: usize,
    pub dim: usize,
    pub vocab_size: usize,
    /// Context length in tokens.
    pub max_seq_len: usize,
    /// `pkm` or `memory_plus` when the model has memory layers.
    pub memory: Option<String>,
    /// Values in the memory (`n²`), when it has one.
    pub memory_values: Option<usize>,
}

/// `GET /v1/lm/models`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LmModelsResponse {
    pub models: Vec<LmModelInfo>,
}

/// `POST /v1/lm/generate`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LmGenerateRequest {
    pub model: String,
    pub prompt: String,
    /// New tokens at most (default and limit from config).
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// 0 is greedy; default 0.8.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass in (0, 1]; default 0.95.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Same seed, same text; default 0.
    #[serde(default)]
    pub seed: Option<u64>,
}

/// A generation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LmGenerateResponse {
    pub model: String,
    /// The continuation only.
    pub text: String,
    pub prompt_tokens: usize,
    /// Tokens generated (fewer than `max_tokens` at end-of-text or a full
    /// context).
    pub tokens: usize,
    pub took_ms: f64,
    pub tokens_per_s: f64,
}

/// `POST /v1/lm/score`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LmScoreRequest {
    pub model: String,
    pub text: String,
}

/// The likelihood of a text under a model.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LmScoreResponse {
    pub model: String,
    /// Tokens predicted (all but the first).
    pub tokens: usize,
    /// Mean negative log-likelihood per predicted token, in nats.
    pub nll: f64,
    pub perplexity: f64,
    pub took_ms: f64,
}
