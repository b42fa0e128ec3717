//! The write path. Order for every write: (1) do the work that can fail
//! cheaply (validation, embedding) before anything is stored; (2) append to
//! the store's log and fsync — from here the write is durable; (3) apply to
//! each index. The caller acknowledges after (3), so a client reads its own
//! write; a crash between (2) and (3) is repaired by start-up reconciliation.

use std::sync::Arc;
use std::time::Instant;

use mnemos_index_core::{Document, IndexWrite, Seq};

use crate::{blocking, dense_text, Engine, EngineError, Result};

/// Most documents in one upsert call.
pub const MAX_BATCH_DOCS: usize = 10_000;

/// Where an upsert spent its time, for `mnemos ingest`'s report.
#[derive(Debug, Default, Clone, Copy)]
pub struct UpsertTimings {
    pub embed_s: f64,
    pub store_s: f64,
    pub bm25_s: f64,
    /// The dense HNSW index and the Hypencoder index together.
    pub hnsw_s: f64,
}

impl std::ops::AddAssign for UpsertTimings {
    fn add_assign(&mut self, o: Self) {
        self.embed_s += o.embed_s;
        self.store_s += o.store_s;
        self.bm25_s += o.bm25_s;
        self.hnsw_s += o.hnsw_s;
    }
}

#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub seq: Seq,
    /// Upserted count, or for removes the ids that existed.
    pub affected: Vec<String>,
    pub timings: UpsertTimings,
}

impl Engine {
    /// Inserts or replaces documents. Durable and searchable on return;
    /// with `lm.memory_learn_documents`, also added to the anchor's memory
    /// bank (its blocks retrain in the background).
    pub async fn upsert(&self, docs: Vec<Document>) -> Result<WriteOutcome> {
        let learn = self.settings.lm.memory_learn_documents;
        self.upsert_with(docs, learn).await
    }

    /// [`Self::upsert`], adding to the memory bank only if `memory`.
    pub async fn upsert_with(&self, docs: Vec<Document>, memory: bool) -> Result<WriteOutcome> {
        if docs.is_empty() {
            return Err(EngineError::InvalidArgument(
                "`documents` must not be empty".into(),
            ));
        }
        if docs.len() > MAX_BATCH_DOCS {
            return Err(EngineError::InvalidArgument(format!(
                "at most {MAX_BATCH_DOCS} documents per request, got {}",
                docs.len()
            )));
        }
        self.disk.check_add()?;
        let mut t = UpsertTimings::default();
        let vectors = match &self.dense {
            Some(dense) => {
                let started = Instant::now();
                let texts = docs.iter().map(|d| dense_text(&d.title, &d.text)).collect();
                let v = dense.pool.embed(texts).await?;
                t.embed_s = started.elapsed().as_secs_f64();
                Some(v)
            }
            None => None,
        };

        let _order = self.write_lock.lock().await;
        let started = Instant::now();
        let store = Arc::clone(&self.store);
        let docs = Arc::new(docs);
        let for_store = Arc::clone(&docs);
        let seq = blocking(move || Ok(store.upsert(for_store.as_ref().clone())?)).await?;
        t.store_s = started.elapsed().as_secs_f64();

        if let Some(bm25) = &self.bm25 {
            let started = Instant::now();
            let bm25 = Arc::clone(bm25);
            let docs = Arc::clone(&docs);
            blocking(move || {
                let entries: Vec<(&str, Seq, &Document)> =
                    docs.iter().map(|d| (d.id.as_str(), seq, d)).collect();
                Ok(bm25.upsert(&entries)?)
            })
            .await?;
            t.bm25_s = started.elapsed().as_secs_f64();
        }
        if let (Some(dense), Some(vectors)) = (&self.dense, vectors) {
            let started = Instant::now();
            let dense = Arc::clone(dense);
            let hypencoder = self.hypencoder.clone();
            let docs = Arc::clone(&docs);
            blocking(move || {
                let entries: Vec<(&str, Seq, &[f32])> = docs
                    .iter()
                    .zip(&vectors)
                    .map(|(d, v)| (d.id.as_str(), seq, v.as_slice()))
                    .collect();
                dense.index.upsert(&entries)?;
                // The same vectors: the Hypencoder scores the dense
                // encoder's document vectors.
                if let Some(h) = hypencoder {
                    h.index.upsert(&entries)?;
                }
                Ok(())
            })
            .await?;
            t.hnsw_s = started.elapsed().as_secs_f64();
        }
        if let (true, Some(lm)) = (memory, &self.lm) {
            let texts = docs
                .iter()
                .map(|d| {
                    (
                        d.id.clone(),
                        mnemos_membank::document_text(&d.title, &d.text),
                    )
                })
                .collect();
            lm.memory_add(texts).await?;
        }
        Ok(WriteOutcome {
            seq,
            affected: docs.iter().map(|d| d.id.clone()).collect(),
            timings: t,
        })
    }

    /// Removes documents. Once this returns, no search returns these ids,
    /// also after a restart or a crash.
    pub async fn remove(&self, ids: Vec<String>) -> Result<WriteOutcome> {
        if ids.is_empty() {
            return Err(EngineError::InvalidArgument(
                "`ids` must not be empty".into(),
            ));
        }
        if ids.len() > MAX_BATCH_DOCS {
            return Err(EngineError::InvalidArgument(format!(
                "at most {MAX_BATCH_DOCS} ids per request, got {}",
                ids.len()
            )));
        }
        let _order = self.write_lock.lock().await;
        // The memory bank first: its blocks are disabled durably before the
        // store forgets the document, so a crash in between leaves the
        // blocks off (over-removal, and the caller got no answer) rather
        // than a removed document still answerable from memory.
        let from_memory = match &self.lm {
            Some(lm) => lm.memory_remove(ids.clone()).await?,
            None => Vec::new(),
        };
        let store = Arc::clone(&self.store);
        let (mut removed, seq) = blocking(move || Ok(store.remove(&ids)?)).await?;
        if !removed.is_empty() {
            let bm25 = self.bm25.clone();
            let dense = self.dense.clone();
            let hypencoder = self.hypencoder.clone();
            let gone = removed.clone();
            blocking(move || {
                let ids: Vec<&str> = gone.iter().map(String::as_str).collect();
                if let Some(b) = bm25 {
                    IndexWrite::<Document>::remove(b.as_ref(), &ids)?;
                }
                if let Some(d) = dense {
                    IndexWrite::<[f32]>::remove(&d.index, &ids)?;
                }
                if let Some(h) = hypencoder {
                    IndexWrite::<[f32]>::remove(&h.index, &ids)?;
                }
                Ok(())
            })
            .await?;
        }
        for id in from_memory {
            if !removed.contains(&id) {
                removed.push(id);
            }
        }
        Ok(WriteOutcome {
            seq,
            affected: removed,
            timings: UpsertTimings::default(),
        })
    }
}
