//! The document store: the durable source of truth every mnemos index is
//! rebuilt from.
//!
//! # Guarantees
//!
//! When [`Store::upsert`] or [`Store::remove`] returns `Ok`, the write is in
//! the write-ahead log and fsynced (with [`StoreOptions::fsync`] on), and it
//! is visible to every read. A removed id is never returned again (until it
//! is upserted anew), also after a restart or a `kill -9` right after the
//! call returned. Each write gets the
//! next [`Seq`]; indexes record it per document so that, at start-up, the
//! engine can compare their [`IndexWrite::indexed_versions`] with
//! [`Store::versions`] and re-feed only what they miss.
//!
//! # Design
//!
//! All live documents are held in memory, in a map behind an `RwLock`, so
//! reads never touch the disk and never wait for an fsync. Writes are
//! serialized by a mutex around the log: encode → append → fsync → apply to
//! the map → return. Applying while still holding the log mutex keeps the
//! map and the log in the same order, which is what lets compaction take a
//! consistent cut with one lock.
//!
//! On disk (`src/wal.rs` and `src/snapshot.rs` document the formats) a
//! directory holds:
//! - `wal.log`: one framed, checksummed record per write;
//! - `snapshot-<seq>.arrow`: every live document as of `seq`, in Arrow IPC;
//! - `LOCK`: locked while a store has the directory open.
//!
//! [`Store::compact`] writes a new snapshot and then rewrites the log without
//! the records it covers. Every step is a temp file, an fsync and an atomic
//! rename, and replay skips log records the snapshot covers, so a crash at
//! any point reopens to exactly the acknowledged writes.
//!
//! [`IndexWrite::indexed_versions`]: mnemos_index_core::IndexWrite::indexed_versions

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

// Fair: std's RwLock lets back-to-back searches starve a write for seconds.
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use mnemos_index_core::{Document, Seq};

mod error;
mod files;
mod id;
mod snapshot;
mod wal;

pub use error::{Result, StoreError};
pub use id::{validate_id, MAX_ID_BYTES};
pub use wal::{frame_at, next_valid_frame};
use wal::{Op, OpRef, Wal};

/// How a [`Store`] trades durability for speed, and when it compacts.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// fsync the log before acknowledging a write (and every file and
    /// directory that compaction replaces). Turn off only for bulk loads and
    /// tests: without it a power loss can lose acknowledged writes, although
    /// a process crash still cannot.
    pub fsync: bool,
    /// Compact once the log grows past this many bytes. Replay at start-up
    /// reads the whole log, so this bounds restart time.
    pub compact_after_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            fsync: true,
            compact_after_bytes: 64 << 20,
        }
    }
}

/// A document's current version: the write that produced it.
type Entry = (Arc<Document>, Seq);

/// The durable document store. `Send + Sync`: share it behind an `Arc`.
pub struct Store {
    dir: PathBuf,
    opts: StoreOptions,
    docs: RwLock<HashMap<String, Entry>>,
    /// The log. Held for the whole of each write, so it also orders them.
    wal: Mutex<Wal>,
    /// Seq of the newest applied write, readable without waiting for the log
    /// mutex, which is held across every fsync. Stored before the map's write
    /// lock is released, so no reader sees a version newer than it.
    last_seq: AtomicU64,
    /// Serializes compactions; holds the seq of the newest durable snapshot
    /// (0 when there is none).
    compaction: Mutex<Seq>,
    /// Keeps the directory locked until the store is dropped.
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("documents", &self.len())
            .field("last_seq", &self.last_seq())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in `dir`, creating the directory and an empty store if
    /// needed. Loads the newest snapshot, replays the log on top of it, and
    /// truncates a torn record at the end of the log (the only damage a crash
    /// can do). Any other damage is [`StoreError::Corrupt`]: the store refuses
    /// to open rather than silently drop acknowledged writes.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store> {
        files::ensure_dir(dir, opts.fsync)?;
        let lock = files::lock_dir(dir)?;
        files::remove_temp_files(dir)?;

        let snapshots = snapshot::list(dir)?;
        let mut docs = HashMap::new();
        let snapshot_seq = match snapshots.last() {
            Some((seq, path)) => {
                snapshot::read(path, *seq, |doc, version| {
                    docs.insert(doc.id.clone(), (Arc::new(doc), version));
                })?;
                *seq
            }
            None => 0,
        };

        let wal_path = dir.join(wal::WAL_FILE);
        let wal = if wal_path.try_exists().map_err(|source| StoreError::Io {
            path: wal_path.clone(),
            source,
        })? {
            Wal::open(dir, snapshot_seq, opts.fsync, |record| {
                apply(&mut docs, record.op, record.seq)
            })?
        } else if snapshot_seq > 0 {
            // The log is replaced by rename, never deleted; a snapshot without
            // one means files were lost, and with them maybe acknowledged
            // writes.
            return Err(StoreError::Corrupt {
                path: wal_path,
                offset: 0,
                reason: "missing, but a snapshot exists".into(),
            });
        } else {
            Wal::create(dir, 0, opts.fsync)?
        };
        // Leftovers of a compaction that crashed before its clean-up.
        snapshot::remove_older_than(dir, snapshot_seq)?;

        tracing::info!(
            dir = %dir.display(),
            documents = docs.len(),
            last_seq = wal.last_seq(),
            snapshot_seq,
            wal_bytes = wal.len(),
            "document store opened",
        );
        Ok(Store {
            dir: dir.to_path_buf(),
            opts,
            docs: RwLock::new(docs),
            last_seq: AtomicU64::new(wal.last_seq()),
            wal: Mutex::new(wal),
            compaction: Mutex::new(snapshot_seq),
            _lock: lock,
        })
    }

    /// Inserts or replaces `docs` as one write and returns its seq, which
    /// becomes every document's version. Durable and visible when this
    /// returns. Either the whole batch is applied or none of it: every id is
    /// checked ([`validate_id`]) before anything is written. Within a batch
    /// the last document with a given id wins. An empty batch writes nothing
    /// and returns [`Store::last_seq`].
    pub fn upsert(&self, docs: Vec<Document>) -> Result<Seq> {
        for doc in &docs {
            validate_id(&doc.id)?;
        }
        let docs = last_wins(docs);
        let mut wal = self.lock_wal()?;
        if docs.is_empty() {
            return Ok(wal.last_seq());
        }
        let seq = wal.append(OpRef::Upsert { docs: &docs })?;
        let mut map = self.write_docs();
        apply(&mut map, Op::Upsert { docs }, seq);
        self.last_seq.store(seq, Ordering::Release);
        drop(map);
        let wal_bytes = wal.len();
        drop(wal);
        self.compact_if_due(wal_bytes);
        Ok(seq)
    }

    /// Removes the given ids as one write. Returns the ids that existed (and
    /// so were removed), each once, and the write's seq. Ids that do not
    /// exist are ignored; when none exists nothing is written and the seq is
    /// [`Store::last_seq`]. Durable and invisible to reads when this returns.
    pub fn remove(&self, ids: &[String]) -> Result<(Vec<String>, Seq)> {
        let mut wal = self.lock_wal()?;
        let removed: Vec<String> = {
            let docs = self.read_docs();
            let mut seen = HashSet::new();
            ids.iter()
                .filter(|id| docs.contains_key(*id) && seen.insert(id.as_str()))
                .cloned()
                .collect()
        };
        if removed.is_empty() {
            return Ok((removed, wal.last_seq()));
        }
        let seq = wal.append(OpRef::Remove { ids: &removed })?;
        let mut docs = self.write_docs();
        for id in &removed {
            docs.remove(id);
        }
        self.last_seq.store(seq, Ordering::Release);
        drop(docs);
        let wal_bytes = wal.len();
        drop(wal);
        self.compact_if_due(wal_bytes);
        Ok((removed, seq))
    }

    /// The current version of `id` and the seq that wrote it.
    pub fn get(&self, id: &str) -> Option<(Arc<Document>, Seq)> {
        self.read_docs().get(id).cloned()
    }

    /// The seq that wrote the current version of `id`.
    pub fn version(&self, id: &str) -> Option<Seq> {
        self.read_docs().get(id).map(|(_, seq)| *seq)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.read_docs().contains_key(id)
    }

    /// Number of live documents.
    pub fn len(&self) -> usize {
        self.read_docs().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Seq of the newest acknowledged write; 0 for a store never written.
    pub fn last_seq(&self) -> Seq {
        self.last_seq.load(Ordering::Acquire)
    }

    /// id → version of every live document, for reconciling indexes at
    /// start-up.
    pub fn versions(&self) -> HashMap<String, Seq> {
        let docs = self.read_docs();
        docs.iter()
            .map(|(id, (_, seq))| (id.clone(), *seq))
            .collect()
    }

    /// Every live document with its version, ordered by id so that rebuilds
    /// are deterministic.
    pub fn documents(&self) -> Vec<(Arc<Document>, Seq)> {
        let mut all: Vec<Entry> = self.read_docs().values().cloned().collect();
        all.sort_unstable_by(|a, b| a.0.id.cmp(&b.0.id));
        all
    }

    /// Writes a snapshot of the current state, then rewrites the log keeping
    /// only the records written since. Writes wait only while the state is
    /// cut and while the (short) rest of the log is copied, not while the
    /// snapshot is written.
    pub fn compact(&self) -> Result<()> {
        let mut snapshot_seq = self
            .compaction
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.compact_locked(&mut snapshot_seq)
    }

    /// Size of the log file in bytes.
    pub fn wal_bytes(&self) -> u64 {
        self.wal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn compact_locked(&self, snapshot_seq: &mut Seq) -> Result<()> {
        // A consistent cut: with the log locked no write is in flight, so
        // the map holds exactly the writes up to `cut_seq`, and every record
        // before `cut_offset` has a seq <= `cut_seq`.
        let (cut_seq, cut_offset, mut docs) = {
            let wal = self.lock_wal()?;
            if wal.is_poisoned() {
                return Err(StoreError::Poisoned);
            }
            let docs: Vec<Entry> = self.read_docs().values().cloned().collect();
            (wal.last_seq(), wal.len(), docs)
        };
        if cut_seq == *snapshot_seq && cut_offset == wal::MAGIC.len() as u64 {
            return Ok(());
        }
        if cut_seq > *snapshot_seq {
            docs.sort_unstable_by(|a, b| a.0.id.cmp(&b.0.id));
            let path = snapshot::write(&self.dir, cut_seq, &docs, self.opts.fsync)?;
            tracing::info!(path = %path.display(), documents = docs.len(), "wrote snapshot");
            *snapshot_seq = cut_seq;
        }
        drop(docs);
        self.lock_wal()?.keep_from(cut_offset)?;
        snapshot::remove_older_than(&self.dir, cut_seq)
    }

    /// Compacts inline once the log is past its budget, unless another
    /// compaction is already running. The write that triggered it is durable
    /// already, so a failure is logged rather than returned.
    fn compact_if_due(&self, wal_bytes: u64) {
        if wal_bytes <= self.opts.compact_after_bytes {
            return;
        }
        let Ok(mut snapshot_seq) = self.compaction.try_lock() else {
            return;
        };
        if let Err(error) = self.compact_locked(&mut snapshot_seq) {
            tracing::warn!(%error, dir = %self.dir.display(), "automatic compaction failed");
        }
    }

    /// The log, or [`StoreError::Poisoned`] if a writer panicked while
    /// holding it (the log's position may no longer match the file).
    fn lock_wal(&self) -> Result<MutexGuard<'_, Wal>> {
        self.wal.lock().map_err(|_| StoreError::Poisoned)
    }

    // The map is only changed by whole `apply` calls that cannot panic
    // halfway through a write in a way that matters (a panic inside would be
    // an allocation failure), so a poisoned lock still guards a usable map.
    fn read_docs(&self) -> RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.docs.read()
    }

    fn write_docs(&self) -> RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.docs.write()
    }
}

/// Applies one logged write to the map; shared by live writes and replay so
/// both interpret a record identically.
fn apply(docs: &mut HashMap<String, Entry>, op: Op, seq: Seq) {
    match op {
        Op::Upsert { docs: batch } => {
            for doc in batch {
                docs.insert(doc.id.clone(), (Arc::new(doc), seq));
            }
        }
        Op::Remove { ids } => {
            for id in ids {
                docs.remove(&id);
            }
        }
    }
}

/// Drops earlier duplicates of an id, keeping each id's last document at the
/// position of its first, so the logged batch is what the map ends up with.
fn last_wins(docs: Vec<Document>) -> Vec<Document> {
    let mut position: HashMap<String, usize> = HashMap::with_capacity(docs.len());
    let mut kept: Vec<Document> = Vec::with_capacity(docs.len());
    for doc in docs {
        match position.get(&doc.id) {
            Some(&at) => kept[at] = doc,
            None => {
                position.insert(doc.id.clone(), kept.len());
                kept.push(doc);
            }
        }
    }
    kept
}
