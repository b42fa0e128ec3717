//! The training data: corpus, training queries with their judged documents,
//! and a deterministic dev split. Only `qrels/train.tsv` is read; the test
//! qrels stay unseen, so test figures remain honest.

use std::collections::HashMap;
use std::path::Path;

use mnemos_engine::beir::{read_corpus, read_qrels, read_queries};
use mnemos_index_core::Document;

use crate::{Result, TrainError};

/// One judged training query.
#[derive(Debug, Clone)]
pub struct Query {
    pub id: String,
    pub text: String,
    /// Corpus positions of its relevant documents (grade > 0).
    pub positives: Vec<usize>,
    /// Its judgments by document id, for nDCG.
    pub judged: HashMap<String, i32>,
}

/// Corpus, queries and the train/dev split.
#[derive(Debug, Clone)]
pub struct TrainData {
    /// Documents in corpus-file order; positions index every other table.
    pub corpus: Vec<Document>,
    /// Judged queries sorted by id.
    pub queries: Vec<Query>,
    /// Positions in `queries` used for training.
    pub train: Vec<usize>,
    /// Positions in `queries` held out for model selection.
    pub dev: Vec<usize>,
}

impl TrainData {
    /// Reads `dir`'s corpus, queries and `qrels/train.tsv`; every
    /// `dev_every`-th query (sorted by id) goes to the dev set.
    pub fn load(dir: &Path, dev_every: usize) -> Result<Self> {
        let mut corpus = Vec::new();
        read_corpus(&dir.join("corpus.jsonl"), |d| {
            corpus.push(d);
            Ok(())
        })?;
        let position: HashMap<&str, usize> = corpus
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.as_str(), i))
            .collect();
        let texts = read_queries(&dir.join("queries.jsonl"))?;
        let qrels = read_qrels(&dir.join("qrels").join("train.tsv"))?;
        let mut queries: Vec<Query> = qrels
            .into_iter()
            .filter_map(|(id, judged)| {
                let text = texts.get(&id)?.clone();
                let mut positives: Vec<usize> = judged
                    .iter()
                    .filter(|(_, &g)| g > 0)
                    .filter_map(|(d, _)| position.get(d.as_str()).copied())
                    .collect();
                positives.sort_unstable();
                (!positives.is_empty()).then_some(Query {
                    id,
                    text,
                    positives,
                    judged,
                })
            })
            .collect();
        if queries.len() < 2 * dev_every {
            return Err(TrainError::Invalid(format!(
                "{}: only {} usable training queries",
                dir.display(),
                queries.len()
            )));
        }
        queries.sort_by(|a, b| a.id.cmp(&b.id));
        let (dev, train): (Vec<usize>, Vec<usize>) =
            (0..queries.len()).partition(|i| i % dev_every == dev_every - 1);
        Ok(Self {
            corpus,
            queries,
            train,
            dev,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BEIR directory with 6 documents, 8 training queries and one test
    /// query that must never be read.
    fn collection() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let corpus: String = (0..6)
            .map(|i| format!("{{\"_id\": \"d{i}\", \"title\": \"t{i}\", \"text\": \"x{i}\"}}\n"))
            .collect();
        std::fs::write(dir.path().join("corpus.jsonl"), corpus).unwrap();
        let queries: String = (0..9)
            .map(|i| format!("{{\"_id\": \"q{i}\", \"text\": \"query {i}\"}}\n"))
            .collect();
        std::fs::write(dir.path().join("queries.jsonl"), queries).unwrap();
        std::fs::create_dir(dir.path().join("qrels")).unwrap();
        let mut train = String::from("query-id\tcorpus-id\tscore\n");
        for i in 0..8 {
            train += &format!("q{i}\td{}\t1\n", i % 6);
        }
        train += "q0\td5\t0\n"; // judged, not relevant
        train += "q7\tmissing\t1\n"; // not in the corpus
        std::fs::write(dir.path().join("qrels/train.tsv"), train).unwrap();
        std::fs::write(dir.path().join("qrels/test.tsv"), "q8\td0\t1\n").unwrap();
        dir
    }

    #[test]
    fn splits_training_queries_and_never_reads_test_qrels() {
        let dir = collection();
        let data = TrainData::load(dir.path(), 4).unwrap();
        assert_eq!(data.corpus.len(), 6);
        assert_eq!(data.queries.len(), 8, "q8 is a test query");
        assert!(data.queries.iter().all(|q| q.id != "q8"));
        // Sorted by id; every 4th is dev.
        let dev: Vec<&str> = data
            .dev
            .iter()
            .map(|&i| data.queries[i].id.as_str())
            .collect();
        assert_eq!(dev, ["q3", "q7"]);
        assert_eq!(data.train.len(), 6);
        let q0 = &data.queries[0];
        assert_eq!(q0.positives, vec![0], "grade 0 is not a positive");
        assert_eq!(q0.judged.len(), 2);
        let q7 = &data.queries[7];
        assert_eq!(q7.positives, vec![1], "unknown documents are skipped");
    }

    #[test]
    fn too_few_queries_is_an_error() {
        let dir = collection();
        let err = TrainData::load(dir.path(), 8).unwrap_err();
        assert!(err.to_string().contains("training queries"), "{err}");
    }
}
