//! `/v1/lm/*`: the language models: the small ones with product-key memory
//! trained here, and the pretrained anchor (SmolLM2) that hierarchical
//! memory banks extend.

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
    /// `safetensors` (trained by `mnemos train lm`) or `gguf` (a
    /// pretrained model such as the anchor).
    pub format: String,
    /// Whether `"chat": true` applies the model's chat template.
    pub chat: bool,
}

/// Which memory a request runs with, for a model extended by a memory
/// bank: `auto` (the default) fetches the blocks on the path the text
/// selects, `none` runs the bare model. Models without a bank ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LmMemoryMode {
    #[default]
    Auto,
    None,
}

/// The memory a request ran with.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LmMemoryUsed {
    /// The bank's nodes from the root down (empty: the bare model).
    pub path: Vec<String>,
    /// Parameters of the fetched blocks.
    pub params: usize,
    /// True when a block on the route could not be fetched in time (object
    /// storage down or slow, a damaged block): the answer used the path
    /// up to its parent, listed in `path`.
    #[serde(default)]
    pub degraded: bool,
    /// The block that could not be fetched, and why (empty when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<LmMissingBlock>,
    /// Where each block on `path` was read from: `hot` (RAM), `warm`
    /// (memory-mapped file) or `cold` (object storage). Empty when the
    /// bank is not read through tiers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<String>,
}

/// A memory block a request had to do without.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LmMissingBlock {
    pub node: String,
    pub reason: String,
}

/// `GET /v1/admin/tiers`: where the memory bank's blocks are and how the
/// tiers have done.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TiersResponse {
    /// LM answers given without part of their memory path.
    pub degraded_answers: u64,
    /// Placement and counters per tier (budget, resident bytes, hits,
    /// misses, evictions, fetch latency percentiles, failures, the
    /// hottest blocks).
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
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
    /// Wrap the prompt as a user turn in the model's chat template (only
    /// for models that have one: `chat` in `GET /v1/lm/models`).
    #[serde(default)]
    pub chat: bool,
    #[serde(default)]
    pub memory: LmMemoryMode,
    /// Answer with server-sent events as the text is made: `token` events
    /// (`LmStreamToken`), then one `done` event (this request's
    /// `LmGenerateResponse`) or one `error` event (`ErrorResponse`).
    #[serde(default)]
    pub stream: bool,
}

/// `event: token` of a streamed generation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LmStreamToken {
    /// The new text; the pieces concatenated are the final `text`.
    pub text: String,
    /// Tokens generated so far.
    pub tokens: usize,
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
    /// For a model with a memory bank: the path used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<LmMemoryUsed>,
}

/// `POST /v1/lm/score`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LmScoreRequest {
    pub model: String,
    pub text: String,
    #[serde(default)]
    pub memory: LmMemoryMode,
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
    /// For a model with a memory bank: the path used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<LmMemoryUsed>,
}

/// One retraining of a memory block.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LmMemoryJob {
    /// The bank node whose block is (re)trained.
    pub node: String,
    /// Why: `unlearn` (a document it was trained on was removed) or `add`
    /// (a document was assigned to it).
    pub reason: String,
    /// `running`, `done`, `dropped` (no document left under the node, so
    /// its block is deleted), `failed`, or `superseded` (its documents
    /// changed while it ran; it is queued again and its result dropped).
    pub state: String,
    /// Documents the block is trained on.
    pub documents: usize,
    pub steps: usize,
    pub total_steps: usize,
    /// Mean training loss of the last epoch, when done.
    pub loss: Option<f64>,
    pub secs: f64,
    /// What went wrong, for a failed job.
    pub error: Option<String>,
}

/// `GET /v1/admin/lm/memory/jobs`: the memory bank's background work.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LmMemoryJobsResponse {
    /// Nodes waiting, in the order they will run (shallow levels first).
    pub pending: Vec<String>,
    pub running: Option<LmMemoryJob>,
    /// The most recent finished jobs, newest last.
    pub finished: Vec<LmMemoryJob>,
    /// Blocks disabled and not yet retrained: never served.
    pub disabled: Vec<String>,
}
