//! Scoring a memory state on the query set: which queries each
//! (aggregation, k) classifies correctly, and accuracies from that, overall
//! and per class.
//!
//! Search is exact (`search_exact`, whatever the memory's mode: the
//! evaluation measures the method, not the graph's recall), and one search
//! for the largest k serves every k and aggregation: neighbours come
//! ordered by (distance, slot), so the top-k is a prefix of the top-`k_max`, and [`mnemos_visual::aggregate`] over that
//! prefix is exactly what `classify(query, k, aggregation)` computes (a
//! test checks this against `classify`). That is 20 scans of the memory
//! fewer per query for the 4 × 5 grid. Queries are split over threads.

use std::collections::BTreeMap;

use mnemos_visual::{aggregate, Aggregation, DistanceRange, VisualMemory};

use crate::{Result, KS};

/// The label the memory stores for a digit.
pub fn label(digit: u8) -> String {
    digit.to_string()
}

/// For each `(aggregation, k)` of `grid`, whether each query is classified
/// as its label: `correct[g][q]`.
pub fn correctness(
    memory: &VisualMemory,
    range: DistanceRange,
    queries: &[&[f32]],
    labels: &[u8],
    grid: &[(Aggregation, usize)],
    threads: usize,
) -> Result<Vec<Vec<bool>>> {
    let k_max = grid.iter().map(|&(_, k)| k).max().unwrap_or(0);
    let chunk = queries.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<Result<Vec<Vec<bool>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = queries
            .chunks(chunk)
            .zip(labels.chunks(chunk))
            .map(|(qs, ls)| s.spawn(move || score_chunk(memory, range, qs, ls, grid, k_max)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("scoring thread panicked"))
            .collect()
    });
    // Per chunk: per query: per grid cell. Transpose to per cell: per query.
    let mut correct = vec![Vec::with_capacity(queries.len()); grid.len()];
    for part in parts {
        for per_query in part? {
            for (cell, ok) in correct.iter_mut().zip(per_query) {
                cell.push(ok);
            }
        }
    }
    Ok(correct)
}

fn score_chunk(
    memory: &VisualMemory,
    range: DistanceRange,
    queries: &[&[f32]],
    labels: &[u8],
    grid: &[(Aggregation, usize)],
    k_max: usize,
) -> Result<Vec<Vec<bool>>> {
    let mut out = Vec::with_capacity(queries.len());
    for (query, &digit) in queries.iter().zip(labels) {
        let unit = memory.normalised(query)?;
        let hits = memory.search_exact(&unit, k_max)?;
        let neighbors = memory.neighbors(&hits);
        let truth = label(digit);
        out.push(
            grid.iter()
                .map(|&(aggregation, k)| {
                    let decision =
                        aggregate(&neighbors[..k.min(neighbors.len())], aggregation, range);
                    decision.label.as_deref() == Some(truth.as_str())
                })
                .collect(),
        );
    }
    Ok(out)
}

/// Accuracy over all queries and per class (keyed by the digit).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassAccuracy {
    pub overall: f64,
    pub per_class: BTreeMap<String, f64>,
}

impl ClassAccuracy {
    pub fn of(correct: &[bool], labels: &[u8]) -> Self {
        let mut tally: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (&ok, &digit) in correct.iter().zip(labels) {
            let t = tally.entry(label(digit)).or_default();
            t.0 += usize::from(ok);
            t.1 += 1;
        }
        Self {
            overall: fraction(correct),
            per_class: tally
                .into_iter()
                .map(|(l, (right, all))| (l, right as f64 / all as f64))
                .collect(),
        }
    }

    /// Accuracy on class `label` (0 for a class without queries).
    pub fn class(&self, label: &str) -> f64 {
        self.per_class.get(label).copied().unwrap_or(0.0)
    }

    /// Each class's change from `baseline` but `except`'s, in percentage
    /// points (positive: better now).
    pub fn changes_except(&self, baseline: &ClassAccuracy, except: &str) -> BTreeMap<String, f64> {
        self.per_class
            .iter()
            .filter(|(l, _)| l.as_str() != except)
            .map(|(l, a)| (l.clone(), (a - baseline.class(l)) * 100.0))
            .collect()
    }

    /// The largest change, in points, of any class but `except`.
    pub fn max_change_except(&self, baseline: &ClassAccuracy, except: &str) -> f64 {
        self.changes_except(baseline, except)
            .values()
            .fold(0.0, |m, c| m.max(c.abs()))
    }

    /// The largest fall, in points, of any class but `except` (0 if none
    /// fell).
    pub fn max_drop_except(&self, baseline: &ClassAccuracy, except: &str) -> f64 {
        self.changes_except(baseline, except)
            .values()
            .fold(0.0, |m, c| m.max(-c))
    }
}

/// The fraction of `true`s.
pub fn fraction(correct: &[bool]) -> f64 {
    correct.iter().filter(|&&c| c).count() as f64 / correct.len().max(1) as f64
}

/// Every `(aggregation, k)` cell the evaluation scores: each aggregation
/// at each of [`KS`].
pub fn grid() -> Vec<(Aggregation, usize)> {
    Aggregation::ALL
        .iter()
        .flat_map(|&a| KS.iter().map(move |&k| (a, k)))
        .collect()
}

/// Aggregation → k → accuracy, from [`correctness`] over `grid`.
pub fn accuracy_table(
    grid: &[(Aggregation, usize)],
    correct: &[Vec<bool>],
) -> BTreeMap<&'static str, BTreeMap<usize, f64>> {
    let mut accuracy: BTreeMap<&'static str, BTreeMap<usize, f64>> = BTreeMap::new();
    for (&(a, k), c) in grid.iter().zip(correct) {
        accuracy.entry(a.name()).or_default().insert(k, fraction(c));
    }
    accuracy
}
