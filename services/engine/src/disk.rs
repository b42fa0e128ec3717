//! The free-space guard in front of every add. A write that runs out of
//! disk after its log record is durable but before its indexes are updated
//! leaves the caller with an error for a write that did happen; refusing
//! adds while the disk is below a reserve makes that case rare, and keeps
//! the reserve for what must always work: removals and index upkeep.

use std::path::PathBuf;

use crate::{EngineError, Result};

#[derive(Debug, Clone)]
pub struct DiskGuard {
    dir: PathBuf,
    min_free_bytes: u64,
}

impl DiskGuard {
    pub fn new(dir: PathBuf, min_free_mb: u64) -> Self {
        Self {
            dir,
            min_free_bytes: min_free_mb.saturating_mul(1024 * 1024),
        }
    }

    /// `Err(StorageFull)` while the disk holding the data directory has
    /// less free space than the reserve. A disk whose free space cannot be
    /// read is let through: the write itself will then tell.
    pub fn check_add(&self) -> Result<()> {
        if self.min_free_bytes == 0 {
            return Ok(());
        }
        match fs4::available_space(&self.dir) {
            Ok(free) if free < self.min_free_bytes => Err(EngineError::StorageFull(format!(
                "the data directory's disk is full: {} free in {}, below the {} MiB reserve \
                 (store.min_free_mb); adds are refused until space is freed, removals still work",
                human(free),
                self.dir.display(),
                self.min_free_bytes / (1024 * 1024)
            ))),
            _ => Ok(()),
        }
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_larger_than_any_disk_refuses_and_zero_allows() {
        let dir = tempfile::tempdir().unwrap();
        let huge = DiskGuard::new(dir.path().to_path_buf(), 1 << 40);
        let err = huge.check_add().unwrap_err();
        assert!(matches!(err, EngineError::StorageFull(_)));
        assert!(err.to_string().contains("store.min_free_mb"), "{err}");
        assert!(DiskGuard::new(dir.path().to_path_buf(), 0)
            .check_add()
            .is_ok());
        assert!(DiskGuard::new(dir.path().to_path_buf(), 1)
            .check_add()
            .is_ok());
    }
}
