//! Durable, atomic writes of the bank's files.
//!
//! JSON files (`tree.json`, `manifest.json`) go through index-core's
//! [`write_atomically`]: temporary name, fsync, rename, directory fsync, so
//! a crash leaves the old file or the new one. That helper ends the file
//! with a CRC32 of the bytes before it (4 bytes, little-endian), which
//! [`read_json`] checks: a flipped digit in a centroid parses as valid JSON,
//! and only the checksum tells it from the real thing.
//!
//! Block files are safetensors, whose reader rejects trailing bytes, so
//! they are written by candle and made durable by [`commit_temp`]; their
//! checksums live in the manifest instead.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use mnemos_index_core::codec::write_atomically;
use mnemos_index_core::IndexError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{BankError, Result};

const CRC_LEN: usize = 4;

/// Replaces `path` with `value` as JSON plus a CRC32 trailer. Durable when
/// it returns.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    write_atomically(path, |out| {
        serde_json::to_writer(&mut *out, value).map_err(|e| IndexError::Io(io::Error::other(e)))?;
        out.flush()?;
        Ok(())
    })
    .map_err(|e| BankError::from_codec(path, e))
}

/// Reads a file [`write_json`] wrote, checking its checksum first.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(BankError::io(path))?;
    if bytes.len() < CRC_LEN {
        return Err(BankError::corrupt(
            path,
            format!("file is {} bytes, too short", bytes.len()),
        ));
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != stored {
        return Err(BankError::corrupt(path, "checksum mismatch"));
    }
    serde_json::from_slice(body).map_err(|e| BankError::corrupt(path, e))
}

/// Makes a fully written `temp` file durable under the name `path`: fsync
/// the file, rename it over `path`, fsync the directory (the rename is only
/// durable once the directory entry is).
pub(crate) fn commit_temp(temp: &Path, path: &Path) -> Result<()> {
    File::open(temp)
        .and_then(|f| f.sync_all())
        .map_err(BankError::io(temp))?;
    fs::rename(temp, path).map_err(BankError::io(path))?;
    sync_parent(path)
}

/// Fsyncs the directory holding `path`, so a new or renamed entry in it
/// survives a crash.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(BankError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_any_damage_is_corrupt() -> Result<()> {
        let dir = tempfile::tempdir().map_err(BankError::io(Path::new("tempdir")))?;
        let path = dir.path().join("x.json");
        write_json(&path, &vec![1.5f32, -2.0])?;
        assert_eq!(read_json::<Vec<f32>>(&path)?, [1.5, -2.0]);
        let bytes = fs::read(&path).map_err(BankError::io(&path))?;
        for len in 0..bytes.len() {
            fs::write(&path, &bytes[..len]).map_err(BankError::io(&path))?;
            let err = read_json::<Vec<f32>>(&path).expect_err("truncated file read");
            assert!(matches!(err, BankError::Corrupt { .. }), "{err}");
        }
        let mut flipped = bytes.clone();
        flipped[1] ^= 0x01; // "1.5" → "0.5": still valid JSON
        fs::write(&path, &flipped).map_err(BankError::io(&path))?;
        let err = read_json::<Vec<f32>>(&path).expect_err("flipped byte read");
        assert!(err.to_string().contains("checksum"), "{err}");
        Ok(())
    }
}
