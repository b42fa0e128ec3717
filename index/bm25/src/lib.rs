//! BM25 sparse retrieval for mnemos, stored in tantivy and scored by us.
//!
//! tantivy provides what is hard to get right: segment files, atomic
//! commits, deletes, merges, memory-mapped postings. It does not let us pick
//! BM25's `k1` and `b` (they are constants in tantivy 0.27), and the BEIR
//! baselines we compare against use Anserini's `k1 = 0.9, b = 0.4`. So the
//! index stores documents with tantivy, and the `scorer` module evaluates
//! queries itself, term at a time, over tantivy's postings and field norms.
//!
//! Design choices:
//! - **Text analysis** follows Lucene's `EnglishAnalyzer`, which Anserini
//!   uses; the `analyzer` module documents the chain and where it differs.
//! - **Queries are bags of words**: the query text goes through the same
//!   analyzer, with no query parser, so user text can never be a syntax
//!   error; a query with no indexable term (empty, only stop words) simply
//!   matches nothing.
//! - **Read-your-writes**: every [`IndexWrite`] call ends with a commit and
//!   an explicit reader reload (tantivy's automatic reload lags commits by
//!   up to ~0.5 s), so writes are visible — and durable — on return. Batch
//!   writes: one call per batch costs one commit.
//! - **One writer**: tantivy allows a single `IndexWriter` per index
//!   directory; it lives behind a mutex, and a second `open` of the same
//!   directory fails with [`Bm25Error::Locked`].
//!
//! No tantivy type appears in the public API.

mod analyzer;
mod error;
mod ids;
mod params;
mod schema;
mod scorer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use mnemos_index_core::{Document, Hit, IndexRead, IndexWrite, Seq};
use tantivy::directory::MmapDirectory;
use tantivy::tokenizer::{TextAnalyzer, MAX_TOKEN_LEN};
use tantivy::{
    doc, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument,
    TantivyError, Term,
};

use crate::error::Context;
pub use crate::error::{Bm25Error, Result};
use crate::ids::IdCache;
pub use crate::params::Bm25Params;
use crate::schema::Fields;

/// Memory tantivy may use to buffer new documents before flushing a
/// segment. Large enough that bulk loads of ~100k abstracts flush rarely,
/// small enough to sit beside the dense models; tantivy splits it over at
/// most four indexing threads (15 MB minimum each).
const WRITER_MEMORY_BYTES: usize = 64 * 1024 * 1024;

/// A BM25 index over documents' `title` and `text`.
///
/// `Send + Sync`: searches run concurrently on immutable snapshots; writes
/// serialise on the writer.
pub struct Bm25Index {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    params: Bm25Params,
    analyzer: TextAnalyzer,
    ids: IdCache,
}

impl Bm25Index {
    /// Opens the index stored in `dir`, creating the directory and an empty
    /// index if there is none. Fails if `params` are out of range, if the
    /// directory holds an index with another schema, or if another writer
    /// holds it.
    pub fn open(dir: &Path, params: Bm25Params) -> Result<Self> {
        params.validate()?;
        std::fs::create_dir_all(dir).map_err(|source| Bm25Error::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        let directory = MmapDirectory::open(dir).context("opening the index directory")?;
        let exists = Index::exists(&directory).context("looking for an existing index")?;
        let index = if exists {
            let index = Index::open(directory).map_err(|err| match err {
                TantivyError::SchemaError(_) | TantivyError::DataCorruption(_) => {
                    Bm25Error::Corrupt(err.to_string())
                }
                other => backend("opening the index", other),
            })?;
            schema::fields_of(&index.schema())?;
            index
        } else {
            let (schema, _) = schema::build();
            Index::create(directory, schema, IndexSettings::default())
                .context("creating the index")?
        };
        let opened = Self::from_index(index, params, Some(dir))?;
        tracing::info!(
            dir = %dir.display(),
            docs = opened.doc_count(),
            k1 = params.k1,
            b = params.b,
            "opened BM25 index"
        );
        Ok(opened)
    }

    /// An empty index held in memory only, for tests and throw-away use.
    pub fn in_ram(params: Bm25Params) -> Result<Self> {
        params.validate()?;
        let (schema, _) = schema::build();
        Self::from_index(Index::create_in_ram(schema), params, None)
    }

    fn from_index(index: Index, params: Bm25Params, dir: Option<&Path>) -> Result<Self> {
        let (_, fields) = schema::build();
        // The schema names the analyzer; the analyzer itself is not stored,
        // so it must be registered on every open.
        index
            .tokenizers()
            .register(analyzer::ANALYZER_NAME, analyzer::english_analyzer());
        let writer = index.writer(WRITER_MEMORY_BYTES).map_err(|err| match err {
            TantivyError::LockFailure(..) => Bm25Error::Locked {
                path: dir.map(Path::to_path_buf).unwrap_or_default(),
            },
            other => backend("creating the writer", other),
        })?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .context("opening a reader")?;
        let ids = IdCache::default();
        ids.refresh(&reader.searcher())?;
        Ok(Self {
            reader,
            writer: Mutex::new(writer),
            fields,
            params,
            analyzer: analyzer::english_analyzer(),
            ids,
        })
    }

    /// The parameters [`IndexRead::search`] scores with.
    pub fn params(&self) -> Bm25Params {
        self.params
    }

    /// Number of live documents (the same as [`IndexRead::len`]).
    pub fn doc_count(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Like [`IndexRead::search`], scoring with `params` instead of the
    /// index's own: the same index can be evaluated under several settings.
    pub fn search_with_params(
        &self,
        query: &str,
        k: usize,
        params: Bm25Params,
    ) -> Result<Vec<Hit>> {
        params.validate()?;
        let terms = analyzer::analyze(&mut self.analyzer.clone(), query);
        let searcher = self.reader.searcher();
        let mut ids = self.ids.for_searcher(&searcher);
        scorer::top_k(&searcher, &mut ids, self.fields.contents, &terms, params, k)
    }

    /// The analysed terms of `text`, as they are indexed and queried; for
    /// debugging relevance.
    pub fn analyze(&self, text: &str) -> Vec<String> {
        analyzer::analyze(&mut self.analyzer.clone(), text)
    }

    fn to_tantivy(&self, id: &str, seq: Seq, document: &Document) -> TantivyDocument {
        let f = &self.fields;
        let contents = format!("{}\n{}", document.title, document.text);
        doc!(
            f.id => id,
            f.seq => seq,
            f.title => document.title.as_str(),
            f.text => document.text.as_str(),
            f.contents => contents,
        )
    }

    /// Runs `ops` on the writer, commits and reloads the reader, so that the
    /// effect is visible to searches once this returns. On failure nothing
    /// of `ops` stays queued: a later commit must not publish half a batch.
    fn write(&self, ops: impl FnOnce(&IndexWriter) -> Result<()>) -> Result<()> {
        let mut writer = self.lock_writer();
        let committed = ops(&writer).and_then(|()| writer.commit().context("committing"));
        if let Err(err) = committed {
            if let Err(rollback) = writer.rollback() {
                tracing::warn!(%rollback, "rollback after a failed write failed");
            }
            return Err(err);
        }
        self.reader.reload().context("reloading the reader")?;
        self.ids.refresh(&self.reader.searcher())
    }

    /// The writer; if a thread panicked while holding it, drops whatever that
    /// thread had queued and carries on, rather than failing every later
    /// write.
    fn lock_writer(&self) -> MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(|poisoned| {
            let mut writer = poisoned.into_inner();
            if let Err(err) = writer.rollback() {
                tracing::warn!(%err, "rollback after a panicked write failed");
            }
            self.writer.clear_poison();
            writer
        })
    }
}

impl std::fmt::Debug for Bm25Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bm25Index")
            .field("params", &self.params)
            .field("docs", &self.doc_count())
            .finish_non_exhaustive()
    }
}

fn backend(context: &'static str, err: TantivyError) -> Bm25Error {
    Bm25Error::Backend {
        context,
        message: err.to_string(),
    }
}

impl IndexRead<str> for Bm25Index {
    /// BM25 over `title + "\n" + text` with the index's [`Bm25Params`].
    /// Empty and stop-word-only queries return no hits.
    fn search(&self, query: &str, k: usize) -> mnemos_index_core::Result<Vec<Hit>> {
        Ok(self.search_with_params(query, k, self.params)?)
    }

    fn len(&self) -> usize {
        usize::try_from(self.doc_count()).unwrap_or(usize::MAX)
    }
}

impl IndexWrite<Document> for Bm25Index {
    /// Replaces each id's document with the given one (the id in the tuple
    /// wins over `Document::id`). One commit per call: pass thousands of
    /// documents at once when bulk loading. If an id appears twice in
    /// `entries`, the later entry wins. Visible and durable on return; on
    /// error nothing of the batch is applied.
    fn upsert(&self, entries: &[(&str, Seq, &Document)]) -> mnemos_index_core::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        if let Some(&(id, _, _)) = entries.iter().find(|(id, _, _)| id.len() > MAX_TOKEN_LEN) {
            return Err(Bm25Error::IdTooLong {
                len: id.len(),
                max: MAX_TOKEN_LEN,
            }
            .into());
        }
        self.write(|writer| {
            for &(id, seq, document) in entries {
                writer.delete_term(Term::from_field_text(self.fields.id, id));
                writer
                    .add_document(self.to_tantivy(id, seq, document))
                    .context("adding a document")?;
            }
            Ok(())
        })?;
        tracing::debug!(docs = entries.len(), "upserted into BM25 index");
        Ok(())
    }

    /// Invisible to searches, and durably gone, on return. Document
    /// frequencies keep counting removed documents until tantivy merges
    /// their segments, as in Lucene.
    fn remove(&self, ids: &[&str]) -> mnemos_index_core::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(|writer| {
            for id in ids {
                writer.delete_term(Term::from_field_text(self.fields.id, id));
            }
            Ok(())
        })?;
        tracing::debug!(ids = ids.len(), "removed from BM25 index");
        Ok(())
    }

    /// Nothing to do: every `upsert` and `remove` has already committed,
    /// and a tantivy commit syncs the segment files and then atomically
    /// replaces the index's `meta.json`.
    fn persist(&self) -> mnemos_index_core::Result<()> {
        Ok(())
    }

    /// Reads `id` and `seq` of every live document from the fast columns.
    fn indexed_versions(&self) -> mnemos_index_core::Result<HashMap<String, Seq>> {
        let searcher = self.reader.searcher();
        let mut ids = self.ids.for_searcher(&searcher);
        let mut versions = HashMap::with_capacity(self.len());
        for (segment_ord, segment) in searcher.segment_readers().iter().enumerate() {
            let seqs = segment
                .fast_fields()
                .u64(schema::SEQ)
                .context("opening the seq column")?;
            for doc in segment.doc_ids_alive() {
                let seq = seqs
                    .first(doc)
                    .ok_or_else(|| Bm25Error::Corrupt(format!("document {doc} has no seq")))?;
                versions.insert(ids.id(segment_ord as u32, doc)?.to_owned(), seq);
            }
        }
        Ok(versions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Bm25Index>();
    }

    /// With tantivy's own constants our scorer must reproduce tantivy's
    /// BM25, across several segments, with deletes, and with a repeated
    /// query term counting like a repeated SHOULD clause.
    #[test]
    fn classic_params_reproduce_tantivys_scores() {
        use tantivy::collector::TopDocs;
        use tantivy::query::BooleanQuery;

        let index = Bm25Index::in_ram(Bm25Params::LUCENE_CLASSIC).unwrap();
        let words = ["heart", "lung", "kidney", "liver", "cell", "gene", "brain"];
        let docs: Vec<(String, Document)> = (0..60usize)
            .map(|i| {
                let text: Vec<&str> = (0..(3 + i % 11))
                    .map(|j| words[(i * 7 + j * j * 3) % words.len()])
                    .collect();
                let document = Document {
                    id: String::new(),
                    title: format!("Study {i}"),
                    text: text.join(" "),
                    metadata: serde_json::Value::Null,
                };
                (format!("d{i}"), document)
            })
            .collect();
        for batch in docs.chunks(20) {
            let entries: Vec<(&str, Seq, &Document)> =
                batch.iter().map(|(id, d)| (id.as_str(), 1, d)).collect();
            index.upsert(&entries).unwrap();
        }
        index.remove(&["d3", "d30", "d59"]).unwrap();
        // The id cache follows the reader's segments.
        assert_eq!(
            index.ids.len(),
            index.reader.searcher().segment_readers().len()
        );

        let query = "heart kidney kidney gene";
        let ours: HashMap<String, f32> = index
            .search(query, 100)
            .unwrap()
            .into_iter()
            .map(|hit| (hit.id, hit.score))
            .collect();

        let searcher = index.reader.searcher();
        let terms = index
            .analyze(query)
            .iter()
            .map(|t| Term::from_field_text(index.fields.contents, t))
            .collect();
        let reference = searcher
            .search(
                &BooleanQuery::new_multiterms_query(terms),
                &TopDocs::with_limit(100).order_by_score(),
            )
            .unwrap();
        assert!(searcher.segment_readers().len() > 1);
        assert_eq!(ours.len(), reference.len());
        let mut ids = index.ids.for_searcher(&searcher);
        for (score, address) in reference {
            let id = ids
                .id(address.segment_ord, address.doc_id)
                .unwrap()
                .to_owned();
            let diff = (ours[&id] - score).abs();
            assert!(
                diff <= 1e-4 * score,
                "{id}: ours {} vs tantivy {score}",
                ours[&id]
            );
        }
    }

    #[test]
    fn invalid_params_are_refused_before_anything_is_created() {
        let dir = std::env::temp_dir().join("mnemos-bm25-never-created");
        let bad = Bm25Params { k1: 0.9, b: 2.0 };
        assert!(matches!(
            Bm25Index::open(&dir, bad),
            Err(Bm25Error::InvalidParams(_))
        ));
        assert!(!dir.exists());
        assert!(Bm25Index::in_ram(bad).is_err());
    }
}
