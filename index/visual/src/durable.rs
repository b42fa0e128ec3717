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

use fs4::fs_std::FileExt;

use crate::log::{Log, Op, MAX_NAME};
use crate::memory::{Prune, PruneReport, VisualMemory};
use crate::vote::{Aggregation, Decision};
use crate::{Result, VisualError};

/// Items per record when the log is rewritten from the live state.
const SNAPSHOT_CHUNK: usize = 4096;
/// The log is rewritten once it exceeds twice the live state plus this.
const COMPACT_SLACK: u64 = 8 << 20;

/// A durable visual memory in one directory.
#[derive(Debug)]
pub struct DurableMemory {
    memory: VisualMemory,
    log: Log,
    _lock: File,
}

impl DurableMemory {
    /// Opens the memory in `dir` (created if absent) for `dim`-dimensional
    /// embeddings, replaying its log.
    pub fn open(dir: &Path, dim: usize) -> Result<Self> {
        let io = |e: std::io::Error| VisualError::Io(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = File::create(dir.join("LOCK")).map_err(io)?;
        if !lock.try_lock_exclusive().map_err(io)? {
            return Err(VisualError::Locked(format!(
                "{} is in use by another process",
                dir.display()
            )));
        }
        let mut memory = VisualMemory::new(dim)?;
        let (log, ops) = Log::open(dir, dim)?;
        for op in &ops {
            apply(&mut memory, op)?;
        }
        Ok(Self {
            memory,
            log,
            _lock: lock,
        })
    }

    /// The memory as it stands (every acknowledged edit applied).
    pub fn memory(&self) -> &VisualMemory {
        &self.memory
    }

    pub fn classify(
        &mut self,
        embedding: &[f32],
        k: usize,
        aggregation: Aggregation,
    ) -> Result<Decision> {
        self.memory.classify(embedding, k, aggregation)
    }

    /// Adds or replaces `(id, label, embedding)` items, all or none.
    pub fn upsert(&mut self, items: &[(&str, &str, &[f32])]) -> Result<()> {
        let mut rows = Vec::with_capacity(items.len());
        for (i, (id, label, embedding)) in items.iter().enumerate() {
            let bad = |what: String| VisualError::InvalidInput(format!("item {i}: {what}"));
            for (name, value) in [("id", id), ("label", label)] {
                if value.is_empty() || value.len() > MAX_NAME {
                    return Err(bad(format!("{name} must be 1 to {MAX_NAME} bytes")));
                }
            }
            let row = self
                .memory
                .normalised(embedding)
                .map_err(|e| bad(e.to_string()))?;
            rows.push((id.to_string(), label.to_string(), row));
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
            .iter()
            .filter(|(item, _)| item.label == label)
            .map(|(item, _)| item.id.clone())
            .collect();
        if !ids.is_empty() {
            self.commit(Op::Remove(ids.clone()))?;
        }
        Ok(ids)
    }

    /// Prunes as `how` says; the outcome is logged before it is applied.
    pub fn prune(&mut self, how: Prune) -> Result<PruneReport> {
        let report = self.memory.plan_prune(how)?;
        if !report.removed.is_empty() {
            let ids = report.removed.iter().map(|r| r.0.clone()).collect();
            self.commit(Op::Remove(ids))?;
        }
        if !report.downweighted.is_empty() {
            self.commit(Op::Multipliers(report.downweighted.clone()))?;
        }
        Ok(report)
    }

    /// Rewrites the log as the live state alone (atomically: a crash
    /// leaves the old log or the new one, both complete).
    pub fn compact(&mut self) -> Result<()> {
        self.log.rewrite(&snapshot(&self.memory))
    }

    /// Bytes in the log.
    pub fn log_bytes(&self) -> u64 {
        self.log.bytes()
    }

    /// Log (durable from here), then apply; compact when the log has grown
    /// well past the live state.
    fn commit(&mut self, op: Op) -> Result<()> {
        self.log.append(&op)?;
        apply(&mut self.memory, &op)?;
        let live = self.memory.len() as u64 * (self.memory.dim() as u64 * 4 + 64);
        if self.log.bytes() > 2 * live + COMPACT_SLACK {
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
            for (id, label, row) in items {
                memory.upsert(id, label, row)?;
            }
        }
        Op::Remove(ids) => {
            for id in ids {
                memory.remove(id);
            }
        }
        Op::Multipliers(ms) => {
            for (id, m) in ms {
                memory.set_multiplier(id, *m);
            }
        }
    }
    Ok(())
}

/// The live state as log records.
fn snapshot(memory: &VisualMemory) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut chunk = Vec::new();
    let mut multipliers = Vec::new();
    for (item, row) in memory.iter() {
        chunk.push((item.id.clone(), item.label.clone(), row.to_vec()));
        if item.multiplier != 1.0 {
            multipliers.push((item.id.clone(), item.multiplier));
        }
        if chunk.len() == SNAPSHOT_CHUNK {
            ops.push(Op::Upsert(std::mem::take(&mut chunk)));
        }
    }
    if !chunk.is_empty() {
        ops.push(Op::Upsert(chunk));
    }
    if !multipliers.is_empty() {
        ops.push(Op::Multipliers(multipliers));
    }
    ops
}
