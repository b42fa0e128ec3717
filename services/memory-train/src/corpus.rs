//! The knowledge corpus: documents of a BEIR `corpus.jsonl`, a seeded
//! sample of them for the bank and a disjoint one held out.

use std::path::Path;

use mnemos_models_core::rng::SplitMix64;
use serde::Deserialize;

use crate::{MemoryTrainError, Result};

/// One document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    /// Title and text, as the anchor reads them.
    pub text: String,
}

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    text: String,
}

/// Reads `corpus.jsonl` (a file, or a BEIR directory holding one).
pub fn read_corpus(path: &Path) -> Result<Vec<Document>> {
    let file = if path.is_dir() {
        path.join("corpus.jsonl")
    } else {
        path.to_path_buf()
    };
    let raw = std::fs::read_to_string(&file).map_err(|e| MemoryTrainError::Io {
        path: file.clone(),
        source: e,
    })?;
    let mut docs = Vec::new();
    for (n, line) in raw
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let l: Line = serde_json::from_str(line).map_err(|e| {
            MemoryTrainError::Invalid(format!("{} line {}: {e}", file.display(), n + 1))
        })?;
        let text = mnemos_membank::document_text(&l.title, &l.text);
        if !text.is_empty() {
            docs.push(Document { id: l.id, text });
        }
    }
    Ok(docs)
}

/// A seeded sample of `bank` documents and a disjoint one of `held_out`.
pub fn sample(
    mut docs: Vec<Document>,
    bank: usize,
    held_out: usize,
    seed: u64,
) -> Result<(Vec<Document>, Vec<Document>)> {
    if bank == 0 || bank + held_out > docs.len() {
        return Err(MemoryTrainError::Invalid(format!(
            "asked for {bank} bank and {held_out} held-out documents from a corpus of {}",
            docs.len()
        )));
    }
    let mut rng = SplitMix64::new(seed);
    for i in (1..docs.len()).rev() {
        docs.swap(i, rng.below(i + 1));
    }
    docs.truncate(bank + held_out);
    let held = docs.split_off(bank);
    Ok((docs, held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_beir_lines_and_samples_disjoint_sets() {
        let dir = tempfile::tempdir().expect("dir");
        let lines: Vec<String> = (0..10)
            .map(|i| format!(r#"{{"_id": "d{i}", "title": "T{i}", "text": "body {i}"}}"#))
            .collect();
        std::fs::write(dir.path().join("corpus.jsonl"), lines.join("\n")).expect("write");
        let docs = read_corpus(dir.path()).expect("read");
        assert_eq!(docs.len(), 10);
        assert_eq!(docs[3].text, "T3\nbody 3");
        let (a, b) = sample(docs.clone(), 6, 3, 1).expect("sample");
        assert_eq!((a.len(), b.len()), (6, 3));
        assert!(a.iter().all(|d| !b.contains(d)));
        assert_eq!(sample(docs.clone(), 6, 3, 1).expect("again").0, a);
        assert!(sample(docs, 8, 3, 1).is_err());
    }
}
