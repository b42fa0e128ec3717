//! Filesystem steps shared by the log and the snapshots: the
//! write-temp → fsync → rename → fsync-directory sequence that makes a file
//! replacement atomic *and* durable, and the directory lock.
//!
//! A rename is atomic on POSIX filesystems, but it is only durable once the
//! directory that holds it is fsynced; until then a power loss may bring the
//! old name back. Every caller therefore fsyncs the directory before relying
//! on a rename (for example before trimming the log a snapshot covers).

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use crate::error::{IoContext, Result, StoreError};

/// Suffix of files being written; any such file found at open is a leftover
/// of a crash and is deleted (it was never renamed, so nothing relies on it).
pub(crate) const TMP_SUFFIX: &str = ".tmp";

const LOCK_FILE: &str = "LOCK";

/// `path` with [`TMP_SUFFIX`] appended.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

/// Creates `dir` (and parents) if needed. A newly created directory is made
/// durable by fsyncing its parent, so the files about to be written in it
/// cannot vanish with it.
pub(crate) fn ensure_dir(dir: &Path, fsync: bool) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).at(dir)?;
    if fsync {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Takes an exclusive advisory lock on `dir/LOCK`, held as long as the
/// returned file is open. Two stores appending to one log would interleave
/// records and corrupt it; an OS lock (unlike a pid file) is released by the
/// kernel when the process dies, so `kill -9` never leaves a stale lock.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .at(&path)?;
    match file.try_lock_exclusive() {
        Ok(true) => Ok(file),
        Ok(false) => Err(StoreError::Locked(dir.to_path_buf())),
        Err(e) => Err(e).at(&path),
    }
}

/// Deletes every `*.tmp` file in `dir`.
pub(crate) fn remove_temp_files(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        let is_temp = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(TMP_SUFFIX));
        if is_temp {
            tracing::warn!(path = %path.display(), "removing leftover temporary file");
            fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(())
}

/// Writes a fresh file at `tmp` through `fill`, fsyncs it if asked, and
/// returns it open for writing and positioned at its end, so the log can keep
/// appending to the very inode it is about to rename into place.
pub(crate) fn write_temp(
    tmp: &Path,
    fsync: bool,
    fill: impl FnOnce(&mut BufWriter<&mut File>) -> std::io::Result<()>,
) -> Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(tmp)
        .at(tmp)?;
    {
        let mut writer = BufWriter::new(&mut file);
        fill(&mut writer).at(tmp)?;
        writer.flush().at(tmp)?;
    }
    if fsync {
        file.sync_all().at(tmp)?;
    }
    Ok(file)
}

/// Renames `tmp` over `dest` and, if asked, fsyncs the directory so the
/// rename survives a power loss.
pub(crate) fn commit_rename(tmp: &Path, dest: &Path, fsync: bool) -> Result<()> {
    fs::rename(tmp, dest).at(dest)?;
    if fsync {
        if let Some(dir) = dest.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// fsyncs a directory so that creations, renames and deletions in it are
/// durable.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Directories cannot be opened as files on this platform; its filesystems
/// make metadata changes durable with the file they concern.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}
