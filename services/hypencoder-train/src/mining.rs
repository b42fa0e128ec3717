//! Hard negatives and the teacher.
//!
//! For every judged query: BM25's top results from a real tantivy index of
//! the corpus, and the dense encoder's cosine to every document (5k dot
//! products per query; exact, no HNSW needed at this size).
//!
//! The teacher's score of (query, document) is the sum of the two
//! retrievers' z-scores, each standardised over that retriever's own top
//! [`TEACHER_DEPTH`] for the query, as the engine's linear fusion does. A
//! document BM25 did not return gets the lowest BM25 score of the list
//! (it matched no better than the worst listed one).

use std::collections::HashMap;
use std::time::Instant;

use mnemos_bm25::{Bm25Index, Bm25Params};
use mnemos_index_core::{Document, IndexError, IndexRead, IndexWrite};

use crate::data::TrainData;
use crate::features::Features;
use crate::{Result, TrainConfig};

/// Results per retriever over which scores are standardised.
pub const TEACHER_DEPTH: usize = 100;

/// What mining found for one query.
#[derive(Debug, Clone)]
pub struct QueryMined {
    /// BM25 score by corpus position, for the top [`TEACHER_DEPTH`].
    bm25: HashMap<usize, f32>,
    bm25_floor: f32,
    bm25_stats: (f32, f32),
    /// Cosine to every document, corpus order.
    cosine: Vec<f32>,
    dense_stats: (f32, f32),
    /// Hard negatives: the top `pool` of each retriever, positives removed.
    pub negatives: Vec<usize>,
    /// BM25's ranking (positions), best first.
    pub bm25_ranking: Vec<usize>,
}

impl QueryMined {
    /// The teacher's score of document `doc`.
    pub fn teacher(&self, doc: usize) -> f32 {
        let b = self.bm25.get(&doc).copied().unwrap_or(self.bm25_floor);
        let z = |x: f32, (mean, std): (f32, f32)| (x - mean) / std;
        z(b, self.bm25_stats) + z(self.cosine[doc], self.dense_stats)
    }

    /// The dense encoder's cosine to document `doc`.
    pub fn cosine(&self, doc: usize) -> f32 {
        self.cosine[doc]
    }

    /// Corpus positions ranked by `score`, best first, top `k`.
    pub fn rank_by(&self, k: usize, score: impl Fn(usize) -> f32) -> Vec<usize> {
        let mut all: Vec<(f32, usize)> = (0..self.cosine.len()).map(|d| (score(d), d)).collect();
        let k = k.min(all.len());
        if k == 0 {
            return Vec::new();
        }
        all.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        all.truncate(k);
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        all.into_iter().map(|(_, d)| d).collect()
    }
}

/// Mining results for every judged query (same order as `TrainData`).
#[derive(Debug, Clone)]
pub struct Mined {
    pub queries: Vec<QueryMined>,
}

fn mean_std(xs: impl Iterator<Item = f32> + Clone) -> (f32, f32) {
    let n = xs.clone().count().max(1) as f32;
    let mean = xs.clone().sum::<f32>() / n;
    let var = xs.map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
    (mean, var.sqrt().max(1e-6))
}

impl Mined {
    pub fn compute(config: &TrainConfig, data: &TrainData, features: &Features) -> Result<Self> {
        let started = Instant::now();
        let index = Bm25Index::in_ram(Bm25Params::default()).map_err(IndexError::from)?;
        for chunk in data.corpus.chunks(1024) {
            let entries: Vec<(&str, u64, &Document)> =
                chunk.iter().map(|d| (d.id.as_str(), 1, d)).collect();
            index.upsert(&entries)?;
        }
        let position: HashMap<&str, usize> = data
            .corpus
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.as_str(), i))
            .collect();
        let dim = features.dim;
        let mut queries = Vec::with_capacity(data.queries.len());
        for (q, f) in data.queries.iter().zip(&features.queries) {
            let hits = index.search(q.text.as_str(), TEACHER_DEPTH)?;
            let bm25_ranking: Vec<usize> = hits
                .iter()
                .filter_map(|h| position.get(h.id.as_str()).copied())
                .collect();
            let bm25: HashMap<usize, f32> = bm25_ranking
                .iter()
                .zip(&hits)
                .map(|(&d, h)| (d, h.score))
                .collect();
            let bm25_floor = hits.last().map_or(0.0, |h| h.score);
            let cosine: Vec<f32> = features
                .docs
                .chunks_exact(dim)
                .map(|d| d.iter().zip(&f.pooled).map(|(a, b)| a * b).sum())
                .collect();
            let mut mined = QueryMined {
                bm25_stats: mean_std(hits.iter().map(|h| h.score)),
                bm25,
                bm25_floor,
                dense_stats: (0.0, 1.0),
                cosine,
                negatives: Vec::new(),
                bm25_ranking,
            };
            let dense_top = mined.rank_by(TEACHER_DEPTH, |d| mined.cosine[d]);
            mined.dense_stats = mean_std(dense_top.iter().map(|&d| mined.cosine[d]));
            let mut negatives: Vec<usize> = mined
                .bm25_ranking
                .iter()
                .take(config.pool)
                .chain(dense_top.iter().take(config.pool))
                .copied()
                .filter(|d| !q.positives.contains(d))
                .collect();
            negatives.sort_unstable();
            negatives.dedup();
            mined.negatives = negatives;
            queries.push(mined);
        }
        tracing::info!(
            queries = queries.len(),
            secs = started.elapsed().as_secs_f64(),
            "mined BM25 and dense negatives"
        );
        Ok(Self { queries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mined() -> QueryMined {
        QueryMined {
            // BM25 returned documents 0 and 2 only.
            bm25: [(0, 10.0), (2, 6.0)].into(),
            bm25_floor: 6.0,
            bm25_stats: mean_std([10.0f32, 6.0].into_iter()),
            cosine: vec![0.2, 0.9, 0.5, 0.1],
            dense_stats: (0.5, 0.1),
            negatives: Vec::new(),
            bm25_ranking: vec![0, 2],
        }
    }

    #[test]
    fn teacher_sums_z_scores_and_floors_unlisted_bm25() {
        let m = mined();
        // BM25 mean 8, std 2: doc 0 → +1, doc 2 → −1, unlisted → floor −1.
        assert!((m.teacher(0) - (1.0 + (0.2 - 0.5) / 0.1)).abs() < 1e-4);
        assert!((m.teacher(1) - (-1.0 + (0.9 - 0.5) / 0.1)).abs() < 1e-4);
        assert!((m.teacher(3) - (-1.0 + (0.1 - 0.5) / 0.1)).abs() < 1e-4);
    }

    #[test]
    fn rank_by_returns_the_best_first() {
        let m = mined();
        assert_eq!(m.rank_by(2, |d| m.cosine(d)), vec![1, 2]);
        assert_eq!(m.rank_by(10, |d| m.teacher(d)), vec![1, 2, 0, 3]);
        assert!(m.rank_by(0, |d| m.cosine(d)).is_empty());
    }
}
