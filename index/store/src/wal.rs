//! The write-ahead log: one framed record per acknowledged write.
//!
//! File layout: an 8-byte magic ([`MAGIC`]), then records framed as
//! `[len: u32 LE][crc32(payload): u32 LE][payload: len bytes]`, where the
//! payload is the JSON of `{"seq": u64, "op": {"Upsert": {"docs": [...]}}}`
//! or `{"seq": u64, "op": {"Remove": {"ids": [...]}}}`. JSON keeps the log
//! readable with standard tools during an incident; its cost is small next
//! to the fsync every record pays. Seqs increase by exactly one per record,
//! so replay can tell a lost record or a lost snapshot from a clean log.
//!
//! Telling a torn write from corruption: a crash can only damage the record
//! being appended, which is the last one. So a bad frame is a torn tail when
//! no valid frame follows it anywhere in the file, and corruption otherwise,
//! because then acknowledged records lie behind it. "Anywhere" matters: a bit
//! flip in a length field must not make us skip over acknowledged records.
//! Scanning byte by byte cannot be fooled by payload bytes: JSON never
//! contains raw bytes below 0x20, so no small length field can appear inside
//! a payload.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mnemos_index_core::{Document, Seq};
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, StoreError};
use crate::files;

/// Name of the log inside the store directory.
pub(crate) const WAL_FILE: &str = "wal.log";

/// First bytes of every log; the trailing digit is the format version.
pub(crate) const MAGIC: &[u8; 8] = b"MNMSWAL1";

/// Bytes of `[len][crc]` in front of every payload.
const FRAME_HEADER: usize = 8;

/// A write, borrowed for encoding so a batch is never cloned to be logged.
#[derive(Serialize)]
pub(crate) enum OpRef<'a> {
    Upsert { docs: &'a [Document] },
    Remove { ids: &'a [String] },
}

#[derive(Serialize)]
struct RecordRef<'a> {
    seq: Seq,
    op: OpRef<'a>,
}

/// A write, decoded from the log.
#[derive(Debug, Deserialize)]
pub(crate) enum Op {
    Upsert { docs: Vec<Document> },
    Remove { ids: Vec<String> },
}

#[derive(Debug, Deserialize)]
pub(crate) struct Record {
    pub seq: Seq,
    pub op: Op,
}

/// The open log, positioned for appending. Owned by the store's write mutex.
pub(crate) struct Wal {
    path: PathBuf,
    file: File,
    len: u64,
    last_seq: Seq,
    fsync: bool,
    /// Set when the on-disk state is unknown (a failed fsync, or a failed
    /// rollback of a failed write); all later writes are refused.
    poisoned: bool,
}

impl Wal {
    /// Creates an empty log in `dir`. Going through a temp file and a rename
    /// means a crash can never leave a log with a partial magic.
    pub(crate) fn create(dir: &Path, last_seq: Seq, fsync: bool) -> Result<Wal> {
        let path = dir.join(WAL_FILE);
        let tmp = files::temp_path(&path);
        let file = files::write_temp(&tmp, fsync, |w| w.write_all(MAGIC))?;
        files::commit_rename(&tmp, &path, fsync)?;
        Ok(Wal {
            path,
            file,
            len: MAGIC.len() as u64,
            last_seq,
            fsync,
            poisoned: false,
        })
    }

    /// Opens the log in `dir`, hands every record with `seq > snapshot_seq`
    /// to `apply` in order, and truncates a torn tail.
    pub(crate) fn open(
        dir: &Path,
        snapshot_seq: Seq,
        fsync: bool,
        apply: impl FnMut(Record),
    ) -> Result<Wal> {
        let path = dir.join(WAL_FILE);
        let bytes = std::fs::read(&path).at(&path)?;
        let replayed = replay(&path, &bytes, snapshot_seq, apply)?;
        let mut file = OpenOptions::new().write(true).open(&path).at(&path)?;
        let valid_len = replayed.valid_len as u64;
        if valid_len < bytes.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                offset = valid_len,
                dropped_bytes = bytes.len() as u64 - valid_len,
                "truncating torn write at the end of the log",
            );
            file.set_len(valid_len).at(&path)?;
            if fsync {
                file.sync_all().at(&path)?;
            }
        }
        file.seek(SeekFrom::Start(valid_len)).at(&path)?;
        Ok(Wal {
            path,
            file,
            len: valid_len,
            last_seq: replayed.last_seq.max(snapshot_seq),
            fsync,
            poisoned: false,
        })
    }

    /// Bytes in the log file, magic included.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Seq of the newest write, logged or covered by the snapshot.
    pub(crate) fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// Whether an earlier failure made the log refuse writes.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Appends `op` under the next seq and, if the store fsyncs, makes it
    /// durable before returning that seq.
    pub(crate) fn append(&mut self, op: OpRef<'_>) -> Result<Seq> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        let seq = self.last_seq + 1;
        let frame = encode_frame(&RecordRef { seq, op })?;
        if let Err(source) = self.file.write_all(&frame) {
            self.roll_back();
            return Err(StoreError::Io {
                path: self.path.clone(),
                source,
            });
        }
        if self.fsync {
            if let Err(source) = self.file.sync_data() {
                // After a failed fsync the kernel may have dropped the dirty
                // pages; what is on disk is unknowable, so stop writing.
                self.poisoned = true;
                return Err(StoreError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        }
        self.len += frame.len() as u64;
        self.last_seq = seq;
        Ok(seq)
    }

    /// Cuts off what a failed write may have left behind, so the next record
    /// does not land after garbage (which would read as corruption at open).
    fn roll_back(&mut self) {
        let restored = self
            .file
            .set_len(self.len)
            .and_then(|()| self.file.seek(SeekFrom::Start(self.len)).map(|_| ()));
        if restored.is_err() {
            self.poisoned = true;
        }
    }

    /// Replaces the log with one that holds only the bytes from `offset` on
    /// (the records newer than a snapshot just written). The new file is
    /// written aside and renamed over the old one; its handle becomes the
    /// append handle, so no write can land in the replaced file.
    pub(crate) fn keep_from(&mut self, offset: u64) -> Result<()> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        let tail = self.read_range(offset)?;
        let tmp = files::temp_path(&self.path);
        let file = files::write_temp(&tmp, self.fsync, |w| {
            w.write_all(MAGIC)?;
            w.write_all(&tail)
        })?;
        std::fs::rename(&tmp, &self.path).at(&self.path)?;
        self.file = file;
        self.len = (MAGIC.len() + tail.len()) as u64;
        if self.fsync {
            if let Some(dir) = self.path.parent() {
                if let Err(e) = files::sync_dir(dir) {
                    // The rename may not survive a power loss, and records
                    // appended to the new file would vanish with it.
                    self.poisoned = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn read_range(&self, offset: u64) -> Result<Vec<u8>> {
        let start = offset.clamp(MAGIC.len() as u64, self.len);
        let mut reader = File::open(&self.path).at(&self.path)?;
        reader.seek(SeekFrom::Start(start)).at(&self.path)?;
        let mut tail = Vec::new();
        reader
            .take(self.len - start)
            .read_to_end(&mut tail)
            .at(&self.path)?;
        Ok(tail)
    }
}

fn encode_frame(record: &RecordRef<'_>) -> Result<Vec<u8>> {
    let mut frame = vec![0u8; FRAME_HEADER];
    serde_json::to_writer(&mut frame, record).map_err(|e| StoreError::Encode(e.to_string()))?;
    let payload_len = frame.len() - FRAME_HEADER;
    let len = u32::try_from(payload_len)
        .map_err(|_| StoreError::RecordTooLarge { bytes: payload_len })?;
    let crc = crc32fast::hash(&frame[FRAME_HEADER..]);
    frame[..4].copy_from_slice(&len.to_le_bytes());
    frame[4..FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(frame)
}

/// What replaying a log found.
#[derive(Debug)]
pub(crate) struct Replayed {
    /// Length of the prefix made of whole, valid records.
    pub valid_len: usize,
    /// Seq of the last record, 0 if none.
    pub last_seq: Seq,
}

/// Decodes every record of `bytes` in order, passes those newer than
/// `snapshot_seq` to `apply`, and reports where the valid prefix ends.
pub(crate) fn replay(
    path: &Path,
    bytes: &[u8],
    snapshot_seq: Seq,
    mut apply: impl FnMut(Record),
) -> Result<Replayed> {
    let corrupt = |offset: usize, reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if !bytes.starts_with(MAGIC) {
        return Err(corrupt(0, "not a mnemos write-ahead log".into()));
    }
    let mut offset = MAGIC.len();
    let mut last_seq: Seq = 0;
    while offset < bytes.len() {
        let (payload, end) = match frame_at(bytes, offset) {
            Ok(frame) => frame,
            Err(reason) => match next_valid_frame(bytes, offset + 1) {
                Some(next) => {
                    return Err(corrupt(
                        offset,
                        format!("{reason}, yet a valid record follows at byte {next}"),
                    ))
                }
                None => break,
            },
        };
        let record: Record = serde_json::from_slice(payload)
            .map_err(|e| corrupt(offset, format!("undecodable record: {e}")))?;
        // Every write takes the next seq and a failed append gives its seq
        // back, so seqs have no gaps. A gap means records were lost: before
        // the first record, only those the snapshot covers may be missing.
        let expected = if last_seq == 0 {
            1..=snapshot_seq + 1
        } else {
            last_seq + 1..=last_seq + 1
        };
        if !expected.contains(&record.seq) {
            return Err(corrupt(
                offset,
                format!(
                    "seq {} where {}..={} was expected (snapshot covers {snapshot_seq})",
                    record.seq,
                    expected.start(),
                    expected.end()
                ),
            ));
        }
        last_seq = record.seq;
        if record.seq > snapshot_seq {
            apply(record);
        }
        offset = end;
    }
    Ok(Replayed {
        valid_len: offset,
        last_seq,
    })
}

/// The payload and end offset of the `[len u32][crc32 u32][payload]` frame
/// at `offset`, or why there is no valid frame there. Shared with other
/// logs of the same framing (the visual memory's).
pub fn frame_at(bytes: &[u8], offset: usize) -> std::result::Result<(&[u8], usize), &'static str> {
    let header = bytes
        .get(offset..offset + FRAME_HEADER)
        .ok_or("short record header")?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 {
        // Payloads are never empty; zeros are what an extended but unwritten
        // tail of a file reads as after a crash.
        return Err("empty record");
    }
    let start = offset + FRAME_HEADER;
    let payload = bytes
        .get(start..start + len)
        .ok_or("record runs past the end of the file")?;
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    Ok((payload, start + len))
}

/// The first offset at or after `from` where a valid frame starts: a bad
/// frame with a valid one after it is corruption, not a torn tail.
pub fn next_valid_frame(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(FRAME_HEADER)).find(|&p| frame_at(bytes, p).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(records: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        for r in records {
            bytes.extend_from_slice(r);
        }
        bytes
    }

    fn remove(seq: Seq, id: &str) -> Vec<u8> {
        let ids = [id.to_string()];
        encode_frame(&RecordRef {
            seq,
            op: OpRef::Remove { ids: &ids },
        })
        .expect("encodes")
    }

    fn seqs(bytes: &[u8], snapshot_seq: Seq) -> Result<(Vec<Seq>, Replayed)> {
        let mut seen = Vec::new();
        let r = replay(Path::new("wal"), bytes, snapshot_seq, |rec| {
            seen.push(rec.seq)
        })?;
        Ok((seen, r))
    }

    #[test]
    fn replays_in_order_and_skips_what_the_snapshot_covers() {
        let bytes = log_of(&[remove(1, "a"), remove(2, "b"), remove(3, "c")]);
        let (seen, r) = seqs(&bytes, 2).expect("valid log");
        assert_eq!(seen, vec![3]);
        assert_eq!(r.valid_len, bytes.len());
        assert_eq!(r.last_seq, 3);
        // A trimmed log starts right after the snapshot.
        let trimmed = log_of(&[remove(3, "c"), remove(4, "d")]);
        assert_eq!(seqs(&trimmed, 2).expect("valid log").0, vec![3, 4]);
    }

    #[test]
    fn zeroed_tail_is_torn_not_corrupt() {
        let mut bytes = log_of(&[remove(1, "a")]);
        let good = bytes.len();
        bytes.extend_from_slice(&[0u8; 4096]);
        let (seen, r) = seqs(&bytes, 0).expect("torn tail is recoverable");
        assert_eq!((seen, r.valid_len), (vec![1], good));
    }

    #[test]
    fn damaged_length_before_valid_records_is_corrupt() {
        let mut bytes = log_of(&[remove(1, "a"), remove(2, "b")]);
        // Make the first record claim to run past the end of the file.
        bytes[MAGIC.len() + 3] = 0x7f;
        let err = seqs(&bytes, 0).expect_err("must not skip record 2");
        assert!(
            matches!(err, StoreError::Corrupt { offset: 8, .. }),
            "{err}"
        );
    }

    #[test]
    fn seqs_must_follow_each_other_without_gaps() {
        for (log, snapshot_seq) in [
            (log_of(&[remove(1, "a"), remove(1, "b")]), 0),
            (log_of(&[remove(1, "a"), remove(3, "b")]), 0),
            // Records 1..=4 were in a snapshot that is gone.
            (log_of(&[remove(5, "a")]), 0),
            (log_of(&[remove(5, "a")]), 3),
        ] {
            let result = seqs(&log, snapshot_seq);
            assert!(
                matches!(result, Err(StoreError::Corrupt { .. })),
                "{result:?}"
            );
        }
    }

    #[test]
    fn foreign_file_is_rejected() {
        assert!(matches!(
            seqs(b"hello world", 0),
            Err(StoreError::Corrupt { offset: 0, .. })
        ));
    }
}
