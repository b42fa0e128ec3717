//! `[hypencoder]`: the Hypencoder backend (a q-net per query scoring the
//! dense backend's document vectors; `SPECS.md` §2).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::settings::{in_range, invalid};
use crate::Result;

/// Search modes `[hypencoder] search` and requests may name.
pub const HYPENCODER_SEARCHES: &[&str] = &["auto", "exhaustive", "graph"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HypencoderSettings {
    /// Serve the `hypencoder` backend. It scores the dense encoder's
    /// document vectors and reads its token states, so it is off whenever
    /// the dense backend is.
    pub enabled: bool,
    /// The trained hyperheads (`config.json` + `model.safetensors`), e.g.
    /// from `mnemos train hypencoder`.
    pub model_dir: PathBuf,
    /// `exhaustive` scores every document; `graph` walks the neighbour
    /// graph; `auto` is exhaustive up to `exhaustive_below` documents.
    pub search: String,
    pub exhaustive_below: usize,
    /// Neighbours per document in the graph (the paper: 100). Fixed when
    /// the index is first built.
    pub neighbors: usize,
    /// Graph search: random entry documents (`C`), best candidates expanded
    /// per round (`nCand`), and the round limit (`maxIter`).
    pub entry_points: usize,
    pub candidates: usize,
    pub max_rounds: usize,
    /// Queries scored at once (each on tokio's blocking pool); 0 = one per
    /// CPU core.
    pub workers: usize,
    /// Queries waiting beyond the workers before new requests get 503.
    pub queue_capacity: usize,
}

impl Default for HypencoderSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            model_dir: PathBuf::from("models/trained/hypencoder-scifact"),
            search: "auto".into(),
            exhaustive_below: 20_000,
            neighbors: 100,
            entry_points: 512,
            candidates: 12,
            max_rounds: 16,
            workers: 0,
            queue_capacity: 256,
        }
    }
}

impl HypencoderSettings {
    pub fn validate(&self) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if !HYPENCODER_SEARCHES.contains(&self.search.as_str()) {
            return Err(invalid(
                "hypencoder.search",
                format!(
                    "unknown search `{}` (known: {})",
                    self.search,
                    HYPENCODER_SEARCHES.join(", ")
                ),
            ));
        }
        in_range("hypencoder.neighbors", self.neighbors, 1..=1000)?;
        in_range("hypencoder.entry_points", self.entry_points, 1..=1_000_000)?;
        in_range("hypencoder.candidates", self.candidates, 1..=10_000)?;
        in_range("hypencoder.max_rounds", self.max_rounds, 1..=1000)?;
        if self.workers > 64 {
            return Err(invalid(
                "hypencoder.workers",
                "must be in 0..=64 (0: one per core)",
            ));
        }
        if self.queue_capacity == 0 {
            return Err(invalid("hypencoder.queue_capacity", "must be at least 1"));
        }
        Ok(())
    }

    /// Query workers to allow.
    pub fn workers(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}
