//! The anchor's hierarchical memory bank at serving time (SPECS §5).
//!
//! - Reads: embed the request's text with the dense encoder, descend the
//!   bank's tree, fetch the enabled blocks on the path, hand them to the
//!   anchor as appended feed-forward units.
//! - Unlearning: removing a document disables, durably and before the
//!   call returns, every block trained on it (reads then skip them), takes
//!   it out of the tree and the bank's texts, and queues the blocks for
//!   retraining without it ([`Jobs`]).
//! - Adding: a document is assigned to the leaf its embedding reaches and
//!   the blocks on its path are queued for retraining with it.
//!
//! The bank served lives in the data directory (`<data_dir>/memory-bank`),
//! copied from `lm.memory_bank_dir` on first start, so edits never touch
//! the shipped bank.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use mnemos_api::{LmMemoryJobsResponse, LmMemoryUsed, LmMissingBlock, TiersResponse};
use mnemos_config::{LmSettings, TierSettings};
use mnemos_llama::{FfnUnits, Llama};
use mnemos_membank::{Bank, NodeId};
use mnemos_models_core::Encoder;
use mnemos_tiers::Tiers;

use crate::lm_memory_jobs::Jobs;
use crate::{EngineError, Result};

/// A memory bank, what routes texts into it and what retrains it.
pub struct AnchorMemory {
    bank: Arc<RwLock<Bank>>,
    encoder: Arc<dyn Encoder>,
    min_similarity: Vec<f32>,
    leaf_gate: Option<f32>,
    jobs: Arc<Jobs>,
    /// Answers given without part of their path (a block not fetched).
    degraded: AtomicU64,
}

fn bank_error(e: mnemos_membank::BankError) -> EngineError {
    match e {
        mnemos_membank::BankError::InvalidInput(m) => EngineError::InvalidArgument(m),
        other => EngineError::Model(other.to_string()),
    }
}

/// Copies the directory tree `from` to `to` (which must not exist) via a
/// temporary sibling renamed into place, so a crash never leaves half a
/// bank under the served name.
fn copy_bank(from: &Path, to: &Path) -> std::io::Result<()> {
    fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let target = to.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                copy_dir(&entry.path(), &target)?;
            } else {
                std::fs::copy(entry.path(), &target)?;
                std::fs::File::open(&target)?.sync_all()?;
            }
        }
        Ok(())
    }
    let temp = to.with_extension("copying");
    if temp.exists() {
        std::fs::remove_dir_all(&temp)?;
    }
    copy_dir(from, &temp)?;
    std::fs::rename(&temp, to)?;
    if let Some(parent) = to.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

impl AnchorMemory {
    /// Opens the bank served from `serve_dir`, first copying it from
    /// `seed_dir` if `serve_dir` holds none; `None` (with a log line) when
    /// there is no bank or no encoder to route with. Blocks left disabled
    /// by an unlearning that a restart interrupted are queued again.
    pub fn open(
        settings: &LmSettings,
        tier_settings: &TierSettings,
        serve_dir: &Path,
        encoder: Option<Arc<dyn Encoder>>,
        model: Arc<Llama>,
    ) -> Result<Option<Self>> {
        let (seed_dir, corpus) = (&settings.memory_bank_dir, &settings.memory_bank_corpus);
        let (min_similarity, leaf_gate) =
            (&settings.memory_min_similarity, settings.memory_leaf_gate);
        let has_bank = |d: &Path| d.join(mnemos_membank::MANIFEST_FILE).is_file();
        let tiers = open_tiers(tier_settings, serve_dir)?;
        if !has_bank(serve_dir) && tier_settings.cold_url.is_some() {
            // A fresh server starts from the published bank in the bucket:
            // tree, manifest and texts now, blocks when first read.
            let tiers = tiers.as_ref().ok_or_else(|| {
                EngineError::Unavailable("tiers.cold_url needs tiers.enabled".into())
            })?;
            let timeout = std::time::Duration::from_secs(30);
            mnemos_membank::fetch_bank_files(tiers, serve_dir, timeout).map_err(|e| {
                EngineError::Unavailable(format!(
                    "cannot read the memory bank from {}: {e}",
                    tier_settings.cold_url.as_deref().unwrap_or_default()
                ))
            })?;
            tracing::info!(from = ?tier_settings.cold_url, to = %serve_dir.display(), "memory bank read from object storage");
        }
        if !has_bank(serve_dir) {
            if !has_bank(seed_dir) {
                tracing::info!(dir = %seed_dir.display(), "no memory bank; the anchor runs without memory");
                return Ok(None);
            }
            copy_bank(seed_dir, serve_dir).map_err(|e| {
                EngineError::Unavailable(format!(
                    "cannot copy the memory bank from {} to {}: {e}",
                    seed_dir.display(),
                    serve_dir.display()
                ))
            })?;
            tracing::info!(from = %seed_dir.display(), to = %serve_dir.display(), "memory bank copied");
        }
        let Some(encoder) = encoder else {
            tracing::warn!(
                "a memory bank needs the dense encoder to route texts; it is not served"
            );
            return Ok(None);
        };
        let mut bank = Bank::open_with(serve_dir, tiers).map_err(|e| {
            EngineError::Unavailable(format!(
                "cannot open the memory bank in {}: {e}",
                serve_dir.display()
            ))
        })?;
        if bank.texts().is_empty() {
            fill_texts(&mut bank, corpus)?;
        }
        if leaf_gate.is_some() {
            // The leaf gate compares with the documents' own embeddings.
            let (ids, texts): (Vec<String>, Vec<String>) = bank
                .texts()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .unzip();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let mut vectors = Vec::with_capacity(refs.len());
            for chunk in refs.chunks(64) {
                vectors.extend(
                    encoder
                        .embed(chunk)
                        .map_err(|e| EngineError::Model(e.to_string()))?,
                );
            }
            bank.set_document_vectors(ids.into_iter().zip(vectors));
        }
        if tier_settings.enabled && tier_settings.pin_levels > 0 {
            // Pinning reads the shallow blocks now: a bucket that cannot
            // deliver them is reported, and those blocks are fetched (or
            // skipped, degraded) per request instead.
            match bank.pin_levels(tier_settings.pin_levels) {
                Ok(n) => tracing::info!(
                    blocks = n,
                    levels = tier_settings.pin_levels,
                    "memory blocks pinned in RAM"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot pin the shallow memory blocks"),
            }
        }
        let (parameters, bytes) = bank.size();
        let disabled: Vec<NodeId> = bank
            .blocks()
            .filter(|m| m.disabled)
            .map(|m| m.node.clone())
            .collect();
        tracing::info!(
            dir = %serve_dir.display(),
            blocks = bank.blocks().count(),
            disabled = disabled.len(),
            parameters,
            bytes,
            "memory bank opened"
        );
        let bank = Arc::new(RwLock::new(bank));
        let jobs = Jobs::start(Arc::clone(&bank), model);
        jobs.queue(&disabled, "unlearn");
        Ok(Some(Self {
            bank,
            encoder,
            min_similarity: min_similarity.to_vec(),
            leaf_gate,
            jobs,
            degraded: AtomicU64::new(0),
        }))
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.encoder
            .embed(texts)
            .map_err(|e| EngineError::Model(e.to_string()))
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Bank>> {
        self.bank
            .read()
            .map_err(|_| EngineError::Internal("memory bank lock poisoned".into()))
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, Bank>> {
        self.bank
            .write()
            .map_err(|_| EngineError::Internal("memory bank lock poisoned".into()))
    }

    /// The memory for `text`: the merged units of the enabled blocks on its
    /// path (`None` when the path is empty) and what to report.
    pub fn fetch(&self, text: &str) -> Result<(Option<FfnUnits>, LmMemoryUsed)> {
        let vector = self
            .embed(&[text])?
            .pop()
            .ok_or_else(|| EngineError::Internal("the encoder returned no vector".into()))?;
        let bank = self.read()?;
        let path = bank
            .route_gated(&vector, &self.min_similarity, self.leaf_gate)
            .map_err(bank_error)?;
        let memory = bank.path_memory(&path).map_err(bank_error)?;
        drop(bank);
        if memory.degraded() {
            self.degraded.fetch_add(1, Ordering::Relaxed);
        }
        let report = LmMemoryUsed {
            path: memory.used.iter().map(|n| n.to_string()).collect(),
            params: memory.parameters,
            degraded: memory.degraded(),
            missing: memory
                .missing
                .iter()
                .map(|m| LmMissingBlock {
                    node: m.node.to_string(),
                    reason: m.reason.clone(),
                })
                .collect(),
            tiers: memory.tiers.iter().map(|t| t.to_string()).collect(),
        };
        Ok(((!memory.used.is_empty()).then_some(memory.units), report))
    }

    /// The tiers' placement and counters, when the bank reads through them.
    pub fn tiers(&self) -> Option<Result<TiersResponse>> {
        let bank = match self.read() {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        let summary = bank.tiers()?.summary();
        Some(
            serde_json::to_value(summary)
                .map(|summary| TiersResponse {
                    degraded_answers: self.degraded.load(Ordering::Relaxed),
                    summary,
                })
                .map_err(|e| EngineError::Internal(e.to_string())),
        )
    }

    /// Unlearns `ids`: disables every block trained on them (durable on
    /// return), takes them out of the tree and texts, queues the disabled
    /// blocks for retraining. Returns the ids the bank held.
    pub fn remove(&self, ids: &[String]) -> Result<Vec<String>> {
        let mut bank = self.write()?;
        let mut removed = Vec::new();
        let mut disabled: Vec<NodeId> = Vec::new();
        for id in ids {
            let nodes = bank.disable_blocks_trained_on(id).map_err(bank_error)?;
            let held = bank.remove_document(id).map_err(bank_error)?.is_some();
            if held || !nodes.is_empty() {
                removed.push(id.clone());
            }
            disabled.extend(nodes);
        }
        drop(bank);
        disabled.sort();
        disabled.dedup();
        if !disabled.is_empty() {
            tracing::info!(
                documents = removed.len(),
                blocks = disabled.len(),
                "memory blocks disabled"
            );
            self.jobs.queue(&disabled, "unlearn");
        }
        Ok(removed)
    }

    /// Adds (or replaces) documents: each goes to the leaf its embedding
    /// reaches, and the blocks on its path are queued for retraining.
    pub fn add(&self, docs: &[(String, String)]) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let texts: Vec<&str> = docs.iter().map(|(_, t)| t.as_str()).collect();
        let vectors = self.embed(&texts)?;
        let ids: Vec<String> = docs.iter().map(|(id, _)| id.clone()).collect();
        // A replaced document is unlearned first: its old text must go.
        self.remove(&ids)?;
        let mut bank = self.write()?;
        let mut touched: Vec<NodeId> = Vec::new();
        for ((id, _), v) in docs.iter().zip(&vectors) {
            touched.extend(bank.assign_document(id.clone(), v).map_err(bank_error)?);
        }
        bank.set_texts(docs.iter().cloned()).map_err(bank_error)?;
        drop(bank);
        touched.sort();
        touched.dedup();
        self.jobs.queue(&touched, "add");
        Ok(())
    }

    /// The background work, and the blocks disabled meanwhile.
    pub fn jobs(&self) -> Result<LmMemoryJobsResponse> {
        let disabled = self
            .read()?
            .blocks()
            .filter(|m| m.disabled)
            .map(|m| m.node.to_string())
            .collect();
        Ok(self.jobs.report(disabled))
    }
}

impl Drop for AnchorMemory {
    fn drop(&mut self) {
        self.jobs.shutdown();
    }
}

/// A shipped bank carries no document texts (they are the corpus's, and
/// data sets stay out of the repository); the served copy takes them from
/// the BEIR corpus the bank was trained on, so that blocks can be
/// retrained after an unlearning. Without the corpus, retraining jobs fail
/// and the affected blocks stay disabled: safe, and said in the log.
fn fill_texts(bank: &mut Bank, corpus: &Path) -> Result<()> {
    let file = if corpus.is_dir() {
        corpus.join("corpus.jsonl")
    } else {
        corpus.to_path_buf()
    };
    let Ok(raw) = std::fs::read_to_string(&file) else {
        tracing::warn!(
            corpus = %file.display(),
            "the memory bank has no document texts and the corpus is not readable: \
             blocks disabled by an unlearning cannot be retrained"
        );
        return Ok(());
    };
    let wanted: std::collections::HashSet<String> = bank
        .tree()
        .documents_under(&NodeId::root())
        .into_iter()
        .collect();
    let mut texts = Vec::new();
    for line in raw.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(id) = v["_id"].as_str().filter(|id| wanted.contains(*id)) else {
            continue;
        };
        let joined = mnemos_membank::document_text(
            v["title"].as_str().unwrap_or(""),
            v["text"].as_str().unwrap_or(""),
        );
        texts.push((id.to_string(), joined));
    }
    tracing::info!(
        found = texts.len(),
        documents = wanted.len(),
        corpus = %file.display(),
        "memory bank texts read from the corpus"
    );
    bank.set_texts(texts).map_err(bank_error)
}

/// The tiers the served bank reads its blocks through (warm directory:
/// the bank's own directory), or `None` when `tiers.enabled` is off.
fn open_tiers(settings: &TierSettings, serve_dir: &Path) -> Result<Option<Tiers>> {
    if !settings.enabled {
        return Ok(None);
    }
    let bad = |e: mnemos_tiers::TierError| EngineError::Unavailable(format!("memory tiers: {e}"));
    let mut config =
        mnemos_tiers::TiersConfig::new(settings.hot_budget_mb << 20, serve_dir.to_path_buf());
    config.fetch_timeout = std::time::Duration::from_millis(settings.fetch_timeout_ms);
    config.max_concurrent_fetches = settings.max_concurrent_fetches;
    if let Some(url) = &settings.cold_url {
        let options = crate::restore::cold_options(settings);
        config.cold = Some(mnemos_tiers::ColdStore::open(url, &options).map_err(bad)?);
    }
    mnemos_tiers::Tiers::new(config).map(Some).map_err(bad)
}

/// Where the served copy of the bank lives.
pub fn serve_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("memory-bank")
}
