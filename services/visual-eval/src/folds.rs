//! Cross-validated kNN accuracy: the fixed split's query set is one fold
//! of `every`; here each fold in turn is the query set and the rest the
//! memory, so every image is queried once. On MNIST that is 10,000
//! queries instead of 2,000 with the same memory size (8,000), enough to
//! tell the aggregations apart where the fixed split cannot (there one
//! query is 0.05 points).
//!
//! RankVoting and plurality are also compared query by query: the
//! queries only one of them gets right (the discordant pairs of
//! McNemar's test) say whether a difference in accuracy is more than the
//! luck of the draw.

use std::collections::BTreeMap;

use serde::Serialize;

use mnemos_visual::Aggregation;

use crate::knn;
use crate::split::Split;
use crate::{Result, KS};

/// The grid over every fold.
#[derive(Debug, Clone, Serialize)]
pub struct CrossValidation {
    pub folds: usize,
    /// Queries over all folds (every image once).
    pub queries: usize,
    /// Aggregation → k → accuracy over all queries.
    pub accuracy: BTreeMap<&'static str, BTreeMap<usize, f64>>,
    /// k → the queries RankVoting and plurality disagree on.
    pub rank_voting_vs_plurality: BTreeMap<usize, Discordant>,
}

/// Queries one method classifies correctly and the other does not.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Discordant {
    pub only_rank_voting: usize,
    pub only_plurality: usize,
    /// Two-sided exact McNemar p-value (binomial test on the discordant
    /// queries): the chance of a split at least this uneven if neither
    /// method were better.
    pub p_value: f64,
}

/// Runs the kNN grid with each of `every` folds as the query set (image
/// `i` is in fold `i % every`).
pub fn cross_validate(
    name: &str,
    embeddings: &[Vec<f32>],
    labels: &[u8],
    every: usize,
    threads: usize,
) -> Result<CrossValidation> {
    let grid = knn::grid();
    // Per grid cell, per query over all folds.
    let mut correct: Vec<Vec<bool>> = vec![Vec::with_capacity(labels.len()); grid.len()];
    for fold in 0..every {
        let split = Split::fold(name, embeddings, labels, every, fold);
        let memory = split.memory()?;
        let cells = knn::correctness(
            &memory,
            memory.distance_range(),
            &split.query_refs(),
            &split.query_labels,
            &grid,
            threads,
        )?;
        for (all, cell) in correct.iter_mut().zip(cells) {
            all.extend(cell);
        }
    }
    let accuracy = knn::accuracy_table(&grid, &correct);
    let cell =
        |a: Aggregation, k: usize| grid.iter().position(|&g| g == (a, k)).map(|i| &correct[i]);
    let mut rank_voting_vs_plurality = BTreeMap::new();
    for k in KS {
        if let (Some(rv), Some(pl)) = (
            cell(Aggregation::RankVoting, k),
            cell(Aggregation::Plurality, k),
        ) {
            let only_rank_voting = rv.iter().zip(pl).filter(|&(r, p)| *r && !*p).count();
            let only_plurality = rv.iter().zip(pl).filter(|&(r, p)| !*r && *p).count();
            rank_voting_vs_plurality.insert(
                k,
                Discordant {
                    only_rank_voting,
                    only_plurality,
                    p_value: mcnemar_exact(only_rank_voting, only_plurality),
                },
            );
        }
    }
    Ok(CrossValidation {
        folds: every,
        queries: labels.len().min(embeddings.len()),
        accuracy,
        rank_voting_vs_plurality,
    })
}

/// Two-sided exact McNemar test: `2·P(X ≤ min(b, c))` for X ~ Bin(b + c,
/// ½), capped at 1. Summed in log space, so a few thousand discordant
/// queries do not overflow.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let ln_choose = |k: usize| ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k);
    let tail: f64 = (0..=b.min(c))
        .map(|k| (ln_choose(k) - n as f64 * std::f64::consts::LN_2).exp())
        .sum();
    (2.0 * tail).min(1.0)
}

fn ln_factorial(n: usize) -> f64 {
    (2..=n).map(|i| (i as f64).ln()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_hand_computed_values() {
        // b = 0, c = 5: 2 · (1/2)^5.
        assert!((mcnemar_exact(0, 5) - 0.0625).abs() < 1e-12);
        // b = 1, c = 3: 2 · (1 + 4) / 16.
        assert!((mcnemar_exact(1, 3) - 0.625).abs() < 1e-12);
        assert_eq!(mcnemar_exact(4, 4), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Symmetric, and tiny for a lopsided split of many.
        assert_eq!(mcnemar_exact(30, 70), mcnemar_exact(70, 30));
        assert!(mcnemar_exact(30, 70) < 1e-4);
    }

    #[test]
    fn every_image_is_queried_once_across_the_folds() {
        // Two tight clusters: every query's neighbours share its label.
        let rows: Vec<Vec<f32>> = (0..20)
            .map(|i| {
                if i % 2 == 0 {
                    vec![1.0, 0.01 * i as f32]
                } else {
                    vec![-1.0, 0.01 * i as f32]
                }
            })
            .collect();
        let labels: Vec<u8> = (0..20).map(|i| (i % 2) as u8).collect();
        let cv = cross_validate("t", &rows, &labels, 5, 2).unwrap();
        assert_eq!(cv.queries, 20);
        assert_eq!(cv.accuracy["plurality"][&1], 1.0);
        let d = cv.rank_voting_vs_plurality[&1];
        assert_eq!((d.only_rank_voting, d.only_plurality), (0, 0));
    }
}
