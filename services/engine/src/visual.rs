//! The visual memory service: images (or caller-supplied embeddings) in,
//! kNN decisions and durable edits out. The memory itself and its log live
//! in `mnemos-visual`; this module validates requests, runs the image
//! encoder pool, and keeps blocking work (search, fsync) off tokio's
//! workers.
//!
//! Concurrency: classifications share a read lock on the memory; edits
//! take the write lock, so an edit is applied between two classifications,
//! never during one, and once an edit's call returns (logged, fsynced,
//! applied) no later classification can see what it removed.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::{Arc, Mutex};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use mnemos_config::VisualSettings;
use mnemos_visual::{
    Aggregation, Decision, DurableMemory, NewItem, Prune, PruneReport, VisualError,
};

use crate::images::ImagePool;
use crate::visual_jobs::{build_graph, end_edit};
use crate::{blocking, EngineError, Result};

/// Most neighbours a request may ask for.
pub const MAX_K: usize = 1000;
/// Most graph search breadth a request may ask for.
pub const MAX_EF: usize = 10_000;

/// An image (PNG/JPEG bytes) or a ready embedding.
#[derive(Debug, Clone)]
pub enum VisualInput {
    Image(Vec<u8>),
    Embedding(Vec<f32>),
}

/// One sample to store.
#[derive(Debug, Clone)]
pub struct VisualItem {
    pub id: String,
    pub label: String,
    pub input: VisualInput,
    pub metadata: serde_json::Value,
}

/// A classification request; `None` fields take the configured defaults.
#[derive(Debug, Clone)]
pub struct ClassifyQuery {
    pub input: VisualInput,
    pub k: Option<usize>,
    pub aggregation: Option<String>,
    pub ef: Option<usize>,
}

/// A decision with the parameters that produced it.
#[derive(Debug, Clone)]
pub struct Classified {
    pub decision: Decision,
    /// Each neighbour's stored metadata (JSON text), parallel to
    /// `decision.neighbors`.
    pub metadata: Vec<Option<Arc<str>>>,
    pub k: usize,
    pub aggregation: Aggregation,
}

/// Planning passes of one prune request before it gives up on a memory
/// that keeps being edited.
const PRUNE_PASSES: usize = 3;

/// Counts for `/v1/stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisualCounts {
    pub items: usize,
    pub classes: usize,
    pub dim: usize,
    pub graph: bool,
}

pub struct Visual {
    memory: Arc<RwLock<DurableMemory>>,
    /// Sizes as of the last edit, kept apart from the memory's lock so
    /// that stats and responses never wait behind a long edit (a prune, a
    /// graph build) on an async worker.
    counts: Arc<Mutex<VisualCounts>>,
    images: Option<ImagePool>,
    dim: usize,
    default_k: usize,
    default_aggregation: Aggregation,
    disk: crate::disk::DiskGuard,
}

impl Visual {
    /// Opens the memory in `dir`, replaying its log. `images` is the
    /// encoder pool, or `None` for an embeddings-only memory of
    /// `settings.dim` dimensions.
    pub async fn open(
        settings: &VisualSettings,
        dir: &Path,
        images: Option<ImagePool>,
        disk: crate::disk::DiskGuard,
    ) -> Result<Self> {
        let dim = images.as_ref().map_or(settings.dim, ImagePool::dim);
        let default_aggregation = Aggregation::parse(&settings.default_aggregation)
            .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
        let params = visual_params(settings);
        let path = dir.to_path_buf();
        let memory = blocking(move || {
            DurableMemory::open_deferred(&path, dim, params).map_err(|e| {
                EngineError::Unavailable(format!(
                    "cannot open the visual memory in {}: {e}",
                    path.display()
                ))
            })
        })
        .await?;
        let counts = counts_of(&memory, dim);
        let visual = Self {
            memory: Arc::new(RwLock::new(memory)),
            counts: Arc::new(Mutex::new(counts)),
            images,
            dim,
            default_k: settings.default_k,
            default_aggregation,
            disk,
        };
        // A memory past `ann_above` reopens in exact search and serves at
        // once; its graph is built in the background.
        let job = write(&visual.memory)?.graph_job();
        build_graph(&visual.memory, &visual.counts, dim, job);
        Ok(visual)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn has_encoder(&self) -> bool {
        self.images.is_some()
    }

    /// Sizes as of the last completed edit.
    pub fn counts(&self) -> VisualCounts {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Classifies one image or embedding by its nearest stored samples.
    pub async fn classify(&self, q: ClassifyQuery) -> Result<Classified> {
        let k = q.k.unwrap_or(self.default_k);
        if !(1..=MAX_K).contains(&k) {
            return Err(EngineError::InvalidArgument(format!(
                "k must be in 1..={MAX_K}, got {k}"
            )));
        }
        let aggregation = match q.aggregation.as_deref() {
            None => self.default_aggregation,
            Some(name) => Aggregation::parse(name).map_err(visual_error)?,
        };
        if let Some(ef) = q.ef {
            if !(1..=MAX_EF).contains(&ef) {
                return Err(EngineError::InvalidArgument(format!(
                    "ef must be in 1..={MAX_EF}, got {ef}"
                )));
            }
        }
        let embedding = self.embed_one(q.input).await?;
        let memory = Arc::clone(&self.memory);
        let (decision, metadata) = blocking(move || {
            let memory = read(&memory);
            let decision = memory
                .classify_with_ef(&embedding, k, aggregation, q.ef)
                .map_err(visual_error)?;
            // Under the same lock: the neighbours are still stored.
            let metadata = decision
                .neighbors
                .iter()
                .map(|n| memory.memory().get(&n.id).and_then(|i| i.metadata.clone()))
                .collect();
            Ok((decision, metadata))
        })
        .await?;
        Ok(Classified {
            decision,
            metadata,
            k,
            aggregation,
        })
    }

    /// Adds or replaces samples, all or none; returns the memory's size.
    pub async fn upsert(&self, items: Vec<VisualItem>) -> Result<usize> {
        self.disk.check_add()?;
        let mut images = Vec::new();
        let mut image_slots = Vec::new();
        let mut rows: Vec<Option<Vec<f32>>> = Vec::with_capacity(items.len());
        let metadata: Vec<Option<String>> = items
            .iter()
            .map(|item| (!item.metadata.is_null()).then(|| item.metadata.to_string()))
            .collect();
        for (i, item) in items.iter().enumerate() {
            check_name("id", i, &item.id)?;
            check_name("label", i, &item.label)?;
            // Checked before any image is embedded, so a refusal is cheap.
            let max = mnemos_visual::log::MAX_METADATA;
            if metadata[i].as_ref().is_some_and(|m| m.len() > max) {
                return Err(EngineError::InvalidArgument(format!(
                    "items[{i}].metadata must be at most {} KiB as JSON",
                    max >> 10
                )));
            }
            match &item.input {
                VisualInput::Image(bytes) => {
                    image_slots.push(i);
                    images.push((format!("items[{i}].image"), bytes.clone()));
                    rows.push(None);
                }
                VisualInput::Embedding(v) => {
                    self.check_embedding(v, &format!("items[{i}].embedding"))?;
                    rows.push(Some(v.clone()));
                }
            }
        }
        if !images.is_empty() {
            let pool = self.require_encoder()?;
            let vectors = pool.embed(images).await?;
            for (slot, v) in image_slots.iter().zip(vectors) {
                rows[*slot] = Some(v);
            }
        }
        let (memory, counts, dim) = (Arc::clone(&self.memory), Arc::clone(&self.counts), self.dim);
        blocking(move || {
            let rows: Vec<Vec<f32>> = rows.into_iter().flatten().collect();
            if rows.len() != items.len() {
                return Err(EngineError::Internal("an item lost its embedding".into()));
            }
            let batch: Vec<NewItem<'_>> = items
                .iter()
                .zip(&rows)
                .zip(&metadata)
                .map(|((item, row), meta)| NewItem {
                    id: &item.id,
                    label: &item.label,
                    embedding: row,
                    metadata: meta.as_deref(),
                })
                .collect();
            let mut guard = write(&memory)?;
            let out = guard.upsert_items(&batch).map_err(visual_error);
            let items = update(&counts, &guard, dim, out)?.items;
            // The upsert that reaches `ann_above` leaves the graph to a
            // background build instead of holding the lock through it.
            let job = guard.graph_job();
            end_edit(&memory, guard);
            build_graph(&memory, &counts, dim, job);
            Ok(items)
        })
        .await
    }

    /// Unlearns one sample; returns the ids removed (empty if unknown)
    /// and the memory's size afterwards.
    pub async fn remove(&self, id: String) -> Result<(Vec<String>, usize)> {
        let (memory, counts, dim) = (Arc::clone(&self.memory), Arc::clone(&self.counts), self.dim);
        blocking(move || {
            let mut guard = write(&memory)?;
            let out = guard.remove(&[&id]).map_err(visual_error);
            let after = update(&counts, &guard, dim, Ok(()))?;
            end_edit(&memory, guard);
            Ok((out?, after.items))
        })
        .await
    }

    /// Unlearns a whole class; returns the ids removed and the size after.
    pub async fn remove_class(&self, label: String) -> Result<(Vec<String>, usize)> {
        let (memory, counts, dim) = (Arc::clone(&self.memory), Arc::clone(&self.counts), self.dim);
        blocking(move || {
            let mut guard = write(&memory)?;
            let out = guard.remove_class(&label).map_err(visual_error);
            let after = update(&counts, &guard, dim, Ok(()))?;
            end_edit(&memory, guard);
            Ok((out?, after.items))
        })
        .await
    }

    /// Runs a pruning pass: planned under the read lock (one top-k search
    /// per item, so classifications and edits go on meanwhile; 19 min at
    /// 1M × 1280-d on 2 cores), then logged and applied under the
    /// write lock. An edit in between makes the plan stale: it is planned
    /// again off the lock, up to [`PRUNE_PASSES`] times, and never under
    /// the write lock, which at a million items would stop every edit
    /// and classification for that long.
    pub async fn prune(&self, how: Prune) -> Result<(PruneReport, usize)> {
        let (memory, counts, dim) = (Arc::clone(&self.memory), Arc::clone(&self.counts), self.dim);
        blocking(move || {
            for _ in 0..PRUNE_PASSES {
                let (report, at) = {
                    let m = read(&memory);
                    (
                        m.memory().plan_prune(how).map_err(visual_error)?,
                        m.generation(),
                    )
                };
                let mut guard = write(&memory)?;
                if guard.generation() != at {
                    continue;
                }
                let out = guard.apply_prune(how, report, at).map_err(visual_error);
                let after = update(&counts, &guard, dim, Ok(()))?;
                end_edit(&memory, guard);
                return Ok((out?, after.items));
            }
            Err(EngineError::Overloaded(format!(
                "the visual memory was edited during each of {PRUNE_PASSES} pruning passes; \
                 nothing was pruned, retry when edits pause"
            )))
        })
        .await
    }

    /// Items stored, as of the last completed edit.
    pub fn len(&self) -> usize {
        self.counts().items
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn embed_one(&self, input: VisualInput) -> Result<Vec<f32>> {
        match input {
            // Checked by the memory as it classifies.
            VisualInput::Embedding(v) => Ok(v),
            VisualInput::Image(bytes) => {
                let pool = self.require_encoder()?;
                let mut v = pool.embed(vec![("image".into(), bytes)]).await?;
                v.pop()
                    .ok_or_else(|| EngineError::Internal("the encoder returned nothing".into()))
            }
        }
    }

    fn require_encoder(&self) -> Result<&ImagePool> {
        self.images.as_ref().ok_or_else(|| {
            EngineError::InvalidArgument(
                "this visual memory has no image encoder (visual.encoder = false); \
                 send `embedding` instead of `image`"
                    .into(),
            )
        })
    }

    /// The memory's own check (right length, finite, not all zeros), run
    /// before any image of the request is embedded so a bad vector costs
    /// no inference.
    fn check_embedding(&self, v: &[f32], what: &str) -> Result<()> {
        mnemos_hnsw::normalised(v, self.dim)
            .map(drop)
            .map_err(|e| EngineError::InvalidArgument(format!("{what}: {e}")))
    }
}

fn counts_of(memory: &DurableMemory, dim: usize) -> VisualCounts {
    let stats = memory.memory().stats();
    VisualCounts {
        items: stats.items,
        classes: stats.classes,
        dim,
        graph: stats.graph,
    }
}

/// Refreshes the published sizes after an edit (also after a failed one,
/// which may have applied part of a chunked request), then passes the
/// edit's outcome on.
pub(crate) fn update(
    counts: &Mutex<VisualCounts>,
    memory: &DurableMemory,
    dim: usize,
    out: Result<()>,
) -> Result<VisualCounts> {
    let now = counts_of(memory, dim);
    *counts.lock().unwrap_or_else(|p| p.into_inner()) = now.clone();
    out.map(|()| now)
}

/// The memory's search parameters from `[visual]`.
pub fn visual_params(s: &VisualSettings) -> mnemos_visual::VisualParams {
    let defaults = mnemos_visual::VisualParams::default();
    mnemos_visual::VisualParams {
        ann_above: s.ann_above,
        hnsw: mnemos_hnsw::HnswParams {
            m: s.m,
            ef_construction: s.ef_construction,
            ef_search: s.ef_search,
            // Graph mode scans exactly only below the switch-over size.
            exact_below: s.ann_above.min(defaults.hnsw.exact_below),
            ..defaults.hnsw
        },
    }
}

fn check_name(field: &str, i: usize, value: &str) -> Result<()> {
    let max = mnemos_visual::log::MAX_NAME;
    if value.is_empty() || value.len() > max {
        return Err(EngineError::InvalidArgument(format!(
            "items[{i}].{field} must be 1 to {max} bytes"
        )));
    }
    Ok(())
}

fn visual_error(e: VisualError) -> EngineError {
    match e {
        VisualError::InvalidInput(m) => EngineError::InvalidArgument(m),
        VisualError::Locked(m) => EngineError::Unavailable(m),
        other => EngineError::Internal(format!("visual memory: {other}")),
    }
}

/// Reads go on after an edit panicked (the lock does not poison): that
/// edit was never acknowledged, and everything acknowledged before it is
/// applied.
fn read(m: &RwLock<DurableMemory>) -> RwLockReadGuard<'_, DurableMemory> {
    m.read()
}

/// The write lock on the memory, for one edit. The lock is fair
/// (`parking_lot`): std's let a stream of classifications keep an
/// unlearning request waiting for seconds.
pub(crate) struct Edit<'a>(RwLockWriteGuard<'a, DurableMemory>);

impl Deref for Edit<'_> {
    type Target = DurableMemory;
    fn deref(&self) -> &DurableMemory {
        &self.0
    }
}

impl DerefMut for Edit<'_> {
    fn deref_mut(&mut self) -> &mut DurableMemory {
        &mut self.0
    }
}

/// A panic in the middle of an edit may have left the memory in RAM apart
/// from its log, so it refuses every later edit: only a restart (which
/// replays the log) brings them together again.
impl Drop for Edit<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.mark_broken("an edit panicked");
        }
    }
}

/// Takes the write lock, refusing if the memory no longer takes edits.
pub(crate) fn write(m: &RwLock<DurableMemory>) -> Result<Edit<'_>> {
    let guard = m.write();
    if let Some(why) = guard.broken() {
        return Err(EngineError::Unavailable(format!(
            "the visual memory refuses edits after an internal error ({why}); restart the \
             server to replay its log"
        )));
    }
    Ok(Edit(guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[visual]`'s defaults are the memory's measured defaults (one place
    /// to tune: `mnemos_visual::VisualParams`).
    #[test]
    fn config_defaults_are_the_memorys_defaults() {
        assert_eq!(
            visual_params(&VisualSettings::default()),
            mnemos_visual::VisualParams::default()
        );
    }

    /// Edits that grow the log past twice the live state start a
    /// compaction on its own thread; classifications and edits go on, and
    /// the compacted log reopens to exactly what was acknowledged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_grown_log_is_compacted_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let settings = VisualSettings {
            encoder: false,
            dim: 8,
            ..VisualSettings::default()
        };
        let path = dir.path().join("visual");
        let disk = crate::disk::DiskGuard::new(dir.path().to_path_buf(), 0);
        let visual = Visual::open(&settings, &path, None, disk).await.unwrap();
        let log = || std::fs::metadata(path.join("visual.log")).unwrap().len();
        // 200 items with 16 KB of metadata each, rewritten round after
        // round: ~3.2 MB of log per round against a live state of 3.2 MB.
        let pad = "x".repeat(16_000);
        let rounds = 12;
        for round in 0..rounds {
            let items = (0..200)
                .map(|i| VisualItem {
                    id: format!("s{i}"),
                    label: format!("c{}", i % 4),
                    input: VisualInput::Embedding(
                        (0..8)
                            .map(|d| ((i * 8 + d + round) % 11) as f32 - 5.0)
                            .collect(),
                    ),
                    metadata: serde_json::json!({"round": round, "pad": pad}),
                })
                .collect();
            visual.upsert(items).await.unwrap();
            visual.remove(format!("s{round}")).await.unwrap();
            let q = ClassifyQuery {
                input: VisualInput::Embedding(vec![1.0; 8]),
                k: None,
                aggregation: None,
                ef: None,
            };
            visual.classify(q).await.unwrap();
        }
        let written = rounds as u64 * 200 * 16_000;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while log() > written / 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            log() < written / 2,
            "{} bytes of log for {written} written",
            log()
        );
        drop(visual);
        // The compaction thread holds the memory weakly: once it lets go,
        // the directory can be opened again.
        let reopened = loop {
            match DurableMemory::open(&path, 8) {
                Err(VisualError::Locked(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other.unwrap(),
            }
        };
        let m = reopened.memory();
        // s11 was removed last and not written since.
        assert_eq!(m.len(), 199);
        assert!(!m.contains("s11"));
        let meta = m.get("s0").unwrap().metadata.as_deref().unwrap().to_owned();
        let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
        assert_eq!(meta["round"], rounds - 1);
    }
}
