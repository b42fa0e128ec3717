//! Readers for the BEIR collection layout: `corpus.jsonl`, `queries.jsonl`,
//! `qrels/<split>.tsv`. Used by `mnemos ingest --beir` and `mnemos eval`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use mnemos_index_core::Document;
use serde::Deserialize;

use crate::{EngineError, Result};

#[derive(Deserialize)]
struct CorpusLine {
    #[serde(rename = "_id", alias = "id")]
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    metadata: serde_json::Value,
}

#[derive(Deserialize)]
struct QueryLine {
    #[serde(rename = "_id", alias = "id")]
    id: String,
    text: String,
}

fn bad(path: &Path, line: usize, e: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidArgument(format!("{}:{line}: {e}", path.display()))
}

fn open(path: &Path) -> Result<BufReader<std::fs::File>> {
    std::fs::File::open(path)
        .map(BufReader::new)
        .map_err(|e| EngineError::InvalidArgument(format!("cannot open {}: {e}", path.display())))
}

/// Streams documents from a JSONL corpus (BEIR's `_id`/`title`/`text`, or
/// `id`), calling `f` per document. Blank lines are skipped.
pub fn read_corpus(path: &Path, mut f: impl FnMut(Document) -> Result<()>) -> Result<usize> {
    read_corpus_from(open(path)?, path, &mut f)
}

/// Same as [`read_corpus`] over any reader (the embedded demo collection).
pub fn read_corpus_from(
    reader: impl BufRead,
    path: &Path,
    f: &mut dyn FnMut(Document) -> Result<()>,
) -> Result<usize> {
    let mut n = 0;
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| bad(path, i + 1, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let c: CorpusLine = serde_json::from_str(&line).map_err(|e| bad(path, i + 1, e))?;
        f(Document {
            id: c.id,
            title: c.title,
            text: c.text,
            metadata: c.metadata,
        })?;
        n += 1;
    }
    Ok(n)
}

/// id → text of every query.
pub fn read_queries(path: &Path) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (i, line) in open(path)?.lines().enumerate() {
        let line = line.map_err(|e| bad(path, i + 1, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let q: QueryLine = serde_json::from_str(&line).map_err(|e| bad(path, i + 1, e))?;
        out.insert(q.id, q.text);
    }
    Ok(out)
}

/// Relevance judgments: query id → (doc id → grade).
pub type Qrels = HashMap<String, HashMap<String, i32>>;

/// Reads a tab-separated qrels file with a `query-id corpus-id score` header.
pub fn read_qrels(path: &Path) -> Result<Qrels> {
    let mut out: Qrels = HashMap::new();
    for (i, line) in open(path)?.lines().enumerate() {
        let line = line.map_err(|e| bad(path, i + 1, e))?;
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        if cols.len() < 3 || (i == 0 && cols[2].parse::<i32>().is_err()) {
            continue; // header or blank
        }
        let grade: i32 = cols[2].parse().map_err(|e| bad(path, i + 1, e))?;
        out.entry(cols[0].to_string())
            .or_default()
            .insert(cols[1].to_string(), grade);
    }
    Ok(out)
}
