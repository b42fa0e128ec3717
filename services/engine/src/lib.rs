//! The mnemos engine: wires the document store, the indexes and the encoder
//! together. It owns the write path (store first, then every index) and the
//! read path (encode, search each backend, drop anything the store no longer
//! holds, fuse). No HTTP lives here; the gateway maps [`EngineError`] to
//! status codes.
//!
//! The guarantee "a removed document is never served again" rests on one
//! rule: every hit is checked against the store, which is durable before a
//! write is acknowledged. Indexes may lag (they are reconciled against the
//! store at start-up) but can never resurrect a removed id.

pub mod beir;
mod compute;
mod disk;
mod embed;
pub mod eval;
pub mod fusion;
pub mod hypencoder;
mod images;
pub mod lm;
mod lm_memory;
mod lm_memory_jobs;
mod lm_models;
mod lm_stream;
mod open;
mod restore;
mod search;
pub mod visual;
mod visual_jobs;
mod write;

use std::path::PathBuf;
use std::sync::Arc;

pub use embed::{EmbedPool, EmbedStats};
pub use hypencoder::{HypencoderBackend, HypencoderMode};
pub use images::ImagePool;
pub use lm::LmService;
pub use lm_stream::LmStreamEvent;
pub use open::{hnsw_params, Loaded};
pub use visual::Visual;
pub use write::{UpsertTimings, WriteOutcome};

use mnemos_bm25::Bm25Index;
use mnemos_config::Settings;
use mnemos_hnsw::VectorIndex;
use mnemos_store::Store;

/// Errors of the engine. The gateway's one `match` maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is wrong (400).
    #[error("{0}")]
    InvalidArgument(String),
    /// The named document does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// Too much work queued; retry later (503).
    #[error("{0}")]
    Overloaded(String),
    /// A needed component is not available (503).
    #[error("{0}")]
    Unavailable(String),
    /// The data directory's disk is (nearly) full; nothing was written (507).
    #[error("{0}")]
    StorageFull(String),
    #[error("store: {0}")]
    Store(#[from] mnemos_store::StoreError),
    #[error("index: {0}")]
    Index(#[from] mnemos_index_core::IndexError),
    #[error("model: {0}")]
    Model(String),
    #[error("configuration: {0}")]
    Config(#[from] mnemos_config::ConfigError),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The backends a search can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    Bm25,
    Dense,
    Hypencoder,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Bm25, Backend::Dense, Backend::Hypencoder];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Bm25 => "bm25",
            Backend::Dense => "dense",
            Backend::Hypencoder => "hypencoder",
        }
    }

    pub fn parse(name: &str) -> Result<Backend> {
        match name {
            "bm25" => Ok(Backend::Bm25),
            "dense" => Ok(Backend::Dense),
            "hypencoder" => Ok(Backend::Hypencoder),
            other => Err(EngineError::InvalidArgument(format!(
                "unknown backend `{other}` (known: bm25, dense, hypencoder)"
            ))),
        }
    }
}

/// The dense backend: the encoder pool and its vector index.
pub struct Dense {
    pub pool: EmbedPool,
    pub index: VectorIndex,
}

/// A running engine. Cheap to share behind an `Arc`.
pub struct Engine {
    settings: Settings,
    store: Arc<Store>,
    bm25: Option<Arc<Bm25Index>>,
    dense: Option<Arc<Dense>>,
    /// The Hypencoder over the dense backend's vectors, when enabled.
    hypencoder: Option<Arc<HypencoderBackend>>,
    /// The language models (`/v1/lm/*`), when enabled.
    lm: Option<Arc<LmService>>,
    /// The visual memory (`/v1/visual/*`), when enabled.
    visual: Option<Arc<Visual>>,
    /// Serialises the apply-to-indexes step so indexes see writes in the
    /// store's order.
    write_lock: tokio::sync::Mutex<()>,
    data_dir: PathBuf,
    /// Refuses adds while the data directory's disk is below its reserve.
    disk: disk::DiskGuard,
}

impl Engine {
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    pub fn backend_enabled(&self, b: Backend) -> bool {
        match b {
            Backend::Bm25 => self.bm25.is_some(),
            Backend::Dense => self.dense.is_some(),
            Backend::Hypencoder => self.hypencoder.is_some(),
        }
    }

    /// Live entries per enabled backend.
    pub fn backend_sizes(&self) -> Vec<(Backend, usize)> {
        use mnemos_index_core::IndexRead;
        let mut out = Vec::new();
        if let Some(b) = &self.bm25 {
            out.push((Backend::Bm25, IndexRead::<str>::len(b.as_ref())));
        }
        if let Some(d) = &self.dense {
            out.push((Backend::Dense, IndexRead::<[f32]>::len(&d.index)));
        }
        if let Some(h) = &self.hypencoder {
            out.push((Backend::Hypencoder, h.index.len()));
        }
        out
    }

    /// The visual memory, or 503 when it is disabled.
    pub fn visual(&self) -> Result<&Arc<Visual>> {
        self.visual.as_ref().ok_or_else(|| {
            EngineError::Unavailable(
                "the visual memory is disabled (visual.enabled = false)".into(),
            )
        })
    }

    /// The language-model service, or 503 when it is disabled.
    pub fn lm(&self) -> Result<&Arc<LmService>> {
        self.lm.as_ref().ok_or_else(|| {
            EngineError::Unavailable("the language models are disabled (lm.enabled = false)".into())
        })
    }

    /// The hypencoder backend, or 503 when it is off.
    pub fn hypencoder(&self) -> Result<&Arc<HypencoderBackend>> {
        self.hypencoder.as_ref().ok_or_else(|| {
            EngineError::Unavailable(
                "the hypencoder backend is disabled (hypencoder.enabled = false, or no dense \
                 backend)"
                    .into(),
            )
        })
    }

    /// Encoder pool counters, if the dense backend is on.
    pub fn embed_stats(&self) -> Option<&EmbedStats> {
        self.dense.as_ref().map(|d| d.pool.stats())
    }

    /// Writes every index's state to its files (the store is always durable).
    pub fn persist(&self) -> Result<()> {
        use mnemos_index_core::IndexWrite;
        if let Some(b) = &self.bm25 {
            IndexWrite::<mnemos_index_core::Document>::persist(b.as_ref())?;
        }
        if let Some(d) = &self.dense {
            IndexWrite::<[f32]>::persist(&d.index)?;
        }
        if let Some(h) = &self.hypencoder {
            IndexWrite::<[f32]>::persist(&h.index)?;
        }
        Ok(())
    }
}

/// An admitted request of a bounded queue (hypencoder, language models):
/// decrements the shared pending count when the request ends, however it
/// ends (success, error, or the client going away).
pub(crate) struct Pending(pub(crate) Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Runs synchronous index or store work on tokio's blocking pool, so it
/// never stalls the async workers that serve requests.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Internal(format!("blocking task failed: {e}")))?
}

/// The text the dense encoder sees for a document (BEIR's convention:
/// title, a space, then the body).
pub fn dense_text(title: &str, text: &str) -> String {
    match (title.is_empty(), text.is_empty()) {
        (true, _) => text.to_string(),
        (false, true) => title.to_string(),
        (false, false) => format!("{title} {text}"),
    }
}
