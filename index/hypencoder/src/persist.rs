//! The on-disk snapshot of an index: live vectors with their ids and seqs,
//! and the neighbour graph, in one checksummed file.
//!
//! The graph is stored, not rebuilt on open: rebuilding costs about a
//! minute per 100k documents, reading it a fraction of a second. Slots are
//! compacted on the way out (record `i` is the `i`-th live slot), so free
//! slots never reach the disk and neighbour entries are record numbers.
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! magic      8 bytes  "MNHYPIX1"
//! version    u32      1
//! dim        u32
//! neighbors  u32      capacity k of the stored lists
//! count      u64      number of records
//! records    count × { id_len u32, id (UTF-8), seq u64, dim × f32 }
//! lists      count × { len u32, len × { record u32, squared distance f32 } }
//! crc32      u32      over every byte above
//! ```
//!
//! A write goes to a temporary name, is fsynced, renamed over the old file
//! and the directory fsynced, so a crash leaves the old file or the new one,
//! never a mix. Reading checks the checksum and then every structural
//! invariant, so a damaged or hand-made file is
//! [`IndexError::Corrupt`], never a panic or a wild allocation.

use std::io::Write;
use std::path::{Path, PathBuf};

use mnemos_index_core::codec::{self, FileKind};
use mnemos_index_core::vector::MAX_DIM;
use mnemos_index_core::{IndexError, Result};

use crate::docs::DocTable;
use crate::graph::NeighborGraph;
use crate::params::MAX_NEIGHBORS;

const FILE_NAME: &str = "hypencoder.mnhyp";
const FILE: FileKind = FileKind {
    label: "hypencoder index file",
    description: "an mnemos-hypencoder index file",
    magic: b"MNHYPIX1",
    version: 1,
    header_len: 8 + 4 + 4 + 4 + 8,
};

fn file_path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Removes a temporary file left by a write that crashed before its rename.
pub(crate) fn remove_stale_temp(dir: &Path) -> Result<()> {
    codec::remove_stale_temp(&file_path(dir))
}

/// Atomically replaces the index file in `dir` with the live documents of
/// `docs` and their lists. Durable when it returns.
pub(crate) fn write(dir: &Path, docs: &DocTable, graph: &NeighborGraph) -> Result<()> {
    // Record number of each live slot.
    let mut record = vec![u32::MAX; docs.slots()];
    for (i, slot) in docs.live_slots().enumerate() {
        record[slot as usize] = i as u32;
    }
    codec::write_atomically(&file_path(dir), |out| {
        FILE.write_magic(out)?;
        out.write_all(&codec::u32_len(docs.dim())?.to_le_bytes())?;
        out.write_all(&codec::u32_len(graph.k())?.to_le_bytes())?;
        out.write_all(&(docs.live_count() as u64).to_le_bytes())?;
        let mut bytes = Vec::with_capacity(docs.dim() * 4);
        for (id, seq, vector) in docs.live_entries() {
            codec::write_entry(out, id, seq, vector, &mut bytes)?;
        }
        for slot in docs.live_slots() {
            // Lists hold live slots only; the filter is a guard, not a path.
            let entries: Vec<(u32, f32)> = graph
                .neighbors(slot)
                .iter()
                .zip(graph.distances(slot))
                .filter(|(&n, _)| record.get(n as usize).is_some_and(|&r| r != u32::MAX))
                .map(|(&n, &d)| (record[n as usize], d))
                .collect();
            bytes.clear();
            bytes.extend_from_slice(&codec::u32_len(entries.len())?.to_le_bytes());
            for (r, d) in entries {
                bytes.extend_from_slice(&r.to_le_bytes());
                bytes.extend_from_slice(&d.to_le_bytes());
            }
            out.write_all(&bytes)?;
        }
        Ok(())
    })
}

/// Reads the index file of `dir`: `Ok(None)` when there is none. Any damage
/// is [`IndexError::Corrupt`]; a file written for another dimension is
/// [`IndexError::InvalidArgument`].
pub(crate) fn read(dir: &Path, dim: usize) -> Result<Option<(DocTable, NeighborGraph)>> {
    codec::read_if_exists(&file_path(dir))?
        .map(|bytes| decode(&bytes, dim))
        .transpose()
}

fn decode(bytes: &[u8], dim: usize) -> Result<(DocTable, NeighborGraph)> {
    let mut reader = FILE.open(bytes)?;
    let file_dim = reader.u32()? as usize;
    if !(1..=MAX_DIM).contains(&file_dim) {
        return Err(reader.corrupt(format!("dimension {file_dim} out of range")));
    }
    if file_dim != dim {
        return Err(IndexError::InvalidArgument(format!(
            "hypencoder index file has dimension {file_dim}, index is configured for {dim}"
        )));
    }
    let k = reader.u32()? as usize;
    if !(1..=MAX_NEIGHBORS).contains(&k) {
        return Err(reader.corrupt(format!("neighbour count {k} out of range")));
    }
    // Each record takes at least this much, with its (possibly empty) list.
    let count = reader.record_count(4 + 8 + 4 * dim + 4)?;
    let mut docs = DocTable::with_capacity(dim, count);
    reader.entries(count, dim, |id, seq, vector| {
        let slot = docs.reserve(vector);
        docs.commit(slot, id, seq);
    })?;
    let mut graph = NeighborGraph::new(k);
    graph.ensure_slots(count);
    let mut entries = Vec::with_capacity(k);
    // `stamp[r] == owner + 1` marks records already in the owner's list.
    let mut stamp = vec![0u32; count];
    for owner in 0..count as u32 {
        let len = reader.u32()? as usize;
        if len > k {
            return Err(reader.corrupt(format!("list of record {owner} has {len} > {k} entries")));
        }
        entries.clear();
        stamp[owner as usize] = owner + 1;
        for raw in reader.take(8 * len)?.chunks_exact(8) {
            let r = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let d = f32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
            let ok_record = (r as usize) < count && stamp[r as usize] != owner + 1;
            let ok_distance =
                d.is_finite() && d >= 0.0 && entries.last().is_none_or(|&(last, _)| last <= d);
            if !ok_record || !ok_distance {
                return Err(reader.corrupt(format!("list of record {owner} is malformed")));
            }
            stamp[r as usize] = owner + 1;
            entries.push((d, r));
        }
        graph.set(owner, entries.iter().copied());
    }
    reader.finish("the last list")?;
    Ok((docs, graph))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::Arc;

    use super::*;

    const CRC_LEN: usize = 4;

    /// Three live documents (one freed slot in between) with lists.
    fn sample() -> (DocTable, NeighborGraph) {
        let mut docs = DocTable::new(2);
        for (i, v) in [[0.0, 0.0], [9.0, 9.0], [1.0, 0.0], [0.0, 2.0]]
            .iter()
            .enumerate()
        {
            let slot = docs.reserve(v);
            docs.commit(
                slot,
                Arc::from(if i == 2 {
                    "ünï".to_string()
                } else {
                    format!("d{i}")
                }),
                i as u64,
            );
        }
        docs.release(1);
        let mut graph = NeighborGraph::new(2);
        graph.ensure_slots(4);
        graph.set(0, [(1.0, 2), (4.0, 3)].into_iter());
        graph.set(2, [(1.0, 0), (5.0, 3)].into_iter());
        graph.set(3, [(4.0, 0)].into_iter());
        (docs, graph)
    }

    fn written() -> (tempfile::TempDir, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let (docs, graph) = sample();
        write(dir.path(), &docs, &graph).unwrap();
        let bytes = fs::read(dir.path().join(FILE_NAME)).unwrap();
        (dir, bytes)
    }

    fn assert_corrupt(result: Result<(DocTable, NeighborGraph)>) {
        match result {
            Err(IndexError::Corrupt(message)) => assert!(
                message.starts_with("hypencoder index file: "),
                "{message} should name the file kind"
            ),
            Err(other) => panic!("expected Corrupt, got {other:?}"),
            Ok(_) => panic!("expected Corrupt, got a table"),
        }
    }

    /// The layout of the module docs, spelled out byte by byte: files that
    /// earlier builds wrote must keep opening.
    #[test]
    fn file_bytes_follow_the_documented_layout() {
        let (_dir, bytes) = written();
        let mut expected = b"MNHYPIX1".to_vec();
        for header in [1u32, 2, 2] {
            expected.extend_from_slice(&header.to_le_bytes());
        }
        expected.extend_from_slice(&3u64.to_le_bytes());
        for (id, seq, vector) in [
            ("d0", 0u64, [0.0f32, 0.0]),
            ("ünï", 2, [1.0, 0.0]),
            ("d3", 3, [0.0, 2.0]),
        ] {
            expected.extend_from_slice(&(id.len() as u32).to_le_bytes());
            expected.extend_from_slice(id.as_bytes());
            expected.extend_from_slice(&seq.to_le_bytes());
            for x in vector {
                expected.extend_from_slice(&x.to_le_bytes());
            }
        }
        // Lists by record number: old slots 0, 2, 3 are records 0, 1, 2.
        let lists: [&[(u32, f32)]; 3] = [&[(1, 1.0), (2, 4.0)], &[(0, 1.0), (2, 5.0)], &[(0, 4.0)]];
        for list in lists {
            expected.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for &(record, distance) in list {
                expected.extend_from_slice(&record.to_le_bytes());
                expected.extend_from_slice(&distance.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn round_trip_compacts_slots_and_keeps_lists() {
        let (dir, _) = written();
        let (docs, graph) = read(dir.path(), 2).unwrap().unwrap();
        assert_eq!(docs.live_count(), 3);
        assert_eq!(docs.slots(), 3);
        let entries: Vec<(String, u64, Vec<f32>)> = docs
            .live_entries()
            .map(|(id, seq, v)| (id.to_string(), seq, v.to_vec()))
            .collect();
        assert_eq!(
            entries,
            [
                ("d0".to_string(), 0, vec![0.0, 0.0]),
                ("ünï".to_string(), 2, vec![1.0, 0.0]),
                ("d3".to_string(), 3, vec![0.0, 2.0]),
            ]
        );
        // Old slots 0, 2, 3 are records 0, 1, 2.
        assert_eq!(graph.neighbors(0), &[1, 2]);
        assert_eq!(graph.distances(0), &[1.0, 4.0]);
        assert_eq!(graph.neighbors(1), &[0, 2]);
        assert_eq!(graph.neighbors(2), &[0]);
        assert_eq!(graph.k(), 2);
        assert!(!dir.path().join("hypencoder.mnhyp.tmp").exists());
    }

    #[test]
    fn missing_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), 2).unwrap().is_none());
    }

    #[test]
    fn every_truncation_is_corrupt() {
        let (_dir, bytes) = written();
        for len in 0..bytes.len() {
            assert_corrupt(decode(&bytes[..len], 2));
        }
    }

    #[test]
    fn every_flipped_byte_is_corrupt() {
        let (_dir, bytes) = written();
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            assert_corrupt(decode(&damaged, 2));
        }
    }

    #[test]
    fn other_dimension_is_invalid_argument() {
        let (_dir, bytes) = written();
        assert!(matches!(
            decode(&bytes, 3),
            Err(IndexError::InvalidArgument(_))
        ));
    }

    /// Damage that a valid checksum covers still fails the structural checks.
    #[test]
    fn malformed_lists_with_valid_checksums_are_corrupt() {
        let (_dir, bytes) = written();
        let body = &bytes[..bytes.len() - CRC_LEN];
        let lists_start = body.len() - (4 + 16) - (4 + 16) - (4 + 8);
        let resealed = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut body = body.to_vec();
            edit(&mut body);
            let crc = crc32fast::hash(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        // Record 0's first neighbour: itself, then out of range.
        for bad in [0u32, 3] {
            let damaged = resealed(&|b| {
                b[lists_start + 4..lists_start + 8].copy_from_slice(&bad.to_le_bytes())
            });
            assert_corrupt(decode(&damaged, 2));
        }
        // Distances out of order.
        let damaged = resealed(&|b| {
            b[lists_start + 8..lists_start + 12].copy_from_slice(&9.0f32.to_le_bytes())
        });
        assert_corrupt(decode(&damaged, 2));
        // A list longer than k.
        let damaged =
            resealed(&|b| b[lists_start..lists_start + 4].copy_from_slice(&3u32.to_le_bytes()));
        assert_corrupt(decode(&damaged, 2));
        // Trailing bytes.
        assert_corrupt(decode(&resealed(&|b| b.extend_from_slice(b"xyz")), 2));
    }
}
