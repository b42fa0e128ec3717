//! `manifest.json`: the bank's configuration and what is known about each
//! trained block.
//!
//! The manifest is the bank's commit record. A block file is written
//! first and only counts once the manifest names it, with its size and
//! checksum; disabling a block is a manifest write, durable before
//! [`crate::Bank::disable_blocks_trained_on`] returns.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::files::{read_json, write_json};
use crate::tree::TreeParams;
use crate::{BankError, NodeId, Result};

/// File name of the manifest inside a bank directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Bumped when the layout changes incompatibly.
const FORMAT: u32 = 1;

/// What the blocks of a bank are for and what shape they have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankConfig {
    /// Name of the anchor model the blocks extend: blocks trained against
    /// one anchor mean nothing to another.
    pub anchor: String,
    /// The anchor's hidden width (`dim` of the units' `[r, dim]` shapes),
    /// not the embedding width of the tree.
    pub dim: usize,
    /// Anchor blocks (transformer layers) that get appended units; SPECS
    /// §5 finds late or uniform placement beats early.
    pub layers: Vec<usize>,
    /// `r_l`: units per layer added by one node's block at level `l`,
    /// for `l = 1..=levels` (index 0 is level 1).
    pub units_per_level: Vec<usize>,
    /// How the bank's tree is (or was) built.
    pub tree: TreeParams,
    /// How each level's blocks are trained (index 0 is level 1), so that
    /// a block can be retrained later — after an unlearning or an added
    /// document — as it was trained first. Empty: not recorded.
    #[serde(default)]
    pub training: Vec<LevelTraining>,
    /// Anchor tokens of each document a block is trained on (0: not
    /// recorded).
    #[serde(default)]
    pub max_tokens: usize,
}

/// How the blocks of one level are trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelTraining {
    pub epochs: usize,
    pub learning_rate: f64,
    /// Documents per update.
    pub batch: usize,
}

impl BankConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BankError::InvalidInput(m));
        self.tree.validate()?;
        if self.anchor.trim().is_empty() {
            return bad("bank config names no anchor model".into());
        }
        if !(1..=1 << 20).contains(&self.dim) {
            return bad(format!(
                "anchor width must be in 1..=2^20, got {}",
                self.dim
            ));
        }
        if self.layers.is_empty() {
            return bad("bank config gives units to no layer".into());
        }
        let unique: HashSet<usize> = self.layers.iter().copied().collect();
        if unique.len() != self.layers.len() {
            return bad(format!("layers {:?} name a layer twice", self.layers));
        }
        if self.units_per_level.len() != self.tree.levels {
            return bad(format!(
                "{} units_per_level entries for a tree of {} levels",
                self.units_per_level.len(),
                self.tree.levels
            ));
        }
        if let Some(r) = self
            .units_per_level
            .iter()
            .find(|&&r| !(1..=1 << 16).contains(&r))
        {
            return bad(format!("units per level must be in 1..=65536, got {r}"));
        }
        Ok(())
    }

    /// `r` for a node at `level` (≥ 1), if the tree has that level.
    pub fn units_at(&self, level: usize) -> Option<usize> {
        level
            .checked_sub(1)
            .and_then(|i| self.units_per_level.get(i))
            .copied()
    }

    /// Parameters of one block at `level`: three `r × dim` matrices per
    /// layer.
    pub fn block_parameters(&self, level: usize) -> usize {
        self.units_at(level).unwrap_or(0) * self.dim * 3 * self.layers.len()
    }
}

/// What is known about one node's trained block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub node: NodeId,
    /// Documents the block was trained on: the ones whose removal must
    /// disable it (SPECS §5: blocks are the unit of unlearning).
    pub trained_on: Vec<String>,
    /// Optimiser steps taken.
    pub steps: usize,
    pub final_loss: Option<f64>,
    pub train_secs: f64,
    /// A disabled block is never served; its file may remain until the
    /// node is retrained.
    pub disabled: bool,
    /// Set by [`crate::Bank::save_block`]: one more than the node's
    /// previous version, 1 for its first block.
    pub version: u64,
}

/// A block's manifest entry: its meta and the fingerprint of its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BlockRecord {
    pub meta: BlockMeta,
    /// Size of the block file in bytes.
    pub bytes: u64,
    /// CRC32 of the whole block file.
    pub crc32: u32,
}

/// The whole manifest as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format: u32,
    pub config: BankConfig,
    /// Sorted by node id.
    pub blocks: Vec<BlockRecord>,
}

impl Manifest {
    pub fn new(config: BankConfig, blocks: Vec<BlockRecord>) -> Self {
        Self {
            format: FORMAT,
            config,
            blocks,
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join(MANIFEST_FILE), self)
    }

    /// Reads and checks the manifest on its own; the bank checks it against
    /// the tree and the block files.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let manifest: Manifest = read_json(&path)?;
        let bad = |m: String| BankError::corrupt(&path, m);
        if manifest.format != FORMAT {
            return Err(bad(format!(
                "unsupported manifest format {}",
                manifest.format
            )));
        }
        manifest.config.validate().map_err(|e| bad(e.to_string()))?;
        let mut seen = HashSet::new();
        for record in &manifest.blocks {
            if !seen.insert(&record.meta.node) {
                return Err(bad(format!("node {} has two entries", record.meta.node)));
            }
        }
        Ok(manifest)
    }
}
