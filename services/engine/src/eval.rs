//! Retrieval evaluation: nDCG@10, Recall@100 and MRR@10 per backend and per
//! fusion, with trec_eval's definitions (gain = grade, discount
//! log2(rank + 1), ideal ranking from the qrels; averaged over the queries
//! that have judgments).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mnemos_index_core::Hit;

use crate::beir::{read_qrels, read_queries, Qrels};
use crate::fusion::{fuse_linear, fuse_rrf, Ranked};
use crate::{Backend, Engine, EngineError, Result};

/// Mean metrics of one method.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Metrics {
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: f64,
    #[serde(rename = "recall@100")]
    pub recall_100: f64,
    #[serde(rename = "mrr@10")]
    pub mrr_10: f64,
}

/// nDCG@k of one ranking.
pub fn ndcg(ranked: &[String], judged: &HashMap<String, i32>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, id)| {
            let g = judged.get(id).copied().unwrap_or(0).max(0) as f64;
            g / ((i + 2) as f64).log2()
        })
        .sum();
    let mut ideal: Vec<i32> = judged.values().copied().filter(|g| *g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| *g as f64 / ((i + 2) as f64).log2())
        .sum();
    if idcg > 0.0 {
        dcg / idcg
    } else {
        0.0
    }
}

/// Fraction of the relevant documents found in the first `k`.
pub fn recall(ranked: &[String], judged: &HashMap<String, i32>, k: usize) -> f64 {
    let relevant = judged.values().filter(|g| **g > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranked
        .iter()
        .take(k)
        .filter(|id| judged.get(*id).is_some_and(|g| *g > 0))
        .count();
    found as f64 / relevant as f64
}

/// Reciprocal rank of the first relevant document within `k`.
pub fn mrr(ranked: &[String], judged: &HashMap<String, i32>, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|id| judged.get(id).is_some_and(|g| *g > 0))
        .map_or(0.0, |p| 1.0 / (p + 1) as f64)
}

fn ids(hits: &[Hit]) -> Vec<String> {
    hits.iter().map(|h| h.id.clone()).collect()
}

/// What `mnemos eval` can score: each backend alone, the BM25 + dense
/// fusions, and the fusions of all three backends (`rrf3`, `linear3`).
pub const METHODS: &[&str] = &[
    "bm25",
    "dense",
    "hypencoder",
    "rrf",
    "linear",
    "rrf3",
    "linear3",
];

/// The backends a method reads.
fn backends_of(method: &str) -> &'static [Backend] {
    match method {
        "bm25" => &[Backend::Bm25],
        "dense" => &[Backend::Dense],
        "hypencoder" => &[Backend::Hypencoder],
        "rrf" | "linear" => &[Backend::Bm25, Backend::Dense],
        _ => &Backend::ALL,
    }
}

/// Runs every judged query of `split` against the engine and scores each
/// requested method. Fusions use the engine's configured parameters.
pub async fn evaluate(
    engine: &Engine,
    beir_dir: &Path,
    split: &str,
    methods: &[String],
) -> Result<BTreeMap<String, Metrics>> {
    for m in methods {
        if !METHODS.contains(&m.as_str()) {
            return Err(EngineError::InvalidArgument(format!(
                "unknown method `{m}` (known: {})",
                METHODS.join(", ")
            )));
        }
    }
    let queries = read_queries(&beir_dir.join("queries.jsonl"))?;
    let qrels: Qrels = read_qrels(&beir_dir.join("qrels").join(format!("{split}.tsv")))?;
    let mut wanted: Vec<Backend> = methods
        .iter()
        .flat_map(|m| backends_of(m).iter().copied())
        .collect();
    wanted.sort();
    wanted.dedup();
    for b in &wanted {
        if !engine.backend_enabled(*b) {
            return Err(EngineError::InvalidArgument(format!(
                "backend `{}` is disabled on this server",
                b.name()
            )));
        }
    }
    let s = &engine.settings().search;
    let depth = s.fusion_depth.max(100);

    let mut judged: Vec<(&String, &HashMap<String, i32>)> = qrels.iter().collect();
    judged.sort_by(|a, b| a.0.cmp(b.0));
    let mut sums: BTreeMap<String, Metrics> = BTreeMap::new();
    let mut n = 0usize;
    for (qid, judgments) in judged {
        let Some(text) = queries.get(qid) else {
            continue;
        };
        n += 1;
        let mut lists: Vec<Ranked<'static>> = Vec::new();
        for &b in &wanted {
            lists.push(Ranked {
                backend: b.name(),
                hits: engine.backend_hits(b, text, depth).await?,
            });
        }
        let pick = |m: &str| -> Vec<Ranked<'static>> {
            let names: Vec<&str> = backends_of(m).iter().map(|b| b.name()).collect();
            lists
                .iter()
                .filter(|l| names.contains(&l.backend))
                .cloned()
                .collect()
        };
        for m in methods {
            let chosen = pick(m);
            let ranked = match m.as_str() {
                "rrf" | "rrf3" => fuse_rrf(&chosen, s.rrf_k, 100)
                    .into_iter()
                    .map(|h| h.id)
                    .collect(),
                "linear" | "linear3" => {
                    fuse_linear(&chosen, &s.linear_weights, s.normalization, 100)
                        .into_iter()
                        .map(|h| h.id)
                        .collect()
                }
                _ => ids(&chosen[0].hits),
            };
            let e = sums.entry(m.clone()).or_default();
            e.ndcg_10 += ndcg(&ranked, judgments, 10);
            e.recall_100 += recall(&ranked, judgments, 100);
            e.mrr_10 += mrr(&ranked, judgments, 10);
        }
    }
    if n == 0 {
        return Err(EngineError::InvalidArgument(
            "no judged query of the split was found in queries.jsonl".into(),
        ));
    }
    for m in sums.values_mut() {
        m.ndcg_10 /= n as f64;
        m.recall_100 /= n as f64;
        m.mrr_10 /= n as f64;
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn ranked(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ndcg_matches_hand_computation() {
        let j = judged(&[("a", 2), ("b", 1)]);
        assert!((ndcg(&ranked(&["a", "b"]), &j, 10) - 1.0).abs() < 1e-12);
        // b then a: (1/log2 2 + 2/log2 3) / (2/log2 2 + 1/log2 3)
        let want = (1.0 + 2.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2());
        assert!((ndcg(&ranked(&["b", "a"]), &j, 10) - want).abs() < 1e-12);
        assert_eq!(ndcg(&ranked(&["x"]), &j, 10), 0.0);
        assert_eq!(ndcg(&ranked(&["x", "a"]), &j, 1), 0.0);
    }

    #[test]
    fn recall_and_mrr() {
        let j = judged(&[("a", 1), ("b", 1), ("c", 0)]);
        assert_eq!(recall(&ranked(&["c", "a", "x"]), &j, 100), 0.5);
        assert_eq!(mrr(&ranked(&["c", "x", "b"]), &j, 10), 1.0 / 3.0);
        assert_eq!(mrr(&ranked(&["c", "x", "b"]), &j, 2), 0.0);
    }
}
