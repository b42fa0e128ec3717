//! Finding and reading the BEIR test collections, and scoring runs on them.
//! Shared by the integration tests and the benchmark (which includes this
//! file by path).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use mnemos_index_core::{Document, Hit};

/// The shared data folder: `$MNEMOS_SHARED_DATA`, else `shared/data` beside
/// the workspace (where CI and the dev machines keep it); an error saying
/// where it looked when the collection `name` is not there.
pub fn collection_dir(name: &str) -> Result<PathBuf, String> {
    let root = match std::env::var_os("MNEMOS_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    };
    let dir = root.join("beir").join(name);
    if dir.join("corpus.jsonl").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "BEIR collection {name} not found at {} (set MNEMOS_SHARED_DATA)",
            dir.display()
        ))
    }
}

/// One BEIR collection: documents, the queries that have test judgements,
/// and those judgements (query id → document id → grade).
pub struct Collection {
    pub docs: Vec<Document>,
    pub queries: Vec<(String, String)>,
    pub qrels: HashMap<String, HashMap<String, u32>>,
}

pub fn load(dir: &Path) -> Collection {
    let docs = read_jsonl(&dir.join("corpus.jsonl"))
        .map(|v| Document {
            id: field(&v, "_id"),
            title: field(&v, "title"),
            text: field(&v, "text"),
            metadata: serde_json::Value::Null,
        })
        .collect();
    let qrels = read_qrels(&dir.join("qrels/test.tsv"));
    let queries = read_jsonl(&dir.join("queries.jsonl"))
        .map(|v| (field(&v, "_id"), field(&v, "text")))
        .filter(|(id, _)| qrels.contains_key(id))
        .collect();
    Collection {
        docs,
        queries,
        qrels,
    }
}

fn read_jsonl(path: &Path) -> impl Iterator<Item = serde_json::Value> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let path = path.to_path_buf();
    BufReader::new(file).lines().map(move |line| {
        let line = line.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

fn field(value: &serde_json::Value, name: &str) -> String {
    value[name].as_str().unwrap_or_default().to_owned()
}

/// `query-id \t corpus-id \t score` after a header line; grades ≤ 0 dropped.
fn read_qrels(path: &Path) -> HashMap<String, HashMap<String, u32>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut qrels: HashMap<String, HashMap<String, u32>> = HashMap::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [query, doc, grade] = cols[..] else {
            panic!("{}: bad line {line:?}", path.display());
        };
        let grade: i64 = grade.trim().parse().expect("integer grade");
        if grade > 0 {
            qrels
                .entry(query.to_owned())
                .or_default()
                .insert(doc.to_owned(), grade as u32);
        }
    }
    qrels
}

/// nDCG@10 as trec_eval defines it: gain = grade, discount log2(rank + 1)
/// for ranks from 1, ideal ranking from the judgements.
pub fn ndcg_at_10(hits: &[Hit], judged: &HashMap<String, u32>) -> f64 {
    let dcg = |grades: &mut dyn Iterator<Item = u32>| -> f64 {
        grades
            .take(10)
            .enumerate()
            .map(|(i, g)| f64::from(g) / ((i + 2) as f64).log2())
            .sum()
    };
    let actual = dcg(&mut hits.iter().map(|h| judged.get(&h.id).copied().unwrap_or(0)));
    let mut ideal: Vec<u32> = judged.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let ideal = dcg(&mut ideal.into_iter());
    if ideal == 0.0 {
        0.0
    } else {
        actual / ideal
    }
}

/// Mean nDCG@10 of `search` over the collection's judged queries.
pub fn mean_ndcg_at_10(collection: &Collection, search: impl Fn(&str) -> Vec<Hit>) -> f64 {
    let total: f64 = collection
        .queries
        .iter()
        .map(|(id, text)| ndcg_at_10(&search(text), &collection.qrels[id]))
        .sum();
    total / collection.queries.len() as f64
}
