//! The warm tier: block files in a local directory, read through memory
//! maps and checked against the caller's size and CRC32 on every read.
//!
//! Files are only ever created whole (temporary name, then rename) and
//! never modified in place, which is what makes mapping them sound: a
//! replaced block is a new inode, and readers of the old one keep their
//! mapping of it. The tier is a cache of the cold tier (and, for a bank
//! with no cold tier, the bank's own block directory), so writes are not
//! fsynced: a torn file after a crash fails its checksum and is fetched
//! again, never served.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::{BlockSpec, Result, Tier, TierError};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub struct WarmTier {
    dir: PathBuf,
}

impl WarmTier {
    pub fn new(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(TierError::io(dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `key`'s file is (keys are validated before they get here).
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.path(key).is_file()
    }

    /// The block, mapped, or `None` when the file is absent. A file of the
    /// wrong size or checksum is an error (and is removed, so the next read
    /// fetches a good copy).
    pub fn read(&self, spec: &BlockSpec) -> Result<Option<Bytes>> {
        let path = self.path(&spec.key);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TierError::io(&path)(e)),
        };
        let len = file.metadata().map_err(TierError::io(&path))?.len();
        if len != spec.bytes {
            self.discard(&spec.key);
            return Err(corrupt(
                spec,
                format!("file is {len} bytes, expected {}", spec.bytes),
            ));
        }
        if len == 0 {
            return check(spec, Bytes::new()).map(Some);
        }
        let map = map_file(&file).map_err(TierError::io(&path))?;
        let bytes = Bytes::from_owner(map);
        match check(spec, bytes) {
            Ok(b) => Ok(Some(b)),
            Err(e) => {
                self.discard(&spec.key);
                Err(e)
            }
        }
    }

    /// Stores a block's bytes under `key`, replacing any earlier file.
    pub fn write(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.path(key);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        fs::create_dir_all(&parent).map_err(TierError::io(&parent))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = parent.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = File::create(&temp)?;
            f.write_all(data)?;
            fs::rename(&temp, &path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&temp);
            return Err(TierError::io(&path)(e));
        }
        Ok(())
    }

    /// Removes `key`'s file if present (a damaged or superseded copy).
    pub fn discard(&self, key: &str) {
        let path = self.path(key);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a warm block file");
            }
        }
    }

    /// Files and bytes under the directory (walked: called for summaries).
    pub fn usage(&self) -> (u64, u64) {
        fn walk(dir: &Path, acc: &mut (u64, u64)) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    walk(&entry.path(), acc);
                } else if kind.is_file() && !entry.file_name().to_string_lossy().starts_with('.') {
                    acc.0 += 1;
                    acc.1 += entry.metadata().map_or(0, |m| m.len());
                }
            }
        }
        let mut acc = (0, 0);
        walk(&self.dir, &mut acc);
        acc
    }
}

fn corrupt(spec: &BlockSpec, detail: String) -> TierError {
    TierError::Corrupt {
        key: spec.key.clone(),
        tier: Tier::Warm,
        detail,
    }
}

/// `bytes` if they have the spec's size and CRC32.
pub(crate) fn check(spec: &BlockSpec, bytes: Bytes) -> Result<Bytes> {
    if bytes.len() as u64 != spec.bytes {
        return Err(corrupt(
            spec,
            format!("{} bytes, expected {}", bytes.len(), spec.bytes),
        ));
    }
    let crc = crc32fast::hash(&bytes);
    if crc != spec.crc32 {
        return Err(corrupt(
            spec,
            format!("CRC32 {crc:08x}, expected {:08x}", spec.crc32),
        ));
    }
    Ok(bytes)
}

/// Maps a whole block file read-only.
#[allow(unsafe_code)]
fn map_file(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: mapping is sound only if nothing modifies the file while the
    // map lives. Warm files are created under a temporary name and renamed
    // into place, never written in place (see `write` and the bank's block
    // writer), so a replacement is a new inode and this mapping keeps the
    // old, unchanging one.
    unsafe { memmap2::Mmap::map(file) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &str, data: &[u8]) -> BlockSpec {
        BlockSpec {
            key: key.into(),
            bytes: data.len() as u64,
            crc32: crc32fast::hash(data),
        }
    }

    #[test]
    fn blocks_round_trip_and_damage_is_never_served() -> Result<()> {
        let dir = tempfile::tempdir().map_err(TierError::io(Path::new("tmp")))?;
        let warm = WarmTier::new(dir.path())?;
        let data = b"some block bytes".to_vec();
        let s = spec("blocks/n1.safetensors", &data);
        assert!(warm.read(&s)?.is_none());
        warm.write(&s.key, &data)?;
        assert_eq!(&warm.read(&s)?.unwrap()[..], &data[..]);
        assert_eq!(warm.usage(), (1, data.len() as u64));
        // Same size, one byte flipped: a checksum error, and the file goes.
        let mut bad = data.clone();
        bad[3] ^= 1;
        warm.write(&s.key, &bad)?;
        let e = warm.read(&s).unwrap_err();
        assert!(
            matches!(
                e,
                TierError::Corrupt {
                    tier: Tier::Warm,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!warm.contains(&s.key));
        // Truncated: a size error.
        warm.write(&s.key, &data[..4])?;
        assert!(matches!(warm.read(&s), Err(TierError::Corrupt { .. })));
        Ok(())
    }
}
