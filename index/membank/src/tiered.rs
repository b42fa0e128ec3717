//! A bank read through the memory tiers (SPECS §5–6): blocks come from RAM,
//! mapped files or object storage, a path whose deeper blocks cannot be
//! fetched in time falls back to its parent path (and says so), the top
//! levels can be pinned in RAM, and a whole bank can be published to and
//! started from object storage.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use mnemos_llama::FfnUnits;
use mnemos_tiers::{BlockSpec, Tier, TierError, Tiers};

use crate::bank::block_key;
use crate::files::{commit_temp, sync_parent};
use crate::manifest::BlockRecord;
use crate::{Bank, BankError, NodeId, Result, MANIFEST_FILE, TEXTS_FILE, TREE_FILE};

/// A block on a path that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingBlock {
    pub node: NodeId,
    pub reason: String,
}

/// The memory of one path: what was fetched, and what was not.
#[derive(Debug)]
pub struct PathMemory {
    /// The merged units of the blocks used.
    pub units: FfnUnits,
    /// Nodes whose blocks were used, root side first.
    pub used: Vec<NodeId>,
    /// Parameters of `units`.
    pub parameters: usize,
    /// The first block that could not be fetched (empty when none): the
    /// path stops at its parent, because deeper blocks were trained on
    /// top of it and mean nothing without it.
    pub missing: Vec<MissingBlock>,
    /// The tier each used block came from (RAM, mapped file, object
    /// storage), when the bank reads through tiers.
    pub tiers: Vec<Tier>,
}

impl PathMemory {
    /// True when part of the path could not be served.
    pub fn degraded(&self) -> bool {
        !self.missing.is_empty()
    }
}

impl Bank {
    pub(crate) fn spec_of(&self, node: &NodeId, record: &BlockRecord) -> BlockSpec {
        BlockSpec {
            key: block_key(node),
            bytes: record.bytes,
            crc32: record.crc32,
        }
    }

    /// The key, size and checksum of `node`'s enabled block.
    pub fn block_spec(&self, node: &NodeId) -> Option<BlockSpec> {
        self.blocks
            .get(node)
            .filter(|r| !r.meta.disabled)
            .map(|r| self.spec_of(node, r))
    }

    /// The tiers blocks are read through, if any.
    pub fn tiers(&self) -> Option<&Tiers> {
        self.tiers.as_ref()
    }

    /// Pins the enabled blocks of levels `1..=levels` in RAM (read by most
    /// requests: SPECS §5 keeps shallow levels in fast memory). Returns how
    /// many were pinned.
    pub fn pin_levels(&self, levels: usize) -> Result<usize> {
        let Some(tiers) = &self.tiers else {
            return Ok(0);
        };
        let mut pinned = 0;
        for (node, record) in &self.blocks {
            if node.level() <= levels && !record.meta.disabled {
                tiers.pin(&self.spec_of(node, record))?;
                pinned += 1;
            }
        }
        Ok(pinned)
    }

    /// The memory of `path`, fetching each block through the tiers. A
    /// block that cannot be fetched (object storage down or slow, a
    /// checksum failure) ends the path at its parent and is reported in
    /// [`PathMemory::missing`]; any other error fails the call. The
    /// children of the deepest block used are prefetched.
    pub fn path_memory(&self, path: &[NodeId]) -> Result<PathMemory> {
        let mut used = Vec::with_capacity(path.len());
        let mut parts = Vec::with_capacity(path.len());
        let mut tiers_used = Vec::with_capacity(path.len());
        let mut missing = Vec::new();
        for node in path {
            let Some(spec) = self.block_spec(node) else {
                continue;
            };
            let read = match &self.tiers {
                Some(tiers) => tiers.get(&spec).map(|f| (f.tier, Some(f.bytes))),
                None => Ok((Tier::Warm, None)),
            };
            let (tier, bytes) = match read {
                Ok(r) => r,
                Err(e) if e.is_fetch_failure() => {
                    tracing::warn!(%node, error = %e, "memory block unavailable; using its parent path");
                    missing.push(MissingBlock {
                        node: node.clone(),
                        reason: e.to_string(),
                    });
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            let units = match bytes {
                Some(b) => {
                    let shape = self.shape(node)?;
                    crate::block::decode_block(&b, &self.block_path(node), shape)?
                }
                None => match self.load_block(node)? {
                    Some(u) => u,
                    None => continue,
                },
            };
            used.push(node.clone());
            parts.push(units);
            if self.tiers.is_some() {
                tiers_used.push(tier);
            }
        }
        if let (Some(tiers), Some(last)) = (&self.tiers, used.last()) {
            if let Some(n) = self.tree.node(last) {
                let children: Vec<BlockSpec> = n
                    .children()
                    .iter()
                    .filter_map(|c| self.block_spec(c))
                    .collect();
                tiers.prefetch(&children);
            }
        }
        let units = FfnUnits::merge(&parts.iter().collect::<Vec<_>>())?;
        let parameters = units.parameters();
        Ok(PathMemory {
            units,
            used,
            parameters,
            missing,
            tiers: tiers_used,
        })
    }

    /// Uploads the bank (tree, manifest, texts when present, every enabled
    /// block) to the tiers' object storage, blocks first and the manifest
    /// last, so a bucket never names a block it lacks. Returns the bytes
    /// uploaded.
    pub fn publish(&self, tiers: &Tiers) -> Result<u64> {
        let mut total = 0u64;
        let mut upload = |key: &str, path: &Path| -> Result<()> {
            let data = std::fs::read(path).map_err(BankError::io(path))?;
            total += data.len() as u64;
            tiers.publish(key, Bytes::from(data))?;
            Ok(())
        };
        for (node, record) in &self.blocks {
            if !record.meta.disabled {
                upload(&block_key(node), &self.block_path(node))?;
            }
        }
        if self.dir.join(TEXTS_FILE).is_file() {
            upload(TEXTS_FILE, &self.dir.join(TEXTS_FILE))?;
        }
        upload(TREE_FILE, &self.dir.join(TREE_FILE))?;
        upload(MANIFEST_FILE, &self.dir.join(MANIFEST_FILE))?;
        Ok(total)
    }
}

/// Downloads a published bank's tree, manifest and texts (when present)
/// from the tiers' object storage into `dir`, so [`Bank::open_with`] can
/// open it there; blocks are fetched later, as they are read. Each file
/// carries its own checksum, checked when the bank opens.
pub fn fetch_bank_files(tiers: &Tiers, dir: &Path, timeout: Duration) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(BankError::io(dir))?;
    for (name, required) in [
        (TREE_FILE, true),
        (TEXTS_FILE, false),
        (MANIFEST_FILE, true),
    ] {
        let data = match tiers.cold_object(name, timeout) {
            Ok(d) => d,
            Err(TierError::NotFound { .. }) if !required => continue,
            Err(e) => return Err(e.into()),
        };
        let path = dir.join(name);
        let temp = dir.join(format!(".{name}.download"));
        std::fs::write(&temp, &data).map_err(BankError::io(&temp))?;
        commit_temp(&temp, &path)?;
    }
    sync_parent(&dir.join(MANIFEST_FILE))
}

#[cfg(test)]
#[path = "tiered_tests.rs"]
mod tests;
