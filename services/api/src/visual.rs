//! The visual memory's HTTP contract: `/v1/visual/classify` and
//! `/v1/admin/visual/*`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/visual/classify` as JSON: exactly one of `image` and
/// `embedding`. (The multipart variant sends the image as a file part named
/// `image` and the options as text parts of the same names.)
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    /// A PNG or JPEG file, base64-encoded (standard alphabet, padding
    /// optional).
    #[serde(default)]
    pub image: Option<String>,
    /// A precomputed embedding of the memory's dimension.
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
    /// Neighbours that vote, 1..=1000. Default from config.
    #[serde(default)]
    pub k: Option<usize>,
    /// `plurality`, `distance`, `softmax` or `rank_voting` (default from
    /// config).
    #[serde(default)]
    pub aggregation: Option<String>,
    /// HNSW search breadth when the memory is large enough to use its
    /// graph; ignored for exact search.
    #[serde(default)]
    pub ef: Option<usize>,
}

/// A neighbour that voted, and how much its vote weighed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NeighborOut {
    pub id: String,
    pub label: String,
    /// `1 − cosine` between the query and this sample.
    pub distance: f32,
    /// The score this neighbour added to its label.
    pub weight: f32,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClassifyResponse {
    /// The winning label; `null` when the memory is empty.
    pub label: Option<String>,
    /// Every label that received a vote, with its score.
    pub scores: BTreeMap<String, f32>,
    /// The neighbours that decided it, nearest first.
    pub neighbors: Vec<NeighborOut>,
    pub aggregation: String,
    pub k: usize,
    pub took_ms: f64,
}

/// One sample for `POST /v1/admin/visual/memories`: exactly one of
/// `image` and `embedding`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisualItemIn {
    pub id: String,
    pub label: String,
    /// Base64 PNG or JPEG.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisualUpsertRequest {
    pub items: Vec<VisualItemIn>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VisualUpsertResponse {
    pub upserted: usize,
    /// Items in the memory afterwards.
    pub total: usize,
}

/// `DELETE /v1/admin/visual/memories/{id}` and
/// `DELETE /v1/admin/visual/classes/{label}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VisualRemoveResponse {
    /// Ids removed (durably) by this request.
    pub removed: Vec<String>,
    pub total: usize,
}

/// `POST /v1/admin/visual/prune`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// `hard` drops samples that often sit, with the wrong label, among
    /// other samples' nearest neighbours; `soft` down-weights them.
    pub mode: String,
    /// Neighbourhood size; default 100 (SPECS §3).
    #[serde(default)]
    pub k: Option<usize>,
    /// Hard pruning: wrong-label appearances that get a sample dropped;
    /// default 100.
    #[serde(default)]
    pub threshold: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PrunedItem {
    pub id: String,
    pub label: String,
    /// Appearances in other samples' top-k with the wrong label.
    pub wrong: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DownweightedItem {
    pub id: String,
    pub multiplier: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PruneResponse {
    pub examined: usize,
    pub removed: Vec<PrunedItem>,
    /// Soft pruning: the items whose vote now weighs less than a clean
    /// item's (1.75), with their multiplier 1.75/(1 + wrong-count).
    pub downweighted: Vec<DownweightedItem>,
    /// Soft pruning: items whose multiplier was set (every item).
    pub reweighted: usize,
    pub total: usize,
    pub took_ms: f64,
}
