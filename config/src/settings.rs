//! The settings tree. Every section denies unknown keys so typos fail loudly.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::admission::AdmissionSettings;
use crate::hypencoder::HypencoderSettings;
use crate::lm::LmSettings;
use crate::tiers::TierSettings;
use crate::visual::VisualSettings;
use crate::{ConfigError, Result};

/// All settings. Section names match the TOML file and the env variables.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub search: SearchSettings,
    pub bm25: Bm25Settings,
    pub dense: DenseSettings,
    pub hnsw: HnswSettings,
    pub store: StoreSettings,
    pub visual: VisualSettings,
    pub hypencoder: HypencoderSettings,
    pub lm: LmSettings,
    pub tiers: TierSettings,
    pub admission: AdmissionSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on.
    pub bind: String,
    /// Where the store, indexes and logs live.
    pub data_dir: PathBuf,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Bearer token for `/v1/admin/*`. Prefer the `MNEMOS_ADMIN_TOKEN` env
    /// variable. Without one, admin routes answer 403.
    pub admin_token: Option<String>,
    /// Optional bearer token required for search.
    pub read_token: Option<String>,
    /// Seed an empty store with the embedded demo collection on start.
    pub seed_demo: bool,
    /// Origins browsers may call the API from (CORS). Empty, the default,
    /// sends no CORS headers at all, so browsers block cross-origin calls.
    pub cors_allow_origins: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            max_body_bytes: 16 * 1024 * 1024,
            admin_token: None,
            read_token: None,
            seed_demo: true,
            cors_allow_origins: Vec::new(),
        }
    }
}

/// Fusion method names accepted in config and requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FusionMethod {
    Rrf,
    Linear,
}

/// Per-backend score normalisation used by linear fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    MinMax,
    ZScore,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSettings {
    /// Backends used when a request names none.
    pub default_backends: Vec<String>,
    pub default_k: usize,
    /// Fusion used when a request with several backends names none.
    pub fusion: FusionMethod,
    /// RRF constant k (Cormack et al. use 60).
    pub rrf_k: f32,
    /// Linear fusion weights per backend (the λ of SPECS §1).
    pub linear_weights: std::collections::BTreeMap<String, f32>,
    pub normalization: Normalization,
    /// How many candidates each backend contributes to a fusion.
    pub fusion_depth: usize,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            default_backends: vec!["bm25".into(), "dense".into()],
            default_k: 10,
            fusion: FusionMethod::Rrf,
            rrf_k: 60.0,
            linear_weights: [
                ("bm25".to_string(), 0.3),
                ("dense".to_string(), 0.7),
                ("hypencoder".to_string(), 0.7),
            ]
            .into_iter()
            .collect(),
            normalization: Normalization::MinMax,
            fusion_depth: 100,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bm25Settings {
    pub enabled: bool,
    /// Anserini's defaults (k1 = 0.9, b = 0.4).
    pub k1: f32,
    pub b: f32,
}

impl Default for Bm25Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            k1: 0.9,
            b: 0.4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DenseSettings {
    pub enabled: bool,
    /// A model directory in the usual hub layout.
    pub model_dir: PathBuf,
    /// Inputs are truncated to this many tokens.
    pub max_tokens: usize,
    /// Most texts embedded in one forward pass.
    pub max_batch: usize,
    /// Inference threads; each runs single-threaded math (PITFALLS: two
    /// threads in one gemm were slower than one here), so parallelism comes
    /// from several workers. 0 means one per CPU core.
    pub workers: usize,
    /// Requests waiting for the encoder beyond this are refused with 503.
    pub queue_capacity: usize,
}

impl Default for DenseSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            model_dir: PathBuf::from("models/weights/all-MiniLM-L6-v2"),
            max_tokens: 256,
            max_batch: 32,
            workers: 0,
            queue_capacity: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HnswSettings {
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    /// Collections smaller than this are searched exactly (faster than the
    /// graph below ~20k 384-d vectors, and perfect recall).
    pub exact_below: usize,
    /// Rebuild the graph when this fraction of its points is dead.
    pub compact_ratio: f32,
}

impl Default for HnswSettings {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 200,
            ef_search: 160,
            exact_below: 10_000,
            compact_ratio: 0.2,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// fsync every write before acknowledging it. Turn off only for bulk
    /// loads you can repeat.
    pub fsync: bool,
    /// Compact the write-ahead log into a snapshot past this size.
    pub compact_after_bytes: u64,
    /// Upserts (documents and visual samples) are refused with 507 while
    /// the data directory's disk has less free space than this (MiB), so
    /// an add never fills the disk half way through updating its indexes;
    /// removals may use the reserve. 0 turns the check off.
    pub min_free_mb: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            fsync: true,
            compact_after_bytes: 64 * 1024 * 1024,
            min_free_mb: 64,
        }
    }
}

pub const KNOWN_BACKENDS: &[&str] = &["bm25", "dense", "hypencoder"];

pub(crate) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// `Err` naming `key` unless `value` lies in `range`.
pub(crate) fn in_range(
    key: &str,
    value: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<()> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "must be in {}..={}, got {value}",
                range.start(),
                range.end()
            ),
        ))
    }
}

impl Settings {
    /// Checks ranges and cross-field rules; messages name the key.
    pub fn validate(&self) -> Result<()> {
        if self.server.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "server.bind",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080",
                    self.server.bind
                ),
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        for (key, token) in [
            ("server.admin_token", &self.server.admin_token),
            ("server.read_token", &self.server.read_token),
        ] {
            if token.as_deref().is_some_and(|t| t.len() < 8) {
                return Err(invalid(key, "tokens must be at least 8 characters"));
            }
        }
        if self.search.default_backends.is_empty() {
            return Err(invalid(
                "search.default_backends",
                "name at least one backend",
            ));
        }
        for b in &self.search.default_backends {
            if !KNOWN_BACKENDS.contains(&b.as_str()) {
                return Err(invalid(
                    "search.default_backends",
                    format!(
                        "unknown backend `{b}` (known: {})",
                        KNOWN_BACKENDS.join(", ")
                    ),
                ));
            }
            if !self.backend_enabled(b) {
                return Err(invalid(
                    "search.default_backends",
                    format!("backend `{b}` is disabled"),
                ));
            }
        }
        in_range("search.default_k", self.search.default_k, 1..=1000)?;
        if !(self.search.rrf_k.is_finite() && self.search.rrf_k >= 0.0) {
            return Err(invalid("search.rrf_k", "must be a finite number >= 0"));
        }
        for (b, w) in &self.search.linear_weights {
            if !KNOWN_BACKENDS.contains(&b.as_str()) {
                return Err(invalid(
                    &format!("search.linear_weights.{b}"),
                    "unknown backend",
                ));
            }
            if !(w.is_finite() && *w >= 0.0) {
                return Err(invalid(
                    &format!("search.linear_weights.{b}"),
                    "must be a finite number >= 0",
                ));
            }
        }
        in_range("search.fusion_depth", self.search.fusion_depth, 1..=10_000)?;
        if !(self.bm25.k1.is_finite() && self.bm25.k1 >= 0.0) {
            return Err(invalid("bm25.k1", "must be a finite number >= 0"));
        }
        if !(0.0..=1.0).contains(&self.bm25.b) {
            return Err(invalid("bm25.b", "must be in 0..=1"));
        }
        in_range("dense.max_tokens", self.dense.max_tokens, 1..=512)?;
        in_range("dense.max_batch", self.dense.max_batch, 1..=1024)?;
        if self.dense.workers > 64 {
            return Err(invalid(
                "dense.workers",
                "must be in 0..=64 (0: one per core)",
            ));
        }
        if self.dense.queue_capacity == 0 {
            return Err(invalid("dense.queue_capacity", "must be at least 1"));
        }
        in_range("hnsw.m", self.hnsw.m, 2..=256)?;
        in_range(
            "hnsw.ef_construction",
            self.hnsw.ef_construction,
            1..=10_000,
        )?;
        in_range("hnsw.ef_search", self.hnsw.ef_search, 1..=10_000)?;
        if !(self.hnsw.compact_ratio > 0.0 && self.hnsw.compact_ratio <= 1.0) {
            return Err(invalid("hnsw.compact_ratio", "must be in (0, 1]"));
        }
        self.visual.validate()?;
        self.hypencoder.validate()?;
        self.lm.validate()?;
        self.tiers.validate()?;
        self.admission.validate()?;
        in_range(
            "store.min_free_mb",
            self.store.min_free_mb as usize,
            0..=1 << 24,
        )?;
        for origin in &self.server.cors_allow_origins {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && origin.is_ascii()
                && !origin.contains(char::is_whitespace);
            if !ok {
                return Err(invalid(
                    "server.cors_allow_origins",
                    format!("`{origin}` is not an origin like https://app.example (no path, no trailing /)"),
                ));
            }
        }
        if !self.bm25.enabled && !self.dense.enabled {
            return Err(invalid(
                "bm25.enabled",
                "at least one backend must be enabled",
            ));
        }
        Ok(())
    }

    /// Encoder workers to start: the configured number, or one per core.
    pub fn dense_workers(&self) -> usize {
        match self.dense.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Whether the named backend is configured on.
    pub fn backend_enabled(&self, name: &str) -> bool {
        match name {
            "bm25" => self.bm25.enabled,
            "dense" => self.dense.enabled,
            // It scores the dense encoder's vectors: off without them.
            "hypencoder" => self.hypencoder.enabled && self.dense.enabled,
            _ => false,
        }
    }

    /// The settings as TOML with secrets replaced, for logs and `/v1/config`.
    pub fn redacted(&self) -> String {
        let mut copy = self.clone();
        for token in [&mut copy.server.admin_token, &mut copy.server.read_token] {
            if token.is_some() {
                *token = Some("<redacted>".into());
            }
        }
        toml::to_string_pretty(&copy).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use crate::Loader;

    #[test]
    fn defaults_validate() {
        Loader::new().build().unwrap();
    }

    #[test]
    fn env_overrides_and_names_bad_keys() {
        let s = Loader::new()
            .env([
                ("MNEMOS__DENSE__MAX_BATCH".to_string(), "16".to_string()),
                (
                    "MNEMOS__SERVER__BIND".to_string(),
                    "127.0.0.1:9999".to_string(),
                ),
                ("OTHER".to_string(), "x".to_string()),
            ])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(s.dense.max_batch, 16);
        assert_eq!(s.server.bind, "127.0.0.1:9999");

        let err = Loader::new()
            .env([("MNEMOS__DENSE__MAX_BACH".to_string(), "16".to_string())])
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("dense.max_bach"), "{err}");

        let err = Loader::new()
            .set("bm25.b", "1.5")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("bm25.b"), "{err}");

        let err = Loader::new()
            .set("dense.max_batch", "\"many\"")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("dense.max_batch"), "{err}");

        let err = Loader::new()
            .set("lm.memory_key_precision", "\"int4\"")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("lm.memory_key_precision"), "{err}");
        assert_eq!(
            Loader::new().build().unwrap().lm.memory_key_precision,
            "int8"
        );
        let s = Loader::new()
            .set("lm.memory_key_precision", "\"f16\"")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(s.lm.memory_key_precision, "f16");
    }

    #[test]
    fn file_layer_and_redaction() {
        let dir = std::env::temp_dir().join(format!("mnemos-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.toml");
        std::fs::write(
            &path,
            "[server]\nadmin_token = \"supersecret-1\"\n[search]\nfusion = \"linear\"\n",
        )
        .unwrap();
        let s = Loader::new().file(&path).unwrap().build().unwrap();
        assert_eq!(s.search.fusion, crate::FusionMethod::Linear);
        assert!(!s.redacted().contains("supersecret"));
        std::fs::write(&path, "[server\n").unwrap();
        assert!(Loader::new().file(&path).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn example_file_matches_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mnemos.example.toml");
        let from_file = Loader::new().file(&path).unwrap().build().unwrap();
        let defaults = Loader::new().build().unwrap();
        assert_eq!(from_file.redacted(), defaults.redacted());
    }
}
