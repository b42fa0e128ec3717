//! The on-disk form of a vector index: live vectors with their ids and seqs,
//! one file, checksummed. The graph itself is not stored; it is rebuilt on
//! open, so the file format does not depend on hnsw_rs's dump format (whose
//! loader exits the process on a truncated file).
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! magic     8 bytes  "MNHNSWV1"
//! version   u32      1
//! dim       u32
//! count     u64      number of records
//! records   count × { id_len u32, id (UTF-8), seq u64, dim × f32 }
//! crc32     u32      over every byte above
//! ```
//!
//! A write goes to a temporary name, is fsynced, renamed over the old file
//! and the directory fsynced, so a crash leaves either the old file or the
//! new one, never a mix.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mnemos_index_core::{IndexError, Result, Seq};

use crate::points::PointTable;

const FILE_NAME: &str = "vectors.mnhnsw";
const TEMP_NAME: &str = "vectors.mnhnsw.tmp";
const MAGIC: &[u8; 8] = b"MNHNSWV1";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8;
const CRC_LEN: usize = 4;

/// Where the index file of `dir` lives.
pub(crate) fn file_path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Removes a temporary file left by a write that crashed before its rename.
pub(crate) fn remove_stale_temp(dir: &Path) -> Result<()> {
    match fs::remove_file(dir.join(TEMP_NAME)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Atomically replaces the index file in `dir` with the live entries of
/// `table`. Durable when it returns.
pub(crate) fn write(dir: &Path, table: &PointTable, dim: usize) -> Result<()> {
    let temp = dir.join(TEMP_NAME);
    let mut out = ChecksumWriter {
        inner: BufWriter::with_capacity(1 << 20, File::create(&temp)?),
        crc: crc32fast::Hasher::new(),
    };
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    out.write_all(&u32_len(dim)?.to_le_bytes())?;
    out.write_all(&(table.live_count() as u64).to_le_bytes())?;
    let mut vector_bytes = Vec::with_capacity(dim * 4);
    for (id, seq, vector) in table.live_entries() {
        out.write_all(&u32_len(id.len())?.to_le_bytes())?;
        out.write_all(id.as_bytes())?;
        out.write_all(&seq.to_le_bytes())?;
        vector_bytes.clear();
        vector_bytes.extend(vector.iter().flat_map(|x| x.to_le_bytes()));
        out.write_all(&vector_bytes)?;
    }
    let crc = out.crc.finalize();
    let mut inner = out.inner;
    inner.write_all(&crc.to_le_bytes())?;
    let file = inner.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, file_path(dir))?;
    // The rename is only durable once the directory entry is.
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Reads the index file of `dir`: `Ok(None)` when there is none, a table of
/// its entries otherwise. Any damage is [`IndexError::Corrupt`]; a file
/// written for another dimension is [`IndexError::InvalidArgument`].
pub(crate) fn read(dir: &Path, dim: usize) -> Result<Option<PointTable>> {
    let bytes = match fs::read(file_path(dir)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    decode(&bytes, dim).map(Some)
}

fn decode(bytes: &[u8], dim: usize) -> Result<PointTable> {
    if bytes.len() < HEADER_LEN + CRC_LEN {
        return Err(corrupt(format!("file is {} bytes, too short", bytes.len())));
    }
    let (body, stored_crc) = bytes.split_at(bytes.len() - CRC_LEN);
    let mut reader = Reader { bytes: body };
    if reader.take(8)? != MAGIC {
        return Err(corrupt("not an mnemos-hnsw vector file".into()));
    }
    let version = reader.u32()?;
    if version != VERSION {
        return Err(corrupt(format!("unsupported file version {version}")));
    }
    let stored_crc = u32::from_le_bytes(stored_crc.try_into().map_err(|_| truncated())?);
    if crc32fast::hash(body) != stored_crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    let file_dim = reader.u32()? as usize;
    if file_dim != dim {
        return Err(IndexError::InvalidArgument(format!(
            "vector file has dimension {file_dim}, index is configured for {dim}"
        )));
    }
    let count = reader.u64()?;
    let record_min = 4 + 8 + 4 * dim;
    // A count that cannot fit in the file would otherwise allocate wildly.
    if count > (reader.bytes.len() / record_min) as u64 {
        return Err(corrupt(format!("record count {count} exceeds file size")));
    }
    let count = count as usize;
    let mut table = PointTable::with_capacity(dim, count);
    let mut seen = HashSet::with_capacity(count);
    let mut vector = vec![0.0f32; dim];
    for _ in 0..count {
        let id_len = reader.u32()? as usize;
        let id = std::str::from_utf8(reader.take(id_len)?)
            .map_err(|_| corrupt("id is not UTF-8".into()))?;
        let id: Arc<str> = Arc::from(id);
        let seq: Seq = reader.u64()?;
        for (x, raw) in vector.iter_mut().zip(reader.take(4 * dim)?.chunks_exact(4)) {
            *x = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        }
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(corrupt(format!("vector of {id:?} is not finite")));
        }
        if !seen.insert(Arc::clone(&id)) {
            return Err(corrupt(format!("id {id:?} appears twice")));
        }
        table.push(id, seq, &vector);
    }
    if !reader.bytes.is_empty() {
        return Err(corrupt(format!(
            "{} unexpected bytes after the last record",
            reader.bytes.len()
        )));
    }
    Ok(table)
}

fn u32_len(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length over u32"))
}

fn corrupt(message: String) -> IndexError {
    IndexError::Corrupt(format!("hnsw vector file: {message}"))
}

fn truncated() -> IndexError {
    corrupt("truncated".into())
}

/// Passes bytes through while computing their CRC32.
struct ChecksumWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for ChecksumWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.crc.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Bounds-checked little-endian reads; running out is a corrupt file.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if len > self.bytes.len() {
            return Err(truncated());
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32> {
        let raw = self.take(4)?;
        Ok(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PointTable {
        let mut table = PointTable::new(3);
        table.push(Arc::from("a"), 7, &[1.0, 0.0, 0.0]);
        table.push(Arc::from("dead"), 8, &[0.0, 1.0, 0.0]);
        table.push(Arc::from("ünï"), 9, &[0.0, 0.6, 0.8]);
        table.remove("dead");
        table
    }

    fn written() -> (tempfile::TempDir, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &sample(), 3).unwrap();
        let bytes = fs::read(file_path(dir.path())).unwrap();
        (dir, bytes)
    }

    fn assert_corrupt(result: Result<PointTable>) {
        match result {
            Err(IndexError::Corrupt(_)) => {}
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_keeps_live_entries_only() {
        let (dir, _) = written();
        let table = read(dir.path(), 3).unwrap().unwrap();
        assert_eq!(table.live_count(), 2);
        assert_eq!(table.dead_count(), 0);
        assert_eq!(table.get("a"), Some((7, &[1.0, 0.0, 0.0][..])));
        assert_eq!(table.get("ünï"), Some((9, &[0.0, 0.6, 0.8][..])));
        assert!(table.get("dead").is_none());
        assert!(!dir.path().join(TEMP_NAME).exists());
    }

    #[test]
    fn missing_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), 3).unwrap().is_none());
    }

    #[test]
    fn every_truncation_is_corrupt() {
        let (_dir, bytes) = written();
        for len in 0..bytes.len() {
            assert_corrupt(decode(&bytes[..len], 3));
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let (_dir, bytes) = written();
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            match decode(&damaged, 3) {
                Err(IndexError::Corrupt(_)) => {}
                // The dimension field is checked after the checksum, so a
                // flipped dim byte is caught as corruption, not a mismatch.
                other => panic!("byte {at}: expected Corrupt, got {other:?}"),
            }
        }
    }

    #[test]
    fn other_dimension_is_invalid_argument() {
        let (_dir, bytes) = written();
        assert!(matches!(
            decode(&bytes, 4),
            Err(IndexError::InvalidArgument(_))
        ));
    }

    #[test]
    fn trailing_garbage_with_valid_checksum_is_corrupt() {
        let (_dir, bytes) = written();
        let mut body = bytes[..bytes.len() - CRC_LEN].to_vec();
        body.extend_from_slice(b"xyz");
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        assert_corrupt(decode(&body, 3));
    }
}
