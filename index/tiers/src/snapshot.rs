//! Directory snapshots in object storage: a stopped server's data
//! directory (document store, indexes, visual memory, memory bank) is
//! published as one object per file plus a manifest written last, and a
//! fresh server restores it before it opens anything — so a new machine
//! can start from a bucket.
//!
//! Objects are named by position (`files/{i}`), not by path: index files
//! such as tantivy's `.managed.json` are not valid block keys, and paths
//! in a manifest are checked on restore (relative, no `..`) before they
//! touch the filesystem. Every file is checked against the manifest's size
//! and CRC32; a restore goes to a temporary sibling renamed into place, so
//! a failed one leaves nothing behind.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{validate_key, BlockSpec, Result, TierError, Tiers};

/// The manifest's object name under a snapshot's prefix.
pub const SNAPSHOT_MANIFEST: &str = "snapshot.json";

const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    files: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    path: String,
    bytes: u64,
    crc32: u32,
}

/// What a publish or restore moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SnapshotStats {
    pub files: usize,
    pub bytes: u64,
}

/// Files under `dir` as relative `/`-separated paths, sorted; lock files
/// (`*.lock`) are skipped: they belong to a running process.
fn files_under(dir: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        for entry in fs::read_dir(dir).map_err(TierError::io(dir))? {
            let entry = entry.map_err(TierError::io(dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(TierError::io(&path))?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() && path.extension().is_none_or(|e| e != "lock") {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// `rel` as a path under `root`, or an error if it could leave it.
fn inside(root: &Path, rel: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    let ok = !rel.is_empty()
        && !rel.contains('\0')
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        return Err(TierError::Store(format!(
            "snapshot manifest names an unsafe path {rel:?}"
        )));
    }
    Ok(root.join(p))
}

impl Tiers {
    /// Uploads every file under `dir` to the cold tier under `prefix`,
    /// the manifest last (a bucket never names a file it lacks). The
    /// directory must not change meanwhile: stop the server first.
    pub fn publish_dir(&self, dir: &Path, prefix: &str) -> Result<SnapshotStats> {
        validate_key(&format!("{prefix}/{SNAPSHOT_MANIFEST}"))?;
        let mut entries = Vec::new();
        let mut stats = SnapshotStats { files: 0, bytes: 0 };
        for (i, rel) in files_under(dir)?.into_iter().enumerate() {
            let path = dir.join(&rel);
            let data = fs::read(&path).map_err(TierError::io(&path))?;
            let spec = BlockSpec::of(format!("{prefix}/files/{i}"), &data);
            stats.files += 1;
            stats.bytes += spec.bytes;
            self.publish(&spec.key, Bytes::from(data))?;
            entries.push(Entry {
                path: rel,
                bytes: spec.bytes,
                crc32: spec.crc32,
            });
        }
        let manifest = Manifest {
            format: FORMAT,
            files: entries,
        };
        let json = serde_json::to_vec(&manifest).map_err(|e| TierError::Store(e.to_string()))?;
        self.publish(&format!("{prefix}/{SNAPSHOT_MANIFEST}"), Bytes::from(json))?;
        Ok(stats)
    }

    /// Restores the snapshot under `prefix` into `dir`, which must not
    /// exist yet (or be empty). Every file is checked against the
    /// manifest; on any failure nothing is left at `dir`.
    pub fn restore_dir(
        &self,
        prefix: &str,
        dir: &Path,
        timeout: Duration,
    ) -> Result<SnapshotStats> {
        let raw = self.cold_object(&format!("{prefix}/{SNAPSHOT_MANIFEST}"), timeout)?;
        let manifest: Manifest = serde_json::from_slice(&raw)
            .map_err(|e| TierError::Store(format!("snapshot manifest under {prefix}: {e}")))?;
        if manifest.format != FORMAT {
            return Err(TierError::Store(format!(
                "snapshot format {} (this build reads {FORMAT})",
                manifest.format
            )));
        }
        if dir.exists()
            && fs::read_dir(dir)
                .map_err(TierError::io(dir))?
                .next()
                .is_some()
        {
            return Err(TierError::Store(format!("{} is not empty", dir.display())));
        }
        let temp = dir.with_extension("restoring");
        if temp.exists() {
            fs::remove_dir_all(&temp).map_err(TierError::io(&temp))?;
        }
        let result = (|| -> Result<SnapshotStats> {
            let mut stats = SnapshotStats { files: 0, bytes: 0 };
            for (i, e) in manifest.files.iter().enumerate() {
                let target = inside(&temp, &e.path)?;
                let spec = BlockSpec {
                    key: format!("{prefix}/files/{i}"),
                    bytes: e.bytes,
                    crc32: e.crc32,
                };
                let data = crate::warm::check(&spec, self.cold_object(&spec.key, timeout)?)?;
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(TierError::io(parent))?;
                }
                fs::write(&target, &data).map_err(TierError::io(&target))?;
                fs::File::open(&target)
                    .and_then(|f| f.sync_all())
                    .map_err(TierError::io(&target))?;
                stats.files += 1;
                stats.bytes += e.bytes;
            }
            Ok(stats)
        })();
        match result {
            Ok(stats) => {
                if dir.exists() {
                    fs::remove_dir(dir).map_err(TierError::io(dir))?;
                }
                fs::create_dir_all(&temp).map_err(TierError::io(&temp))?;
                fs::rename(&temp, dir).map_err(TierError::io(dir))?;
                Ok(stats)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&temp);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ColdOptions, ColdStore, TiersConfig};

    fn tiers(cold: &Path, warm: &Path) -> Result<Tiers> {
        let mut c = TiersConfig::new(1 << 20, warm.to_path_buf());
        c.cold = Some(ColdStore::open(
            &format!("file://{}", cold.display()),
            &ColdOptions::default(),
        )?);
        Tiers::new(c)
    }

    fn t(p: &Path) -> impl FnOnce(std::io::Error) -> TierError + '_ {
        TierError::io(p)
    }

    #[test]
    fn a_directory_round_trips_and_damage_leaves_nothing() -> Result<()> {
        let root = tempfile::tempdir().map_err(t(Path::new("tmp")))?;
        let src = root.path().join("data");
        for (rel, body) in [
            ("store/wal-0.log", &b"records"[..]),
            ("bm25/.managed.json", b"[]"),
            ("bm25/meta.json", b"{}"),
            ("dense/graph.hnsw.data", &[0u8; 3000][..]),
            ("store/LOCK.lock", b"pid"),
        ] {
            let p = src.join(rel);
            fs::create_dir_all(p.parent().expect("parent")).map_err(t(&p))?;
            fs::write(&p, body).map_err(t(&p))?;
        }
        let tiers = tiers(&root.path().join("bucket"), &root.path().join("warm"))?;
        let published = tiers.publish_dir(&src, "snap")?;
        assert_eq!(published.files, 4, "lock files are not published");
        let out = root.path().join("restored");
        let restored = tiers.restore_dir("snap", &out, Duration::from_secs(5))?;
        assert_eq!(restored, published);
        for rel in files_under(&src)? {
            assert_eq!(
                fs::read(src.join(&rel)).map_err(t(&src))?,
                fs::read(out.join(&rel)).map_err(t(&out))?,
                "{rel}"
            );
        }
        // A restored directory is never overwritten.
        assert!(tiers
            .restore_dir("snap", &out, Duration::from_secs(5))
            .is_err());
        // One object damaged in the bucket: the restore fails, leaving nothing.
        let object = root.path().join("bucket/snap/files/3");
        let mut data = fs::read(&object).map_err(t(&object))?;
        data[0] ^= 1;
        fs::write(&object, data).map_err(t(&object))?;
        let again = root.path().join("again");
        let e = tiers
            .restore_dir("snap", &again, Duration::from_secs(5))
            .unwrap_err();
        assert!(matches!(e, TierError::Corrupt { .. }), "{e}");
        assert!(!again.exists() && !again.with_extension("restoring").exists());
        Ok(())
    }

    #[test]
    fn manifest_paths_cannot_leave_the_directory() {
        let root = Path::new("/tmp/x");
        for bad in ["../etc/passwd", "/abs", "a/../../b", "", "a\0b"] {
            assert!(inside(root, bad).is_err(), "{bad:?}");
        }
        assert!(inside(root, "store/wal.log").is_ok());
    }
}
