//! The visual memory's write-ahead log: every edit is one binary record,
//! fsynced before the edit is applied and acknowledged, replayed on open.
//!
//! File `visual.log`: the magic `MNVMLOG1`, the embedding dimension (u32
//! LE), then records `[payload length u32][crc32 of payload u32][payload]`.
//! Binary rather than JSON because a record carries raw embeddings (5 kB
//! for 1280 floats instead of ~14 kB of text).
//!
//! A crash can leave the last record half written: on open, a bad frame
//! with no valid frame after it is cut off (it was never acknowledged). A
//! bad frame followed by a valid one is corruption and refuses to open,
//! rather than silently dropping acknowledged edits.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use mnemos_store::{frame_at, next_valid_frame};

use crate::{Result, VisualError};

const MAGIC: &[u8; 8] = b"MNVMLOG1";
const HEADER: u64 = 12;
/// Longest id or label, in bytes.
pub const MAX_NAME: usize = 1024;
/// Largest record payload (a batch of upserts), in bytes.
const MAX_RECORD: usize = 256 << 20;

/// One logged edit.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Upsert(Vec<(String, String, Vec<f32>)>),
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
    /// dimensions and returns it with the ops to replay.
    pub fn open(dir: &Path, dim: usize) -> Result<(Log, Vec<Op>)> {
        let path = dir.join("visual.log");
        // A compaction that crashed before its rename leaves only this.
        let _ = std::fs::remove_file(temp_path(&path));
        if !path.exists() {
            let log = Self::create(&path, dim, &[])?;
            sync_parent(&path)?;
            return Ok((log, Vec::new()));
        }
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io(&path, e))?;
        if bytes.len() < HEADER as usize || &bytes[..8] != MAGIC {
            return Err(corrupt(&path, "not a mnemos visual-memory log"));
        }
        let stored_dim = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        if stored_dim != dim {
            return Err(VisualError::InvalidInput(format!(
                "{} holds {stored_dim}-dimensional embeddings, not {dim}",
                path.display()
            )));
        }
        let (ops, good) = parse(&bytes, dim, &path)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        if good < bytes.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                cut = bytes.len() as u64 - good,
                "cutting off a torn final record (never acknowledged)"
            );
            file.set_len(good)
                .and_then(|()| file.sync_all())
                .map_err(|e| io(&path, e))?;
        }
        Ok((
            Log {
                file,
                path,
                dim,
                len: good,
                poisoned: false,
            },
            ops,
        ))
    }

    /// Writes a new log holding `ops` atomically (temp file, fsync, rename,
    /// fsync of the directory), for creation and compaction. The append
    /// handle is opened on the temp file before the rename, so from the
    /// rename on it is the live log's, whatever fails after.
    fn create(path: &Path, dim: usize, ops: &[Op]) -> Result<Log> {
        let tmp = temp_path(path);
        let mut buf = Vec::with_capacity(HEADER as usize);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&(dim as u32).to_le_bytes());
        for op in ops {
            frame(&mut buf, &encode(op));
        }
        std::fs::write(&tmp, &buf)
            .and_then(|()| File::open(&tmp)?.sync_all())
            .map_err(|e| io(&tmp, e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&tmp)
            .map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
        Ok(Log {
            file,
            path: path.to_path_buf(),
            dim,
            len: buf.len() as u64,
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
            // Leave no partial record behind for later appends to follow.
            self.poisoned = self.file.set_len(self.len).is_err();
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
    pub fn rewrite(&mut self, ops: &[Op]) -> Result<()> {
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
            b.push(1);
            b.extend_from_slice(&(items.len() as u32).to_le_bytes());
            for (id, label, v) in items {
                put_str(&mut b, id);
                put_str(&mut b, label);
                for x in v {
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

/// Parses every record; returns the ops and the length of the good prefix.
/// Frames are read with the document store's reader, so the two logs agree
/// on what is a torn tail (no valid frame follows) and what is corruption.
fn parse(bytes: &[u8], dim: usize, path: &Path) -> Result<(Vec<Op>, u64)> {
    let mut ops = Vec::new();
    let mut at = HEADER as usize;
    while at < bytes.len() {
        let (payload, end) = match frame_at(bytes, at) {
            Ok(frame) => frame,
            Err(reason) => match next_valid_frame(bytes, at + 1) {
                Some(next) => {
                    return Err(corrupt(
                        path,
                        format!("{reason} at byte {at}, yet a valid record follows at byte {next}"),
                    ))
                }
                None => break,
            },
        };
        // A frame whose checksum holds was written whole: if it does not
        // decode, it is not a crash's doing.
        let op = decode(payload, dim)
            .ok_or_else(|| corrupt(path, format!("undecodable record at byte {at}")))?;
        ops.push(op);
        at = end;
    }
    Ok((ops, at as u64))
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
        let n = self.u32()? as usize;
        if n > MAX_NAME {
            return None;
        }
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn decode(payload: &[u8], dim: usize) -> Option<Op> {
    let (&kind, rest) = payload.split_first()?;
    let mut r = Reader(rest);
    let op = match kind {
        1 => {
            let n = r.u32()? as usize;
            let mut items = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let id = r.string()?;
                let label = r.string()?;
                let v = (0..dim).map(|_| r.f32()).collect::<Option<Vec<f32>>>()?;
                items.push((id, label, v));
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
