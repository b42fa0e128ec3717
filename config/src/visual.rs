//! `[visual]`: the visual memory (an editable kNN image classifier).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::settings::{in_range, invalid};
use crate::Result;

/// Aggregations `[visual] default_aggregation` may name (`SPECS.md` §3).
pub const VISUAL_AGGREGATIONS: &[&str] = &["plurality", "distance", "softmax", "rank_voting"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisualSettings {
    /// Serve `/v1/visual/*` and keep a visual memory under `data_dir/visual`.
    pub enabled: bool,
    /// Embed uploaded images with the model in `model_dir`. When false the
    /// memory stores and classifies caller-supplied embeddings of `dim`
    /// dimensions only, and no model is needed.
    pub encoder: bool,
    pub model_dir: PathBuf,
    /// Embedding dimension without the encoder (ignored with it: the
    /// encoder's own dimension, 1280 for EfficientNet-Lite0, applies).
    pub dim: usize,
    pub default_k: usize,
    /// One of [`VISUAL_AGGREGATIONS`].
    pub default_aggregation: String,
    /// Images encoded at once (each on tokio's blocking pool; candle
    /// runs one image on one thread with `RAYON_NUM_THREADS=1`); 0 = one
    /// per CPU core.
    pub workers: usize,
    /// Images waiting for the encoder before new requests get 503.
    pub queue_capacity: usize,
    /// Largest width or height of an uploaded image, in pixels.
    pub max_image_side: u32,
    /// Largest decoded pixel buffer of one image, in bytes.
    pub max_decoded_bytes: u64,
    /// Memories with at least this many items are searched through an
    /// HNSW graph; smaller ones exactly (0: always the graph).
    pub ann_above: usize,
    pub m: usize,
    pub ef_construction: usize,
    /// Graph search breadth (per request: `ef`).
    pub ef_search: usize,
}

impl Default for VisualSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            encoder: true,
            model_dir: PathBuf::from("models/weights/efficientnet-lite0"),
            dim: 0,
            default_k: 10,
            default_aggregation: "rank_voting".into(),
            workers: 0,
            queue_capacity: 256,
            max_image_side: 8192,
            max_decoded_bytes: 256 << 20,
            ann_above: 10_000,
            m: 32,
            ef_construction: 100,
            ef_search: 96,
        }
    }
}

impl VisualSettings {
    pub fn validate(&self) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if !self.encoder {
            in_range("visual.dim", self.dim, 1..=65_536)?;
        }
        in_range("visual.default_k", self.default_k, 1..=1000)?;
        if !VISUAL_AGGREGATIONS.contains(&self.default_aggregation.as_str()) {
            return Err(invalid(
                "visual.default_aggregation",
                format!(
                    "unknown aggregation `{}` (known: {})",
                    self.default_aggregation,
                    VISUAL_AGGREGATIONS.join(", ")
                ),
            ));
        }
        if self.workers > 64 {
            return Err(invalid(
                "visual.workers",
                "must be in 0..=64 (0: one per core)",
            ));
        }
        if self.queue_capacity == 0 {
            return Err(invalid("visual.queue_capacity", "must be at least 1"));
        }
        in_range(
            "visual.max_image_side",
            self.max_image_side as usize,
            1..=65_535,
        )?;
        if self.max_decoded_bytes < 1024 {
            return Err(invalid("visual.max_decoded_bytes", "must be at least 1024"));
        }
        in_range("visual.m", self.m, 2..=256)?;
        in_range("visual.ef_construction", self.ef_construction, 1..=10_000)?;
        in_range("visual.ef_search", self.ef_search, 1..=10_000)?;
        Ok(())
    }

    /// Encoder threads to start.
    pub fn workers(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}
