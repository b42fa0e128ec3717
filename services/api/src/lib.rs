//! The HTTP contract of mnemos: request and response bodies and their
//! OpenAPI schemas. No logic lives here, so clients (the load-test harness,
//! tests, other services) can depend on it without pulling in the engine.

mod lm;
mod visual;

pub use lm::*;
pub use visual::*;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/search`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Free text. Must not be empty.
    pub query: String,
    /// Number of hits, 1..=1000. Default from config.
    #[serde(default)]
    pub k: Option<usize>,
    /// Backends to query (`bm25`, `dense`, `hypencoder`). One backend means that backend
    /// alone; several are fused. Default from config.
    #[serde(default)]
    pub backends: Option<Vec<String>>,
    /// How to fuse several backends. Default from config.
    #[serde(default)]
    pub fusion: Option<FusionRequest>,
    /// How the `hypencoder` backend searches. Default from config.
    #[serde(default)]
    pub hypencoder: Option<HypencoderRequest>,
}

/// Per-request settings of the `hypencoder` backend.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HypencoderRequest {
    /// `exhaustive` (every document), `graph` (the neighbour-graph walk) or
    /// `auto` (exhaustive for small collections).
    #[serde(default)]
    pub search: Option<String>,
    /// Graph search: random entry documents (`C`).
    #[serde(default)]
    pub entry_points: Option<usize>,
    /// Graph search: best candidates expanded per round (`nCand`).
    #[serde(default)]
    pub candidates: Option<usize>,
    /// Graph search: round limit (`maxIter`).
    #[serde(default)]
    pub max_rounds: Option<usize>,
    /// Graph search: seed of the entry-point draw (default: fixed, so the
    /// same query gives the same results).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// Fusion of several backends' rankings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
pub enum FusionRequest {
    /// Reciprocal Rank Fusion: score = Σ 1/(k + rank), rank from 1.
    Rrf {
        #[serde(default)]
        k: Option<f32>,
    },
    /// Weighted sum of per-backend normalised scores.
    Linear {
        #[serde(default)]
        weights: Option<BTreeMap<String, f32>>,
        /// `minmax` or `zscore`.
        #[serde(default)]
        normalization: Option<String>,
    },
}

/// Where one hit stood in one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceScore {
    /// 1-based rank in that backend's list.
    pub rank: usize,
    /// The backend's raw score.
    pub score: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub id: String,
    /// Final score: the backend's own, or the fused one.
    pub score: f32,
    pub title: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
    /// Rank and score in each backend that returned this hit.
    pub sources: BTreeMap<String, SourceScore>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    pub hits: Vec<SearchHit>,
    pub took_ms: f64,
}

/// A document as sent to `POST /v1/admin/documents`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentIn {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertRequest {
    pub documents: Vec<DocumentIn>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpsertResponse {
    pub upserted: usize,
    /// Log sequence number of the durable write.
    pub seq: u64,
}

/// `POST /v1/admin/hypencoder/rebuild-graph`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RebuildGraphResponse {
    /// Documents in the rebuilt graph.
    pub documents: usize,
    /// Neighbour-list entries after the rebuild.
    pub edges: usize,
    pub took_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RemoveResponse {
    pub removed: bool,
    pub seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRemoveRequest {
    pub ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchRemoveResponse {
    /// How many of the ids existed and are now removed.
    pub removed: usize,
    /// The ids that did not exist.
    pub not_found: Vec<String>,
    pub seq: u64,
}

/// `GET /v1/admin/documents/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DocumentOut {
    pub id: String,
    pub title: String,
    pub text: String,
    pub metadata: serde_json::Value,
    pub seq: u64,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatsResponse {
    pub documents: usize,
    pub last_seq: u64,
    /// Live entries per backend.
    pub backends: BTreeMap<String, usize>,
    /// The visual memory, when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visual: Option<VisualStats>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VisualStats {
    pub items: usize,
    pub classes: usize,
    pub dim: usize,
    /// `exact` or `hnsw`.
    pub search: String,
}

/// Every error body: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_argument`.
    pub code: String,
    pub message: String,
}
