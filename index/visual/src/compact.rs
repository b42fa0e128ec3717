//! Log compaction that leaves the memory serving, and writable, while the
//! new log is written.
//!
//! The live state is copied to a new log in chunks, each under a *read*
//! lock, so classifications go on throughout and edits only wait for one
//! chunk at a time; at the end, under the write lock, the records appended
//! to the old log since the compaction began are copied behind the
//! snapshot and the new log is renamed over the old one. That tail is as
//! long as the edits made meanwhile, not as the memory.
//!
//! Why the copy may be *fuzzy* (chunks taken at different moments) and the
//! result still exact: every op sets what it touches outright (an upsert
//! the whole item, multiplier 1; a removal the item's absence; a
//! multiplier record the multiplier), so replaying every op since the
//! start over any state in which each untouched item is as it was at the
//! start gives the live state. Untouched items are never missed because
//! the table is walked from its last slot down: a removal moves the
//! *last* item into the hole, i.e. only to a lower slot, so an item not yet
//! copied stays below the cursor until it is copied. Items copied twice,
//! or in a state newer than the start, are overwritten by the replay.

use parking_lot::RwLock;

use crate::durable::DurableMemory;
use crate::log::{LogWriter, Op, Retired, Row, MAX_METADATA, MAX_NAME, MAX_RECORD};
use crate::{Result, VisualError};

/// Items per record in the new log (fewer for very wide embeddings, so a
/// record stays well under the log's limit): also what one read-lock turn
/// copies. Replay hands each record to the memory as one batch, and in
/// graph mode a batch this size is inserted on all cores.
const SNAPSHOT_CHUNK: usize = 4096;
/// The log is rewritten once it exceeds twice the live state plus this.
const COMPACT_SLACK: u64 = 8 << 20;
/// The new log is fsynced every this many bytes while it is written.
const SYNC_EVERY: u64 = 16 << 20;

/// A compaction under way ([`DurableMemory::begin_compaction`]).
#[derive(Debug)]
pub struct Compaction {
    writer: LogWriter,
    /// Length of the old log when the compaction began: what follows is
    /// replayed behind the snapshot.
    from: u64,
    /// Slots below this are still to be copied.
    cursor: usize,
    /// Items per chunk.
    chunk: usize,
    /// Vote multipliers other than 1 met so far; logged after every item.
    multipliers: Vec<(String, f32)>,
    /// Bytes of the new log known durable.
    synced: u64,
}

impl Compaction {
    /// Appends one chunk taken by [`DurableMemory::compaction_chunk`] to the
    /// new log: call it without holding the memory's lock.
    pub fn write(&mut self, op: &Op) -> Result<()> {
        self.writer.write(op)?;
        if self.writer.len() >= self.synced + SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Makes the records written so far durable (call it without the
    /// lock, before [`DurableMemory::finish_compaction`]).
    pub fn sync(&mut self) -> Result<()> {
        self.writer.sync()?;
        self.synced = self.writer.len();
        Ok(())
    }
}

impl DurableMemory {
    /// Whether the log has doubled since it last held only the live state
    /// and no compaction is under way.
    pub fn wants_compaction(&self) -> bool {
        !self.compacting
            && self.broken.is_none()
            && self.log.bytes() > 2 * self.compacted_bytes + COMPACT_SLACK
    }

    /// Starts a compaction: creates the new log beside the old one. Until
    /// [`Self::finish_compaction`] or [`Self::abandon_compaction`], edits
    /// go on as before (to the old log) and no other compaction starts.
    pub fn begin_compaction(&mut self) -> Result<Compaction> {
        if let Some(why) = &self.broken {
            return Err(VisualError::Io(format!(
                "an earlier edit could not be applied ({why}); reopen the memory"
            )));
        }
        if self.compacting {
            return Err(VisualError::InvalidInput(
                "a compaction of this memory is already under way".into(),
            ));
        }
        let per_item = 12 + 2 * MAX_NAME + MAX_METADATA + 4 * self.memory.dim();
        let job = Compaction {
            writer: self.log.begin_rewrite()?,
            from: self.log.bytes(),
            cursor: self.memory.len(),
            chunk: SNAPSHOT_CHUNK.min(MAX_RECORD / 4 / per_item).max(1),
            multipliers: Vec::new(),
            synced: 0,
        };
        self.compacting = true;
        Ok(job)
    }

    /// The next record of the snapshot: up to one chunk of items, copied
    /// from the highest slots not yet copied (call it under a read lock),
    /// then the multipliers; `None` once all is copied.
    pub fn compaction_chunk(&self, job: &mut Compaction) -> Option<Op> {
        let hi = job.cursor.min(self.memory.len());
        if hi > 0 {
            let lo = hi.saturating_sub(job.chunk);
            job.cursor = lo;
            let rows = (lo..hi)
                .map(|slot| {
                    let item = self.memory.item(slot);
                    if item.multiplier != 1.0 {
                        job.multipliers.push((item.id.clone(), item.multiplier));
                    }
                    Row {
                        id: item.id.clone(),
                        label: item.label.clone(),
                        vector: self.memory.vector_at(slot).into_owned(),
                        metadata: item.metadata.as_deref().map(str::to_owned),
                    }
                })
                .collect();
            return Some(Op::Upsert(rows));
        }
        job.cursor = 0;
        if job.multipliers.is_empty() {
            return None;
        }
        let per_record = MAX_RECORD / 4 / (MAX_NAME + 8);
        let rest = job.multipliers.len().saturating_sub(per_record);
        Some(Op::Multipliers(job.multipliers.split_off(rest)))
    }

    /// Ends a compaction whose chunks were all written (call it under the
    /// write lock): the edits logged since it began are copied behind the
    /// snapshot and the new log replaces the old one atomically. On any
    /// failure the old log stays, complete, and a later compaction may
    /// start. The old log's file is deleted when the returned value is
    /// dropped: drop it after releasing the lock.
    pub fn finish_compaction(&mut self, job: Compaction) -> Result<Retired> {
        self.compacting = false;
        if let Some(why) = &self.broken {
            job.writer.abandon();
            return Err(VisualError::Io(format!(
                "an edit failed to apply during the compaction ({why}); it was abandoned"
            )));
        }
        if job.cursor > 0 || !job.multipliers.is_empty() {
            job.writer.abandon();
            return Err(VisualError::InvalidInput(
                "a compaction was finished before its snapshot was written".into(),
            ));
        }
        let snapshot = job.writer.len();
        let retired = self.log.finish_rewrite(job.writer, job.from)?;
        self.compacted_bytes = snapshot;
        Ok(retired)
    }

    /// Ends a compaction without installing it (its temp file is removed).
    pub fn abandon_compaction(&mut self, job: Compaction) {
        self.compacting = false;
        job.writer.abandon();
    }

    /// Rewrites the log as the live state alone, in one go (atomically: a
    /// crash leaves the old log or the new one, both complete).
    pub fn compact(&mut self) -> Result<()> {
        let mut job = self.begin_compaction()?;
        while let Some(op) = self.compaction_chunk(&mut job) {
            if let Err(e) = job.write(&op) {
                self.abandon_compaction(job);
                return Err(e);
            }
        }
        self.finish_compaction(job).map(drop)
    }
}

/// Runs one compaction of a memory shared behind a (fair) `RwLock`, if it
/// [`DurableMemory::wants_compaction`]: begun and finished under the write
/// lock, each chunk copied under the read lock and written with no lock
/// held. `memory` hands out the memory for each step, or `None` once it is
/// gone (a server shutting down): the compaction then stops, and the next
/// open removes its temp file. Returns whether a new log was installed.
pub fn compact_shared<M>(memory: impl Fn() -> Option<M>) -> Result<bool>
where
    M: std::ops::Deref<Target = RwLock<DurableMemory>>,
{
    let Some(shared) = memory() else {
        return Ok(false);
    };
    let mut job = {
        let mut m = shared.write();
        if !m.wants_compaction() {
            return Ok(false);
        }
        m.begin_compaction()?
    };
    drop(shared);
    let written = loop {
        let Some(shared) = memory() else {
            return Ok(false);
        };
        let op = shared.read().compaction_chunk(&mut job);
        drop(shared);
        match op {
            Some(op) => {
                if let Err(e) = job.write(&op) {
                    break Err(e);
                }
            }
            None => break job.sync(),
        }
    };
    let Some(shared) = memory() else {
        return Ok(false);
    };
    let mut m = shared.write();
    match written {
        Ok(()) => {
            let retired = m.finish_compaction(job)?;
            drop(m);
            drop(retired);
            Ok(true)
        }
        Err(e) => {
            m.abandon_compaction(job);
            Err(e)
        }
    }
}
