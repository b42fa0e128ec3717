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
        if !path.exists() {
            let log = Self::create(&path, dim, std::iter::empty())?;
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

    /// Writes a new log holding `ops` atomically (temp file, fsync, rename,
    /// fsync of the directory), for creation and compaction. Ops are
    /// encoded and written one at a time, so a snapshot of a large memory
    /// is never held in memory whole. The append handle is opened on the
    /// temp file before the rename, so from the rename on it is the live
    /// log's, whatever fails after.
    fn create(path: &Path, dim: usize, ops: impl IntoIterator<Item = Op>) -> Result<Log> {
        let tmp = temp_path(path);
        let written = write_log(&tmp, dim, ops);
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let file = OpenOptions::new()
            .append(true)
            .open(&tmp)
            .map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
        Ok(Log {
            file,
            path: path.to_path_buf(),
            dim,
            len,
            poisoned: false,
        })
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

    /// Replaces the log by one holding just `ops` (the live state). Once
    /// the rename is done this handle appends to the new file, even if the
    /// directory fsync then fails.
    pub fn rewrite(&mut self, ops: impl IntoIterator<Item = Op>) -> Result<()> {
        *self = Self::create(&self.path, self.dim, ops)?;
        sync_parent(&self.path)
    }
}

fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("log.tmp")
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

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn encode(op: &Op) -> Vec<u8> {
    let mut b = Vec::new();
    match op {
        Op::Upsert(items) => {
            // Kind 1 was the same without metadata; it is still read.
            b.push(5);
            b.extend_from_slice(&(items.len() as u32).to_le_bytes());
            for row in items {
                put_str(&mut b, &row.id);
                put_str(&mut b, &row.label);
                put_str(&mut b, row.metadata.as_deref().unwrap_or(""));
                for x in &row.vector {
                    b.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        Op::Remove(ids) => {
            b.push(2);
            b.extend_from_slice(&(ids.len() as u32).to_le_bytes());
            for id in ids {
                put_str(&mut b, id);
            }
        }
        Op::Multipliers(ms) => {
            b.push(4);
            b.extend_from_slice(&(ms.len() as u32).to_le_bytes());
            for (id, m) in ms {
                put_str(&mut b, id);
                b.extend_from_slice(&m.to_le_bytes());
            }
        }
    }
    b
}

/// Writes header and framed `ops` to `path` and fsyncs it; returns its
/// length.
fn write_log(path: &Path, dim: usize, ops: impl IntoIterator<Item = Op>) -> Result<u64> {
    let file = File::create(path).map_err(|e| io(path, e))?;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut len = 0u64;
    let mut put = |bytes: &[u8]| {
        len += bytes.len() as u64;
        out.write_all(bytes).map_err(|e| io(path, e))
    };
    put(MAGIC)?;
    put(&(dim as u32).to_le_bytes())?;
    for op in ops {
        let payload = encode(&op);
        if payload.len() > MAX_RECORD {
            return Err(VisualError::InvalidInput(format!(
                "one log record may carry at most {} MiB",
                MAX_RECORD >> 20
            )));
        }
        put(&(payload.len() as u32).to_le_bytes())?;
        put(&crc32fast::hash(&payload).to_le_bytes())?;
        put(&payload)?;
    }
    let file = out.into_inner().map_err(|e| io(path, e.into_error()))?;
    file.sync_all().map_err(|e| io(path, e))?;
    Ok(len)
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

/// A cursor over a payload; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn f32(&mut self) -> Option<f32> {
        self.take(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn string(&mut self) -> Option<String> {
        self.string_up_to(MAX_NAME)
    }

    fn string_up_to(&mut self, max: usize) -> Option<String> {
        let n = self.u32()? as usize;
        if n > max {
            return None;
        }
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn decode(payload: &[u8], dim: usize) -> Option<Op> {
    let (&kind, rest) = payload.split_first()?;
    let mut r = Reader(rest);
    let op = match kind {
        1 | 5 => {
            let n = r.u32()? as usize;
            let mut items = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let id = r.string()?;
                let label = r.string()?;
                let metadata = if kind == 5 {
                    r.string_up_to(MAX_METADATA)?
                } else {
                    String::new()
                };
                let vector = (0..dim).map(|_| r.f32()).collect::<Option<Vec<f32>>>()?;
                items.push(Row {
                    id,
                    label,
                    vector,
                    metadata: (!metadata.is_empty()).then_some(metadata),
                });
            }
            Op::Upsert(items)
        }
        2 => {
            let n = r.u32()? as usize;
            Op::Remove((0..n).map(|_| r.string()).collect::<Option<_>>()?)
        }
        4 => {
            let n = r.u32()? as usize;
            Op::Multipliers(
                (0..n)
                    .map(|_| Some((r.string()?, r.f32()?)))
                    .collect::<Option<_>>()?,
            )
        }
        _ => return None,
    };
    r.0.is_empty().then_some(op)
}
