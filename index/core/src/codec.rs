//! The building blocks of the vector indexes' snapshot files: one
//! checksummed file per index, written atomically and read with every
//! length bounds-checked.
//!
//! Every such file is framed the same way, all integers little-endian:
//!
//! ```text
//! magic     8 bytes  (names the format)
//! version   u32
//! ...       the format's own header and body
//! crc32     u32      over every byte above
//! ```
//!
//! and stores its documents as entries of one layout (see [`write_entry`]).
//! A write goes to a temporary name, is fsynced, renamed over the old file
//! and the directory fsynced, so a crash leaves either the old file or the
//! new one, never a mix ([`write_atomically`]). Reading checks the frame
//! and checksum ([`FileKind::open`]) and then reads through a [`ByteReader`],
//! so a damaged or hand-made file is [`IndexError::Corrupt`], never a panic
//! or a wild allocation. Every error names the kind of file it came from.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt::Display;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{IndexError, Result, Seq};

const MAGIC_LEN: usize = 8;
const CRC_LEN: usize = 4;

/// One snapshot format: what identifies its files and names them in errors.
#[derive(Debug, Clone, Copy)]
pub struct FileKind {
    /// Prefixes every error about such a file, e.g. `"hnsw vector file"`.
    pub label: &'static str,
    /// What a file with other magic bytes is not, e.g.
    /// `"an mnemos-hnsw vector file"`.
    pub description: &'static str,
    pub magic: &'static [u8; MAGIC_LEN],
    pub version: u32,
    /// Bytes of the whole header, magic and version included: with the
    /// checksum, the shortest possible file.
    pub header_len: usize,
}

impl FileKind {
    /// [`IndexError::Corrupt`] naming this kind of file.
    pub fn corrupt(&self, message: impl Display) -> IndexError {
        corrupt(self.label, message)
    }

    /// Writes the magic bytes and version that start every file of this kind.
    pub fn write_magic(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(self.magic)?;
        out.write_all(&self.version.to_le_bytes())
    }

    /// Checks the frame of a whole file's `bytes` (length, magic, version,
    /// checksum) and returns a reader over the rest of its header and body,
    /// without the checksum.
    pub fn open<'a>(&self, bytes: &'a [u8]) -> Result<ByteReader<'a>> {
        if bytes.len() < self.header_len + CRC_LEN {
            return Err(self.corrupt(format!("file is {} bytes, too short", bytes.len())));
        }
        let (body, stored_crc) = bytes.split_at(bytes.len() - CRC_LEN);
        let mut reader = ByteReader::new(body, self.label);
        if reader.take(MAGIC_LEN)? != self.magic {
            return Err(self.corrupt(format!("not {}", self.description)));
        }
        let version = reader.u32()?;
        if version != self.version {
            return Err(self.corrupt(format!("unsupported file version {version}")));
        }
        let stored_crc = u32::from_le_bytes(
            stored_crc
                .try_into()
                .map_err(|_| self.corrupt("truncated"))?,
        );
        if crc32fast::hash(body) != stored_crc {
            return Err(self.corrupt("checksum mismatch"));
        }
        Ok(reader)
    }
}

fn corrupt(label: &str, message: impl Display) -> IndexError {
    IndexError::Corrupt(format!("{label}: {message}"))
}

/// A length as the `u32` the file formats store it in.
pub fn u32_len(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length over u32"))
}

/// Passes bytes through while computing their CRC32.
pub struct ChecksumWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W> ChecksumWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// The wrapped writer and the CRC32 of every byte written through it.
    pub fn finish(self) -> (W, u32) {
        (self.inner, self.crc.finalize())
    }
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

/// What [`write_atomically`] hands its caller to write the file through.
pub type FileWriter = ChecksumWriter<BufWriter<File>>;

/// The name a file is written under before it is renamed to `path`:
/// `path` with `.tmp` appended.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".tmp");
    PathBuf::from(name)
}

/// Atomically replaces the file at `path` with what `body` writes followed
/// by its CRC32 (a little-endian `u32`). Durable when it returns.
///
/// The bytes go to [`temp_path`], which is fsynced, renamed over `path`, and
/// then the directory is fsynced, so a crash leaves the old file or the new
/// one, never a mix.
pub fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut FileWriter) -> Result<()>,
) -> Result<()> {
    let temp = temp_path(path);
    let mut out = ChecksumWriter::new(BufWriter::with_capacity(1 << 20, File::create(&temp)?));
    body(&mut out)?;
    let (mut inner, crc) = out.finish();
    inner.write_all(&crc.to_le_bytes())?;
    let file = inner.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    // The rename is only durable once the directory entry is.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// The whole file at `path`, or `None` when there is none.
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes the temporary file of `path` left by a [`write_atomically`] that
/// crashed before its rename.
pub fn remove_stale_temp(path: &Path) -> Result<()> {
    match fs::remove_file(temp_path(path)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Writes one document entry, `{ id_len u32, id (UTF-8), seq u64, dim ×
/// f32 }`, as [`ByteReader::entries`] reads it back. `scratch` is reused
/// across calls so that a vector is one write, not `dim`.
pub fn write_entry(
    out: &mut impl Write,
    id: &str,
    seq: Seq,
    vector: &[f32],
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    out.write_all(&u32_len(id.len())?.to_le_bytes())?;
    out.write_all(id.as_bytes())?;
    out.write_all(&seq.to_le_bytes())?;
    scratch.clear();
    scratch.extend(vector.iter().flat_map(|x| x.to_le_bytes()));
    out.write_all(scratch)
}

/// Bounds-checked little-endian reads; running out is a corrupt file.
pub struct ByteReader<'a> {
    bytes: &'a [u8],
    label: &'static str,
}

impl<'a> ByteReader<'a> {
    /// Reads `bytes`; errors name the file as `label` (see
    /// [`FileKind::label`]).
    pub fn new(bytes: &'a [u8], label: &'static str) -> Self {
        Self { bytes, label }
    }

    /// [`IndexError::Corrupt`] naming the file being read.
    pub fn corrupt(&self, message: impl Display) -> IndexError {
        corrupt(self.label, message)
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if len > self.bytes.len() {
            return Err(self.corrupt("truncated"));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    pub fn u32(&mut self) -> Result<u32> {
        let raw = self.take(4)?;
        Ok(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
    }

    pub fn u64(&mut self) -> Result<u64> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }

    /// Reads a `u64` record count and checks that many records of at least
    /// `record_min` bytes each can fit in what is left: a count that cannot
    /// fit would otherwise allocate wildly.
    pub fn record_count(&mut self, record_min: usize) -> Result<usize> {
        let count = self.u64()?;
        if count > (self.bytes.len() / record_min.max(1)) as u64 {
            return Err(self.corrupt(format!("record count {count} exceeds file size")));
        }
        Ok(count as usize)
    }

    /// Reads `count` entries as [`write_entry`] wrote them, each with a
    /// `dim`-long vector, passing each to `push` in file order. An id that
    /// is not UTF-8 or appears twice, or a vector that is not finite, is
    /// corrupt.
    pub fn entries(
        &mut self,
        count: usize,
        dim: usize,
        mut push: impl FnMut(Arc<str>, Seq, &[f32]),
    ) -> Result<()> {
        let mut seen = HashSet::with_capacity(count);
        let mut vector = vec![0.0f32; dim];
        for _ in 0..count {
            let id_len = self.u32()? as usize;
            let id = std::str::from_utf8(self.take(id_len)?)
                .map_err(|_| self.corrupt("id is not UTF-8"))?;
            let id: Arc<str> = Arc::from(id);
            let seq: Seq = self.u64()?;
            for (x, raw) in vector.iter_mut().zip(self.take(4 * dim)?.chunks_exact(4)) {
                *x = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            }
            if vector.iter().any(|x| !x.is_finite()) {
                return Err(self.corrupt(format!("vector of {id:?} is not finite")));
            }
            if !seen.insert(Arc::clone(&id)) {
                return Err(self.corrupt(format!("id {id:?} appears twice")));
            }
            push(id, seq, &vector);
        }
        Ok(())
    }

    /// Checks that everything has been read; `what` names the last thing
    /// that should have been, e.g. `"the last record"`.
    pub fn finish(self, what: &str) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt(format!(
                "{} unexpected bytes after {what}",
                self.bytes.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: FileKind = FileKind {
        label: "test file",
        description: "a test file",
        magic: b"TESTFIL1",
        version: 3,
        header_len: 8 + 4 + 8,
    };

    /// A whole file of [`KIND`]: header, `entries`, checksum.
    fn file_of(entries: &[(&str, Seq, [f32; 2])]) -> Vec<u8> {
        let mut out = ChecksumWriter::new(Vec::new());
        KIND.write_magic(&mut out).unwrap();
        out.write_all(&(entries.len() as u64).to_le_bytes())
            .unwrap();
        let mut scratch = Vec::new();
        for (id, seq, vector) in entries {
            write_entry(&mut out, id, *seq, vector, &mut scratch).unwrap();
        }
        let (mut bytes, crc) = out.finish();
        assert_eq!(crc, crc32fast::hash(&bytes));
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn file() -> Vec<u8> {
        file_of(&[("a", 7, [1.0, -2.0]), ("ünï", 9, [0.5, 0.25])])
    }

    fn read(bytes: &[u8]) -> Result<Vec<(String, Seq, Vec<f32>)>> {
        let mut reader = KIND.open(bytes)?;
        let count = reader.record_count(4 + 8 + 4 * 2)?;
        let mut entries = Vec::new();
        reader.entries(count, 2, |id, seq, v| {
            entries.push((id.to_string(), seq, v.to_vec()))
        })?;
        reader.finish("the last record")?;
        Ok(entries)
    }

    fn corrupt_message(result: Result<Vec<(String, Seq, Vec<f32>)>>) -> String {
        match result {
            Err(IndexError::Corrupt(message)) => {
                assert!(message.starts_with("test file: "), "{message}");
                message
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    /// Rewrites the checksum after `edit`, so that only structure is wrong.
    fn resealed(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let bytes = file();
        let mut body = bytes[..bytes.len() - CRC_LEN].to_vec();
        edit(&mut body);
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    #[test]
    fn entries_round_trip() {
        assert_eq!(
            read(&file()).unwrap(),
            [
                ("a".to_string(), 7, vec![1.0, -2.0]),
                ("ünï".to_string(), 9, vec![0.5, 0.25]),
            ]
        );
    }

    #[test]
    fn every_truncation_and_flipped_byte_is_corrupt_and_named() {
        let bytes = file();
        for len in 0..bytes.len() {
            corrupt_message(read(&bytes[..len]));
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            corrupt_message(read(&damaged));
        }
    }

    #[test]
    fn frame_errors_say_what_is_wrong() {
        assert!(corrupt_message(read(&[0; 10])).contains("too short"));
        let other_magic = resealed(|b| b[0] = b'X');
        assert!(corrupt_message(read(&other_magic)).ends_with("not a test file"));
        let other_version = resealed(|b| b[8] = 4);
        assert!(corrupt_message(read(&other_version)).contains("version 4"));
        let mut bad_crc = file();
        *bad_crc.last_mut().unwrap() ^= 1;
        assert!(corrupt_message(read(&bad_crc)).contains("checksum"));
    }

    #[test]
    fn structural_errors_under_a_valid_checksum_are_corrupt() {
        let huge_count = resealed(|b| b[12..20].copy_from_slice(&u64::MAX.to_le_bytes()));
        assert!(corrupt_message(read(&huge_count)).contains("exceeds file size"));
        let trailing = resealed(|b| b.extend_from_slice(b"xyz"));
        assert!(corrupt_message(read(&trailing)).contains("3 unexpected bytes"));
        let twice = file_of(&[("a", 1, [0.0, 0.0]), ("a", 2, [1.0, 1.0])]);
        assert!(corrupt_message(read(&twice)).contains("appears twice"));
        let not_utf8 = resealed(|b| b[24] = 0xff);
        assert!(corrupt_message(read(&not_utf8)).contains("UTF-8"));
        let not_finite = resealed(|b| {
            let first_vector = 20 + 4 + 1 + 8;
            b[first_vector..first_vector + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        });
        assert!(corrupt_message(read(&not_finite)).contains("not finite"));
    }

    #[test]
    fn temp_path_appends_tmp() {
        assert_eq!(
            temp_path(Path::new("dir/vectors.mnhnsw")),
            Path::new("dir/vectors.mnhnsw.tmp")
        );
    }
}
