//! Readers for the BEIR files a scenario draws from: `queries.jsonl` (query
//! texts for searches) and `corpus.jsonl` (titles and texts copied into
//! upserted documents, so they rank for real queries).

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Deserialize;

use crate::error::{LoadError, Result};

#[derive(Deserialize)]
struct QueryLine {
    text: String,
}

#[derive(Deserialize)]
struct CorpusLine {
    #[serde(rename = "_id", alias = "id")]
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    text: String,
}

/// A corpus document whose content upserts reuse under fresh ids.
#[derive(Debug, Clone)]
pub struct CorpusDoc {
    /// The original id, kept in the upserted document's metadata.
    pub id: String,
    pub title: String,
    pub text: String,
}

impl CorpusDoc {
    /// A query that finds this document: its title, or the first words of
    /// its text when it has none.
    pub fn title_query(&self) -> String {
        if !self.title.trim().is_empty() {
            return self.title.clone();
        }
        self.text
            .split_whitespace()
            .take(12)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn lines<T: for<'de> Deserialize<'de>>(path: &Path, mut f: impl FnMut(T)) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| LoadError::data(path, e))?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| LoadError::data(path, format!("line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(&line)
            .map_err(|e| LoadError::data(path, format!("line {}: {e}", i + 1)))?;
        f(item);
    }
    Ok(())
}

/// Every non-empty query text, in file order.
pub fn read_queries(path: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    lines(path, |q: QueryLine| {
        if !q.text.trim().is_empty() {
            out.push(q.text);
        }
    })?;
    if out.is_empty() {
        return Err(LoadError::data(path, "no queries with a non-empty `text`"));
    }
    Ok(out)
}

/// Every document with some title or text, in file order; only the first
/// `limit` of them when given.
pub fn read_corpus(path: &Path, limit: Option<usize>) -> Result<Vec<CorpusDoc>> {
    let mut out = Vec::new();
    let limit = limit.unwrap_or(usize::MAX);
    lines(path, |d: CorpusLine| {
        if out.len() < limit && !(d.title.trim().is_empty() && d.text.trim().is_empty()) {
            out.push(CorpusDoc {
                id: d.id,
                title: d.title,
                text: d.text,
            });
        }
    })?;
    if out.is_empty() {
        return Err(LoadError::data(path, "no documents with a title or text"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_demo_files_and_reports_bad_lines() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/demo");
        let q = read_queries(&demo.join("queries.jsonl")).unwrap();
        assert_eq!(q[0], "symptoms of a heart attack");
        let c = read_corpus(&demo.join("corpus.jsonl"), None).unwrap();
        assert_eq!(c.len(), 300);
        assert_eq!(
            read_corpus(&demo.join("corpus.jsonl"), Some(7))
                .unwrap()
                .len(),
            7
        );
        assert_eq!(c[0].id, "demo-001");
        assert_eq!(c[0].title, "The Sun");

        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("q.jsonl");
        std::fs::write(&bad, "{\"_id\": \"1\", \"text\": \"ok\"}\n\n{\"_id\": 2}\n").unwrap();
        let m = read_queries(&bad).unwrap_err().to_string();
        assert!(
            m.contains("line 3") && m.contains("missing field `text`"),
            "{m}"
        );
        let m = read_queries(&dir.path().join("nope.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(m.contains("nope.jsonl"), "{m}");
    }
}
