//! The visual memory's write-ahead log: every edit is one binary record,
//! fsynced before the edit is applied and acknowledged, replayed on open.
//!
//! File `visual.log`: the magic `MNVMLOG1`, the embedding dimension (u32
//! LE), then records `[payload length u32][crc32 of payload u32][payload]`.
//! Binary rather than JSON because a record carries raw embeddings (5 kB
//! for 1280 floats instead of ~14 kB of text).
//!
//! A payload is a kind byte and a count, then: upserts (kind 5: id, label,
//! metadata as length-prefixed UTF-8, then `dim` f32 LE; kind 1, written
//! before metadata existed, lacks the metadata and is still read),
//! removals (kind 2: ids), multipliers (kind 4: id, f32).
//!
//! A crash can leave the last record half written: on open, a bad frame
//! with no valid frame after it is cut off (it was never acknowledged). A
//! bad frame followed by a valid one is corruption and refuses to open,
//! rather than silently dropping acknowledged edits.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mnemos_store::{frame_at, next_valid_frame};

use crate::codec::{decode, encode};
use crate::{Result, VisualError};

const MAGIC: &[u8; 8] = b"MNVMLOG1";
const HEADER: u64 = 12;
/// Longest id or label, in bytes.
pub const MAX_NAME: usize = 1024;
/// Largest record payload (a batch of upserts), in bytes.
pub(crate) const MAX_RECORD: usize = 256 << 20;
/// `[payload length u32][crc32 u32]` in front of every payload.
const FRAME_HEADER: usize = 8;
const READ_BUFFER: usize = 1 << 20;
const WRITE_BUFFER: usize = 1 << 20;

/// Longest metadata of one item (JSON text), in bytes.
pub const MAX_METADATA: usize = 64 << 10;

/// One stored item as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub label: String,
    /// L2-normalised, of the log's dimension.
    pub vector: Vec<f32>,
    /// The caller's metadata (JSON text), if any.
    pub metadata: Option<String>,
}

/// One logged edit.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Upsert(Vec<Row>),
    Remove(Vec<String>),
    /// Soft pruning's new vote multipliers.
    Multipliers(Vec<(String, f32)>),
}

/// The open log file.
#[derive(Debug)]
pub struct Log {
    file: File,
    path: PathBuf,
    dim: usize,
    len: u64,
    /// An append failed and its partial bytes could not be cut off: later
    /// appends would follow garbage, so every write is refused.
    poisoned: bool,
}

fn io(path: &Path, e: std::io::Error) -> VisualError {
    VisualError::Io(format!("{}: {e}", path.display()))
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> VisualError {
    VisualError::Corrupt(format!("{}: {what}", path.display()))
}

impl Log {
    /// Opens (or creates) `dir/visual.log` for embeddings of `dim`
    /// dimensions, handing each logged op to `replay` in order as it is
    /// read. The file is streamed, never held whole: at a million 1280-d
    /// items it is over 5 GB.
    ///
    /// If `replay` fails, or the log turns out corrupt after some ops were
    /// replayed, the error is returned and the caller must discard what it
    /// built.
    pub fn open(dir: &Path, dim: usize, mut replay: impl FnMut(Op) -> Result<()>) -> Result<Log> {
        let path = dir.join("visual.log");
        // A compaction that crashed before its rename leaves only this.
        let _ = std::fs::remove_file(temp_path(&path));
        // A log a compaction replaced, not yet deleted.
        let _ = std::fs::remove_file(retired_path(&path));
        if !path.exists() {
            let log = Self::create(&path, dim)?;
            sync_parent(&path)?;
            return Ok(log);
        }
        let file = File::open(&path).map_err(|e| io(&path, e))?;
        let size = file.metadata().map_err(|e| io(&path, e))?.len();
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        let mut header = [0u8; HEADER as usize];
        if size < HEADER || reader.read_exact(&mut header).is_err() || &header[..8] != MAGIC {
            return Err(corrupt(&path, "not a mnemos visual-memory log"));
        }
        let stored_dim = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
        if stored_dim != dim {
            return Err(VisualError::InvalidInput(format!(
                "{} holds {stored_dim}-dimensional embeddings, not {dim}",
                path.display()
            )));
        }
        let good = replay_frames(&mut reader, size, dim, &path, &mut replay)?;
        drop(reader);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        if good < size {
            tracing::warn!(
                path = %path.display(),
                cut = size - good,
                "cutting off a torn final record (never acknowledged)"
            );
            file.set_len(good)
                .and_then(|()| file.sync_all())
                .map_err(|e| io(&path, e))?;
        }
        Ok(Log {
            file,
            path,
            dim,
            len: good,
            poisoned: false,
        })
    }

    /// Writes an empty log atomically (temp file, fsync, rename; the caller
    /// fsyncs the directory).
    fn create(path: &Path, dim: usize) -> Result<Log> {
        LogWriter::create(path, dim)?.install(path, dim)
    }

    /// Appends `op` and fsyncs: when this returns, the edit survives a crash.
    pub fn append(&mut self, op: &Op) -> Result<()> {
        if self.poisoned {
            return Err(VisualError::Io(format!(
                "{}: an earlier write failed and could not be undone; reopen the memory",
                self.path.display()
            )));
        }
        let payload = encode(op);
        if payload.len() > MAX_RECORD {
            return Err(VisualError::InvalidInput(format!(
                "one edit may carry at most {} MiB",
                MAX_RECORD >> 20
            )));
        }
        let mut buf = Vec::with_capacity(payload.len() + 8);
        frame(&mut buf, &payload);
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Leave no partial record behind for later appends to follow,
            // nor for a replay after a crash: the cut is synced too.
            self.poisoned = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data())
                .is_err();
            return Err(io(&self.path, e));
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Bytes in the log, header included.
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Starts a new log beside this one (`visual.log.tmp`), to be filled
    /// while this one still takes appends and then installed by
    /// [`Log::finish_rewrite`].
    pub(crate) fn begin_rewrite(&self) -> Result<LogWriter> {
        if self.poisoned {
            return Err(VisualError::Io(format!(
                "{}: an earlier write failed; reopen the memory",
                self.path.display()
            )));
        }
        LogWriter::create(&self.path, self.dim)
    }

    /// Copies this log's records from byte `from` on (the edits appended
    /// since `writer` was begun) to the end of `writer`, and installs it as
    /// the log (fsync, rename, fsync of the directory). On failure the old
    /// log stays in place, complete, and the temp file is removed.
    ///
    /// The old log is kept under a second name and handed back: deleting
    /// a file of gigabytes takes the file system a while, which the caller
    /// need not spend holding a lock.
    pub(crate) fn finish_rewrite(&mut self, mut writer: LogWriter, from: u64) -> Result<Retired> {
        if self.poisoned || !(HEADER..=self.len).contains(&from) {
            writer.abandon();
            return Err(VisualError::Io(format!(
                "{}: the log changed under a compaction; it was abandoned",
                self.path.display()
            )));
        }
        if let Err(e) = writer.copy_records(&self.path, from, self.len - from) {
            writer.abandon();
            return Err(e);
        }
        let retired = retired_path(&self.path);
        let _ = std::fs::remove_file(&retired);
        // Without the link the rename deletes the old log itself.
        let kept = std::fs::hard_link(&self.path, &retired).is_ok();
        *self = writer.install(&self.path, self.dim)?;
        sync_parent(&self.path)?;
        Ok(Retired(kept.then_some(retired)))
    }
}

/// A log replaced by a compaction, deleted when this is dropped.
#[derive(Debug)]
pub struct Retired(Option<PathBuf>);

impl Drop for Retired {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A new log being written to `visual.log.tmp`, one record at a time.
#[derive(Debug)]
pub(crate) struct LogWriter {
    out: BufWriter<File>,
    tmp: PathBuf,
    len: u64,
}

impl LogWriter {
    /// Creates the temp file beside `path` and writes the header.
    fn create(path: &Path, dim: usize) -> Result<Self> {
        let tmp = temp_path(path);
        let file = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        let mut writer = LogWriter {
            out: BufWriter::with_capacity(WRITE_BUFFER, file),
            tmp,
            len: 0,
        };
        let header = [&MAGIC[..], &(dim as u32).to_le_bytes()].concat();
        if let Err(e) = writer.put(&header) {
            writer.abandon();
            return Err(e);
        }
        Ok(writer)
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Makes what was written so far durable, so that the fsync which
    /// installs the file (under the memory's write lock) has little left
    /// to write, and a long rewrite never piles up enough dirty pages to
    /// stall the live log's own fsyncs behind it.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.out
            .flush()
            .and_then(|()| self.out.get_ref().sync_data())
            .map_err(|e| io(&self.tmp, e))
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.len += bytes.len() as u64;
        self.out.write_all(bytes).map_err(|e| io(&self.tmp, e))
    }

    /// Appends `op` as one record (not yet durable).
    pub(crate) fn write(&mut self, op: &Op) -> Result<()> {
        let payload = encode(op);
        if payload.len() > MAX_RECORD {
            return Err(VisualError::InvalidInput(format!(
                "one log record may carry at most {} MiB",
                MAX_RECORD >> 20
            )));
        }
        self.put(&(payload.len() as u32).to_le_bytes())?;
        self.put(&crc32fast::hash(&payload).to_le_bytes())?;
        self.put(&payload)
    }

    /// Appends `n` bytes of whole records read from `path` at `from` (the
    /// records a live log took while this one was written).
    fn copy_records(&mut self, path: &Path, from: u64, n: u64) -> Result<()> {
        let copied = File::open(path)
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(from))?;
                std::io::copy(&mut f.take(n), &mut self.out)
            })
            .map_err(|e| io(path, e))?;
        self.len += copied;
        if copied != n {
            return Err(corrupt(path, format!("read {copied} of {n} bytes")));
        }
        Ok(())
    }

    /// Fsyncs the file and renames it to `path`. The append handle is
    /// opened on the temp file before the rename, so from the rename on it
    /// is the live log's, whatever fails after.
    fn install(self, path: &Path, dim: usize) -> Result<Log> {
        let LogWriter { out, tmp, len } = self;
        let synced = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all())
            .and_then(|()| OpenOptions::new().append(true).open(&tmp));
        let file = match synced {
            Ok(file) => file,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(&tmp, e));
            }
        };
        if let Err(e) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(path, e));
        }
        Ok(Log {
            file,
            path: path.to_path_buf(),
            dim,
            len,
            poisoned: false,
        })
    }

    /// Drops the temp file; the live log is untouched.
    pub(crate) fn abandon(self) {
        drop(self.out);
        let _ = std::fs::remove_file(&self.tmp);
    }
}

fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("log.tmp")
}

fn retired_path(path: &Path) -> PathBuf {
    path.with_extension("log.old")
}

/// Makes a rename in `path`'s directory durable.
fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, e)),
        None => Ok(()),
    }
}

fn frame(buf: &mut Vec<u8>, payload: &[u8]) {
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Reads the records after the header, handing each op to `replay`;
/// returns the length of the good prefix. Each frame is checked with the
/// document store's reader (`frame_at`), so the two logs agree on what is
/// a torn tail (no valid frame follows) and what is corruption. Only on a
/// bad frame is the rest of the file read at once, to look for a valid
/// frame after it.
fn replay_frames(
    reader: &mut impl Read,
    size: u64,
    dim: usize,
    path: &Path,
    replay: &mut impl FnMut(Op) -> Result<()>,
) -> Result<u64> {
    let mut at = HEADER;
    let mut frame = Vec::new();
    while at < size {
        let left = size - at;
        let mut whole = false;
        if left >= FRAME_HEADER as u64 {
            frame.resize(FRAME_HEADER, 0);
            reader.read_exact(&mut frame).map_err(|e| io(path, e))?;
            let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
            // Longer than any writer writes: a damaged length, not a record.
            if len <= MAX_RECORD && (FRAME_HEADER + len) as u64 <= left {
                frame.resize(FRAME_HEADER + len, 0);
                reader
                    .read_exact(&mut frame[FRAME_HEADER..])
                    .map_err(|e| io(path, e))?;
                whole = true;
            }
        }
        let payload = if whole {
            frame_at(&frame, 0).ok().map(|(payload, _)| payload)
        } else {
            None
        };
        let Some(payload) = payload else {
            let rest = read_from(path, at)?;
            let reason = frame_at(&rest, 0)
                .err()
                .unwrap_or("record longer than any write");
            if let Some(next) = next_valid_frame(&rest, 1) {
                return Err(corrupt(
                    path,
                    format!(
                        "{reason} at byte {at}, yet a valid record follows at byte {}",
                        at + next as u64
                    ),
                ));
            }
            break;
        };
        // A frame whose checksum holds was written whole: if it does not
        // decode, it is not a crash's doing.
        let op = decode(payload, dim)
            .ok_or_else(|| corrupt(path, format!("undecodable record at byte {at}")))?;
        replay(op)?;
        at += frame.len() as u64;
    }
    Ok(at)
}

/// The bytes of `path` from `offset` to its end.
fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>> {
    let mut file = File::open(path).map_err(|e| io(path, e))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io(path, e))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).map_err(|e| io(path, e))?;
    Ok(rest)
}
