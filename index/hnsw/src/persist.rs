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

use std::io::Write;
use std::path::{Path, PathBuf};

use mnemos_index_core::codec::{self, FileKind};
use mnemos_index_core::{IndexError, Result};

use crate::points::PointTable;

const FILE_NAME: &str = "vectors.mnhnsw";
const FILE: FileKind = FileKind {
    label: "hnsw vector file",
    description: "an mnemos-hnsw vector file",
    magic: b"MNHNSWV1",
    version: 1,
    header_len: 8 + 4 + 4 + 8,
};

/// Where the index file of `dir` lives.
pub(crate) fn file_path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Removes a temporary file left by a write that crashed before its rename.
pub(crate) fn remove_stale_temp(dir: &Path) -> Result<()> {
    codec::remove_stale_temp(&file_path(dir))
}

/// Atomically replaces the index file in `dir` with the live entries of
/// `table`. Durable when it returns.
pub(crate) fn write(dir: &Path, table: &PointTable, dim: usize) -> Result<()> {
    codec::write_atomically(&file_path(dir), |out| {
        FILE.write_magic(out)?;
        out.write_all(&codec::u32_len(dim)?.to_le_bytes())?;
        out.write_all(&(table.live_count() as u64).to_le_bytes())?;
        let mut scratch = Vec::with_capacity(dim * 4);
        for (id, seq, vector) in table.live_entries() {
            codec::write_entry(out, id, seq, vector, &mut scratch)?;
        }
        Ok(())
    })
}

/// Reads the index file of `dir`: `Ok(None)` when there is none, a table of
/// its entries otherwise. Any damage is [`IndexError::Corrupt`]; a file
/// written for another dimension is [`IndexError::InvalidArgument`].
pub(crate) fn read(dir: &Path, dim: usize) -> Result<Option<PointTable>> {
    codec::read_if_exists(&file_path(dir))?
        .map(|bytes| decode(&bytes, dim))
        .transpose()
}

fn decode(bytes: &[u8], dim: usize) -> Result<PointTable> {
    let mut reader = FILE.open(bytes)?;
    let file_dim = reader.u32()? as usize;
    if file_dim != dim {
        return Err(IndexError::InvalidArgument(format!(
            "vector file has dimension {file_dim}, index is configured for {dim}"
        )));
    }
    let count = reader.record_count(4 + 8 + 4 * dim)?;
    let mut table = PointTable::with_capacity(dim, count);
    reader.entries(count, dim, |id, seq, vector| {
        table.push(id, seq, vector);
    })?;
    reader.finish("the last record")?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::Arc;

    use super::*;

    const CRC_LEN: usize = 4;

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
            Err(IndexError::Corrupt(message)) => assert!(
                message.starts_with("hnsw vector file: "),
                "{message} should name the file kind"
            ),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    /// The layout of the module docs, spelled out byte by byte: files that
    /// earlier builds wrote must keep opening.
    #[test]
    fn file_bytes_follow_the_documented_layout() {
        let (_dir, bytes) = written();
        let mut expected = b"MNHNSWV1".to_vec();
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&3u32.to_le_bytes());
        expected.extend_from_slice(&2u64.to_le_bytes());
        for (id, seq, vector) in [("a", 7u64, [1.0f32, 0.0, 0.0]), ("ünï", 9, [0.0, 0.6, 0.8])] {
            expected.extend_from_slice(&(id.len() as u32).to_le_bytes());
            expected.extend_from_slice(id.as_bytes());
            expected.extend_from_slice(&seq.to_le_bytes());
            for x in vector {
                expected.extend_from_slice(&x.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(bytes, expected);
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
        assert!(!dir.path().join("vectors.mnhnsw.tmp").exists());
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
