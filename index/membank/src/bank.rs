//! The block store: a tree, a manifest, and one file per trained block.
//!
//! ```text
//! <dir>/tree.json                  the k-means tree (routing)
//! <dir>/manifest.json              config + one entry per trained block
//! <dir>/blocks/<node>.safetensors  that node's units alone
//! ```
//!
//! Writes take `&mut self` (one writer); reads take `&self` and share an
//! in-memory cache of loaded blocks, so a hot path's shallow blocks are read
//! from disk once. Every change is durable when its method returns: a block
//! file is written and fsynced before the manifest names it, and a disabled
//! block is disabled on disk before [`Bank::disable_blocks_trained_on`]
//! returns. A crash between a block file and its manifest entry leaves a
//! file whose checksum the manifest does not know: reading it is an error,
//! never stale or wrong weights.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use mnemos_llama::FfnUnits;
use mnemos_models_core::rng::SplitMix64;
use mnemos_tiers::Tiers;

use crate::block::{check_units, init_units, read_block, write_block, BlockShape};
use crate::files::sync_parent;
use crate::manifest::{BlockRecord, Manifest, MANIFEST_FILE};
use crate::{BankConfig, BankError, BlockMeta, NodeId, Result, Tree};

/// Sub-directory of the block files.
pub const BLOCKS_DIR: &str = "blocks";

/// A hierarchical memory bank on disk (SPECS §5).
#[derive(Debug)]
pub struct Bank {
    pub(crate) dir: PathBuf,
    pub(crate) config: BankConfig,
    pub(crate) tree: Tree,
    pub(crate) blocks: BTreeMap<NodeId, BlockRecord>,
    /// Decoded blocks, for a bank read without tiers (training).
    cache: Mutex<HashMap<NodeId, FfnUnits>>,
    /// When set, blocks are read through the memory tiers (RAM budget,
    /// mapped files in `dir`, object storage) instead of the cache.
    pub(crate) tiers: Option<Tiers>,
    texts: BTreeMap<String, String>,
    /// Unit-length embeddings of the documents, when the caller provided
    /// them (not persisted: they are recomputed from the texts): what the
    /// leaf gate of [`Bank::route_gated`] compares with.
    pub(crate) doc_vectors: HashMap<String, Vec<f32>>,
}

impl Bank {
    /// Starts a bank with no trained blocks in `dir` (created if needed;
    /// refused if it already holds a bank). `config.tree` must be the
    /// parameters `tree` was built with.
    pub fn create(dir: &Path, config: BankConfig, tree: Tree) -> Result<Bank> {
        config.validate()?;
        if config.tree != *tree.params() {
            return Err(BankError::InvalidInput(format!(
                "bank config's tree parameters {:?} differ from the tree's {:?}",
                config.tree,
                tree.params()
            )));
        }
        if dir.join(MANIFEST_FILE).exists() {
            return Err(BankError::InvalidInput(format!(
                "{} already holds a memory bank",
                dir.display()
            )));
        }
        let blocks_dir = dir.join(BLOCKS_DIR);
        fs::create_dir_all(&blocks_dir).map_err(BankError::io(&blocks_dir))?;
        sync_parent(&blocks_dir)?;
        tree.save(dir)?;
        // The manifest last: until it exists there is no bank here.
        Manifest::new(config.clone(), Vec::new()).save(dir)?;
        Ok(Bank {
            dir: dir.to_path_buf(),
            config,
            tree,
            blocks: BTreeMap::new(),
            cache: Mutex::default(),
            tiers: None,
            texts: BTreeMap::new(),
            doc_vectors: HashMap::new(),
        })
    }

    /// Opens the bank in `dir`, checking the manifest against the tree
    /// (same parameters, every block's node in it and not the root) and
    /// against the block files (each enabled block's file present and of
    /// the recorded size). Checksums are checked when a block is read.
    pub fn open(dir: &Path) -> Result<Bank> {
        Self::open_with(dir, None)
    }

    /// [`Bank::open`], reading blocks through `tiers` when given (whose
    /// warm directory must be `dir`). Block files are then not required
    /// locally: the tiers fetch them from object storage and check them
    /// against the manifest's size and CRC32 on every read.
    pub fn open_with(dir: &Path, tiers: Option<Tiers>) -> Result<Bank> {
        let manifest = Manifest::load(dir)?;
        let tree = Tree::load(dir)?;
        let manifest_path = dir.join(MANIFEST_FILE);
        let bad = |m: String| BankError::corrupt(&manifest_path, m);
        if manifest.config.tree != *tree.params() {
            return Err(bad("tree parameters differ from tree.json's".into()));
        }
        let mut blocks = BTreeMap::new();
        for record in manifest.blocks {
            let node = record.meta.node.clone();
            if node.is_root() || tree.node(&node).is_none() {
                return Err(bad(format!("block for node {node}, which the tree lacks")));
            }
            if !record.meta.disabled && tiers.is_none() {
                let path = block_path(dir, &node);
                match fs::metadata(&path) {
                    Ok(m) if m.len() == record.bytes => {}
                    Ok(m) => {
                        return Err(BankError::corrupt(
                            &path,
                            format!(
                                "block of node {node} is {} bytes, the manifest says {}",
                                m.len(),
                                record.bytes
                            ),
                        ))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(BankError::MissingBlock { node, path })
                    }
                    Err(e) => return Err(BankError::io(&path)(e)),
                }
            }
            blocks.insert(node, record);
        }
        Ok(Bank {
            dir: dir.to_path_buf(),
            config: manifest.config,
            tree,
            blocks,
            cache: Mutex::default(),
            tiers,
            texts: crate::texts::load(dir)?,
            doc_vectors: HashMap::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &BankConfig {
        &self.config
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The meta of a node's trained block, disabled or not.
    pub fn meta(&self, node: &NodeId) -> Option<&BlockMeta> {
        self.blocks.get(node).map(|r| &r.meta)
    }

    /// Metas of every trained block, by node id.
    pub fn blocks(&self) -> impl Iterator<Item = &BlockMeta> + '_ {
        self.blocks.values().map(|r| &r.meta)
    }

    /// Where a node's block file is (whether or not it exists).
    pub fn block_path(&self, node: &NodeId) -> PathBuf {
        block_path(&self.dir, node)
    }

    /// A fresh, inert block for `node`: `r_l` units in each configured
    /// layer, gate and down truncated-normal (std 0.02, cut at 2 std), up
    /// zero. Draws depend on `seed` and the node, so one seed initialises
    /// every node differently.
    pub fn init_block(&self, node: &NodeId, seed: u64) -> Result<FfnUnits> {
        let shape = self.shape(node)?;
        let mut rng = SplitMix64::new(seed ^ crate::tree::fnv1a(node.as_str()));
        init_units(shape, &mut rng)
    }

    /// Stores `units` as `node`'s block, replacing any earlier one, and
    /// records `meta` (its `node` must be `node`; its `version` is set
    /// here). Durable when it returns: the block file first, then the
    /// manifest. Returns the version stored.
    pub fn save_block(
        &mut self,
        node: &NodeId,
        units: &FfnUnits,
        mut meta: BlockMeta,
    ) -> Result<u64> {
        if meta.node != *node {
            return Err(BankError::InvalidInput(format!(
                "meta for node {} given with the block of node {node}",
                meta.node
            )));
        }
        let shape = self.shape(node)?;
        check_units(units, shape)?;
        let previous = self.blocks.get(node).cloned();
        meta.version = previous.as_ref().map_or(0, |r| r.meta.version) + 1;
        let version = meta.version;
        self.forget(node);
        let (bytes, crc32) = write_block(&self.block_path(node), units)?;
        self.blocks
            .insert(node.clone(), BlockRecord { meta, bytes, crc32 });
        if let Err(e) = self.write_manifest() {
            match previous {
                Some(record) => self.blocks.insert(node.clone(), record),
                None => self.blocks.remove(node),
            };
            return Err(e);
        }
        tracing::debug!(%node, version, bytes, "saved memory block");
        Ok(version)
    }

    /// A node's block, or `None` if it was never trained or is disabled.
    /// Loaded blocks are cached; a damaged file is an error.
    pub fn load_block(&self, node: &NodeId) -> Result<Option<FfnUnits>> {
        let shape = self.shape(node)?;
        let Some(record) = self.blocks.get(node).filter(|r| !r.meta.disabled) else {
            return Ok(None);
        };
        if let Some(tiers) = &self.tiers {
            let spec = self.spec_of(node, record);
            let fetched = tiers.get(&spec)?;
            return crate::block::decode_block(&fetched.bytes, &self.block_path(node), shape)
                .map(Some);
        }
        if let Some(units) = self.cache().get(node) {
            return Ok(Some(units.clone()));
        }
        let units = read_block(&self.block_path(node), shape, record.bytes, record.crc32)?;
        self.cache().insert(node.clone(), units.clone());
        Ok(Some(units))
    }

    /// Disables, durably, every block trained on `doc_id`, so the document's
    /// knowledge is no longer served (SPECS §5: blocks are the unit of
    /// removal). Returns every block trained on it, including any disabled
    /// before: the nodes to retrain without it.
    pub fn disable_blocks_trained_on(&mut self, doc_id: &str) -> Result<Vec<NodeId>> {
        let hit: Vec<NodeId> = self
            .blocks
            .iter()
            .filter(|(_, r)| r.meta.trained_on.iter().any(|d| d == doc_id))
            .map(|(n, _)| n.clone())
            .collect();
        let newly: Vec<NodeId> = hit
            .iter()
            .filter(|n| self.blocks.get(*n).is_some_and(|r| !r.meta.disabled))
            .cloned()
            .collect();
        if newly.is_empty() {
            return Ok(hit);
        }
        self.set_disabled(&newly, true);
        if let Err(e) = self.write_manifest() {
            self.set_disabled(&newly, false);
            return Err(e);
        }
        for n in &newly {
            self.forget(n);
        }
        tracing::info!(doc_id, blocks = newly.len(), "disabled memory blocks");
        Ok(hit)
    }

    /// The enabled, trained blocks on `path` merged into one set of units
    /// (a path's blocks are more hidden units side by side), the nodes
    /// actually used, and their parameter count. Nodes without a block
    /// are skipped; an empty result adds nothing to the model.
    pub fn path_units(&self, path: &[NodeId]) -> Result<(FfnUnits, Vec<NodeId>, usize)> {
        let mut used = Vec::with_capacity(path.len());
        let mut parts = Vec::with_capacity(path.len());
        for node in path {
            if let Some(units) = self.load_block(node)? {
                used.push(node.clone());
                parts.push(units);
            }
        }
        let merged = FfnUnits::merge(&parts.iter().collect::<Vec<_>>())?;
        let parameters = merged.parameters();
        Ok((merged, used, parameters))
    }

    /// Parameters of every trained block (disabled ones included, as their
    /// files remain) and the bytes of their files.
    pub fn size(&self) -> (usize, u64) {
        self.blocks.values().fold((0, 0), |(params, bytes), r| {
            let level = r.meta.node.level();
            (
                params + self.config.block_parameters(level),
                bytes + r.bytes,
            )
        })
    }

    /// Adds a document to the tree ([`Tree::assign`]) and saves the tree;
    /// returns the path whose blocks should be retrained to include it.
    pub fn assign_document(&mut self, id: String, vector: &[f32]) -> Result<Vec<NodeId>> {
        let path = self.tree.assign(id.clone(), vector)?;
        if let Err(e) = self.tree.save(&self.dir) {
            self.tree.remove(&id);
            return Err(e);
        }
        self.set_document_vectors([(id, vector.to_vec())]);
        Ok(path)
    }

    /// Takes a document out of the tree ([`Tree::remove`]) and out of the
    /// texts, and saves both. Its blocks are untouched: see
    /// [`Bank::disable_blocks_trained_on`].
    pub fn remove_document(&mut self, id: &str) -> Result<Option<Vec<NodeId>>> {
        self.doc_vectors.remove(id);
        if self.texts.remove(id).is_some() {
            crate::texts::save(&self.dir, &self.texts)?;
        }
        let Some(path) = self.tree.remove(id) else {
            return Ok(None);
        };
        if let Err(e) = self.tree.save(&self.dir) {
            if let Some(leaf) = path.last() {
                self.tree.place(id.to_string(), leaf);
            }
            return Err(e);
        }
        Ok(Some(path))
    }

    /// Forgets `node`'s block: a node left without documents (its last
    /// one unlearned) has nothing to hold. The manifest is written first
    /// (durable), then the file is deleted; a crash in between leaves an
    /// orphan file that nothing reads.
    pub fn drop_block(&mut self, node: &NodeId) -> Result<()> {
        let Some(record) = self.blocks.remove(node) else {
            return Ok(());
        };
        if let Err(e) = self.write_manifest() {
            self.blocks.insert(node.clone(), record);
            return Err(e);
        }
        self.forget(node);
        let path = self.block_path(node);
        if path.exists() {
            fs::remove_file(&path).map_err(BankError::io(&path))?;
        }
        Ok(())
    }

    /// The texts of the bank's documents (what blocks are retrained from).
    pub fn texts(&self) -> &BTreeMap<String, String> {
        &self.texts
    }

    /// Records document texts (replacing those of the same ids), durably.
    pub fn set_texts(&mut self, texts: impl IntoIterator<Item = (String, String)>) -> Result<()> {
        self.texts.extend(texts);
        crate::texts::save(&self.dir, &self.texts)
    }

    /// Records how each level is trained and the tokens per document,
    /// durably (see [`BankConfig::training`]).
    pub fn set_training(
        &mut self,
        training: Vec<crate::LevelTraining>,
        max_tokens: usize,
    ) -> Result<()> {
        if training.len() != self.config.tree.levels {
            return Err(BankError::InvalidInput(format!(
                "{} training entries for {} levels",
                training.len(),
                self.config.tree.levels
            )));
        }
        self.config.training = training;
        self.config.max_tokens = max_tokens;
        self.write_manifest()
    }

    /// The shape of `node`'s block; the root and unknown nodes have none.
    pub(crate) fn shape(&self, node: &NodeId) -> Result<BlockShape<'_>> {
        let units = self
            .tree
            .node(node)
            .filter(|n| !n.id().is_root())
            .and_then(|n| self.config.units_at(n.level()))
            .ok_or_else(|| BankError::UnknownNode(node.clone()))?;
        Ok(BlockShape {
            layers: &self.config.layers,
            units,
            dim: self.config.dim,
        })
    }

    fn set_disabled(&mut self, nodes: &[NodeId], disabled: bool) {
        for n in nodes {
            if let Some(r) = self.blocks.get_mut(n) {
                r.meta.disabled = disabled;
            }
        }
    }

    fn write_manifest(&self) -> Result<()> {
        let records = self.blocks.values().cloned().collect();
        Manifest::new(self.config.clone(), records).save(&self.dir)
    }

    /// Drops any decoded or RAM-tier copy of `node`'s block (replaced,
    /// disabled or dropped).
    pub(crate) fn forget(&self, node: &NodeId) {
        self.cache().remove(node);
        if let Some(tiers) = &self.tiers {
            tiers.invalidate(&block_key(node));
        }
    }

    /// The block cache. It only ever holds whole blocks, so one left by a
    /// panicking thread is still consistent.
    fn cache(&self) -> MutexGuard<'_, HashMap<NodeId, FfnUnits>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn block_path(dir: &Path, node: &NodeId) -> PathBuf {
    dir.join(block_key(node))
}

/// A block's key in the memory tiers: its path relative to the bank
/// directory, which is also its object name under the bank's prefix.
pub(crate) fn block_key(node: &NodeId) -> String {
    format!("{BLOCKS_DIR}/{}.safetensors", node.as_str())
}

#[cfg(test)]
#[path = "bank_tests.rs"]
mod tests;
