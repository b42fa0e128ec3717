//! A [`VisualMemory`] whose every edit is logged and fsynced before it is
//! applied: the write path the gateway acknowledges on.
//!
//! Each edit is validated in full first (a batch with one bad item changes
//! nothing), then appended to the [`Log`] as one record, then applied in
//! memory. On open the log is replayed, so the memory after a crash is
//! exactly the acknowledged edits. The directory is locked so two
//! processes never append to one log.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use fs4::fs_std::FileExt;

use crate::deferred::{BuiltGraph, Edits, GraphJob};
use crate::log::{Log, Op, Row, MAX_METADATA, MAX_NAME};
use crate::memory::{Prune, PruneReport, VisualMemory};
use crate::params::VisualParams;
use crate::vote::{Aggregation, Decision};
use crate::{Result, VisualError};

/// Ids (at most [`MAX_NAME`] bytes each) per removal or multiplier record,
/// so a large class or a pruning pass stays far below the record limit. A
/// crash between two records of one request keeps the records already
/// logged; that request was not acknowledged.
const ID_CHUNK: usize = 65_536;

/// One item for [`DurableMemory::upsert_items`].
#[derive(Debug, Clone, Copy)]
pub struct NewItem<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub embedding: &'a [f32],
    /// Opaque to the memory (the gateway stores JSON text), returned with
    /// the item as a neighbour; at most [`MAX_METADATA`] bytes.
    pub metadata: Option<&'a str>,
}

/// A durable visual memory in one directory.
#[derive(Debug)]
pub struct DurableMemory {
    pub(crate) memory: VisualMemory,
    pub(crate) log: Log,
    /// Commits since open, to tell whether a prune plan is still current.
    generation: u64,
    /// Log size after the last rewrite (or at open): the live state's
    /// size, metadata included, as the log measures it.
    pub(crate) compacted_bytes: u64,
    /// Why the memory in RAM may differ from the log (an op failed to
    /// apply after it was logged); writes are refused while set.
    pub(crate) broken: Option<String>,
    /// A [`crate::compact::Compaction`] is under way.
    pub(crate) compacting: bool,
    /// Commits leave compaction to the caller ([`Self::wants_compaction`]),
    /// who runs it off the lock; set for [`Self::open_deferred`].
    defer_compaction: bool,
    _lock: File,
}

impl DurableMemory {
    /// Opens the memory in `dir` (created if absent) for `dim`-dimensional
    /// embeddings with the default [`VisualParams`], replaying its log.
    pub fn open(dir: &Path, dim: usize) -> Result<Self> {
        Self::open_with(dir, dim, VisualParams::default())
    }

    /// [`Self::open`] with explicit search parameters. They are not stored
    /// in the log: a memory may be reopened with other ones, and replay
    /// builds the graph if the memory holds `params.ann_above` items or
    /// more (minutes at a million items).
    pub fn open_with(dir: &Path, dim: usize, params: VisualParams) -> Result<Self> {
        Self::open_inner(dir, dim, params, false)
    }

    /// [`Self::open_with`] for a memory whose graph is built off the lock
    /// ([`crate::deferred`]): replay never builds it, and neither do later
    /// upserts; the caller takes [`Self::graph_job`]s instead. Likewise
    /// commits never compact the log: the caller runs a
    /// [`crate::compact::Compaction`] when [`Self::wants_compaction`].
    pub fn open_deferred(dir: &Path, dim: usize, params: VisualParams) -> Result<Self> {
        Self::open_inner(dir, dim, params, true)
    }

    fn open_inner(dir: &Path, dim: usize, params: VisualParams, defer: bool) -> Result<Self> {
        let io = |e: std::io::Error| VisualError::Io(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = File::create(dir.join("LOCK")).map_err(io)?;
        if !lock.try_lock_exclusive().map_err(io)? {
            return Err(VisualError::Locked(format!(
                "{} is in use by another process",
                dir.display()
            )));
        }
        let mut memory = VisualMemory::with_params(dim, params)?;
        memory.defer_graph_builds(defer);
        let log = Log::open(dir, dim, |op| apply(&mut memory, &op))?;
        let compacted_bytes = log.bytes();
        Ok(Self {
            memory,
            log,
            generation: 0,
            compacted_bytes,
            broken: None,
            compacting: false,
            defer_compaction: defer,
            _lock: lock,
        })
    }

    /// Refuses every later edit until the memory is reopened (which
    /// replays the log): for a caller whose edit panicked half way, so the
    /// memory in RAM may differ from its log.
    pub fn mark_broken(&mut self, why: &str) {
        self.broken.get_or_insert_with(|| why.to_owned());
    }

    /// Why edits are refused ([`Self::mark_broken`], or an op that failed
    /// after it was logged), if they are.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// The memory as it stands (every acknowledged edit applied).
    pub fn memory(&self) -> &VisualMemory {
        &self.memory
    }

    /// [`VisualMemory::graph_job`].
    pub fn graph_job(&mut self) -> Option<GraphJob> {
        self.memory.graph_job()
    }

    /// [`VisualMemory::install_graph`]: derived state only, nothing is
    /// logged.
    pub fn install_graph(&mut self, built: BuiltGraph) -> Result<bool> {
        self.memory.install_graph(built)
    }

    /// [`VisualMemory::drain_graph_edits`].
    pub fn drain_graph_edits(&mut self) -> Edits {
        self.memory.drain_graph_edits()
    }

    /// [`VisualMemory::abandon_graph_job`].
    pub fn abandon_graph_job(&mut self) {
        self.memory.abandon_graph_job();
    }

    pub fn classify(
        &self,
        embedding: &[f32],
        k: usize,
        aggregation: Aggregation,
    ) -> Result<Decision> {
        self.memory.classify(embedding, k, aggregation)
    }

    /// [`VisualMemory::classify_with_ef`].
    pub fn classify_with_ef(
        &self,
        embedding: &[f32],
        k: usize,
        aggregation: Aggregation,
        ef: Option<usize>,
    ) -> Result<Decision> {
        self.memory.classify_with_ef(embedding, k, aggregation, ef)
    }

    /// Adds or replaces `(id, label, embedding)` items, all or none.
    pub fn upsert(&mut self, items: &[(&str, &str, &[f32])]) -> Result<()> {
        let items: Vec<NewItem<'_>> = items
            .iter()
            .map(|&(id, label, embedding)| NewItem {
                id,
                label,
                embedding,
                metadata: None,
            })
            .collect();
        self.upsert_items(&items)
    }

    /// Adds or replaces items with their metadata, all or none: every item
    /// is checked before one record is logged for the whole batch.
    pub fn upsert_items(&mut self, items: &[NewItem<'_>]) -> Result<()> {
        let mut rows = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let bad = |what: String| VisualError::InvalidInput(format!("item {i}: {what}"));
            for (name, value) in [("id", item.id), ("label", item.label)] {
                if value.is_empty() || value.len() > MAX_NAME {
                    return Err(bad(format!("{name} must be 1 to {MAX_NAME} bytes")));
                }
            }
            if item.metadata.is_some_and(|m| m.len() > MAX_METADATA) {
                return Err(bad(format!(
                    "metadata must be at most {} KiB",
                    MAX_METADATA >> 10
                )));
            }
            let vector = self
                .memory
                .normalised(item.embedding)
                .map_err(|e| bad(e.to_string()))?;
            rows.push(Row {
                id: item.id.to_string(),
                label: item.label.to_string(),
                vector,
                metadata: item.metadata.filter(|m| !m.is_empty()).map(str::to_owned),
            });
        }
        if rows.is_empty() {
            return Ok(());
        }
        self.commit(Op::Upsert(rows))
    }

    /// Removes the given ids; returns those that were stored.
    pub fn remove(&mut self, ids: &[&str]) -> Result<Vec<String>> {
        let present: Vec<String> = ids
            .iter()
            .filter(|id| self.memory.contains(id))
            .map(|id| id.to_string())
            .collect();
        if !present.is_empty() {
            self.commit(Op::Remove(present.clone()))?;
        }
        Ok(present)
    }

    /// Removes every item labelled `label`; returns their ids.
    pub fn remove_class(&mut self, label: &str) -> Result<Vec<String>> {
        let ids: Vec<String> = self
            .memory
            .items()
            .filter(|item| item.label == label)
            .map(|item| item.id.clone())
            .collect();
        for chunk in ids.chunks(ID_CHUNK) {
            self.commit(Op::Remove(chunk.to_vec()))?;
        }
        Ok(ids)
    }

    /// Prunes as `how` says; the outcome is logged before it is applied.
    pub fn prune(&mut self, how: Prune) -> Result<PruneReport> {
        let report = self.memory.plan_prune(how)?;
        let at = self.generation;
        self.apply_prune(how, report, at)
    }

    /// Edits committed since this memory was opened: a report planned at
    /// one generation is only valid at that generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Logs and applies `report`, planned with `how` by
    /// [`VisualMemory::plan_prune`] on this memory at generation
    /// `planned_at` (e.g. under a read lock, so classifications go on while
    /// it is computed). If the memory was edited since, the report is
    /// stale and the pass is planned again first. Returns what was applied.
    pub fn apply_prune(
        &mut self,
        how: Prune,
        report: PruneReport,
        planned_at: u64,
    ) -> Result<PruneReport> {
        let report = if planned_at == self.generation {
            report
        } else {
            self.memory.plan_prune(how)?
        };
        for chunk in report.removed.chunks(ID_CHUNK) {
            let ids = chunk.iter().map(|r| r.0.clone()).collect();
            self.commit(Op::Remove(ids))?;
        }
        for chunk in report.multipliers.chunks(ID_CHUNK) {
            self.commit(Op::Multipliers(chunk.to_vec()))?;
        }
        Ok(report)
    }

    /// Bytes in the log.
    pub fn log_bytes(&self) -> u64 {
        self.log.bytes()
    }

    /// Log (durable from here), then apply; compact when the log has
    /// doubled since it last held only the live state (unless the caller
    /// compacts, [`Self::open_deferred`]).
    ///
    /// Every op is validated before it is logged, so applying it cannot
    /// fail on its content; should it fail anyway, the memory in RAM no
    /// longer matches the log, and every later edit is refused until the
    /// memory is reopened (which replays the log).
    fn commit(&mut self, op: Op) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(VisualError::Io(format!(
                "an earlier edit could not be applied ({why}); reopen the memory"
            )));
        }
        self.log.append(&op)?;
        self.generation += 1;
        if let Err(e) = apply(&mut self.memory, &op) {
            self.broken = Some(e.to_string());
            return Err(e);
        }
        if !self.defer_compaction && self.wants_compaction() {
            // A failed rewrite leaves the old log in place, still complete.
            if let Err(e) = self.compact() {
                tracing::warn!("visual-memory log compaction failed: {e}");
            }
        }
        Ok(())
    }
}

fn apply(memory: &mut VisualMemory, op: &Op) -> Result<()> {
    match op {
        Op::Upsert(items) => {
            let batch: Vec<(&str, &str, &[f32])> = items
                .iter()
                .map(|r| (r.id.as_str(), r.label.as_str(), r.vector.as_slice()))
                .collect();
            memory.upsert_batch(&batch)?;
            for r in items {
                memory.set_metadata(&r.id, r.metadata.as_deref().map(Arc::from));
            }
        }
        Op::Remove(ids) => {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            memory.remove_many(&ids);
        }
        Op::Multipliers(ms) => {
            for (id, m) in ms {
                memory.set_multiplier(id, *m);
            }
        }
    }
    Ok(())
}
