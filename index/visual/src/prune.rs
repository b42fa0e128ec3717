//! Pruning (`SPECS.md` §3): run every item's own embedding as a query
//! against the rest of the memory and count how often each item turns up
//! among another item's nearest neighbours with a different label. Items
//! that mislead often are dropped (hard) or down-weighted (soft).
//!
//! That is one search per item, so the pass is spread over all cores; in
//! graph mode the searches go through the graph (with `ef` at least `k`),
//! which at a million items turns hours of exact scans into minutes.

use std::thread;

use crate::memory::VisualMemory;
use crate::{Result, VisualError};

/// What a pruning pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PruneReport {
    /// Items examined.
    pub examined: usize,
    /// Hard pruning: `(id, label, wrong_count)` of the items dropped.
    pub removed: Vec<(String, String, u32)>,
    /// Soft pruning: `(id, new multiplier)` of every item — 1.75 for one
    /// never among another item's wrong-label neighbours, 1.75/(1 + w)
    /// below that — so a second pass also lifts items that stopped
    /// misleading.
    pub multipliers: Vec<(String, f32)>,
}

impl PruneReport {
    /// Soft pruning: the items whose vote now weighs less than a clean
    /// item's (wrong-count above 0).
    pub fn downweighted(&self) -> impl Iterator<Item = &(String, f32)> {
        self.multipliers.iter().filter(|(_, m)| *m < CLEAN)
    }
}

/// Soft pruning's multiplier of an item with no wrong-label appearances.
const CLEAN: f32 = 1.75;

/// How to prune (`SPECS.md` §3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prune {
    /// Drop items that appear with the wrong label in at least `threshold`
    /// other items' top-`k`.
    Hard { k: usize, threshold: u32 },
    /// Multiply each item's vote by 1.75/(1 + wrong-count).
    Soft { k: usize },
}

/// Below this many items a pass runs on the calling thread: spawning
/// costs more than the searches.
const PARALLEL_MIN: usize = 2_048;

/// What `how` would do to `memory`, changing nothing.
pub(crate) fn plan(memory: &VisualMemory, how: Prune) -> Result<PruneReport> {
    let k = match how {
        Prune::Hard { threshold: 0, .. } => {
            return Err(VisualError::InvalidInput(
                "prune threshold must be at least 1".into(),
            ))
        }
        Prune::Hard { k, .. } | Prune::Soft { k } => k,
    };
    if k == 0 {
        return Err(VisualError::InvalidInput(
            "prune k must be at least 1".into(),
        ));
    }
    let wrong = wrong_counts(memory, k)?;
    let mut report = PruneReport {
        examined: memory.len(),
        ..PruneReport::default()
    };
    for (item, &w) in memory.items().zip(&wrong) {
        match how {
            Prune::Hard { threshold, .. } if w >= threshold => {
                report
                    .removed
                    .push((item.id.clone(), item.label.clone(), w));
            }
            Prune::Soft { .. } => {
                report
                    .multipliers
                    .push((item.id.clone(), CLEAN / (1.0 + w as f32)));
            }
            _ => {}
        }
    }
    Ok(report)
}

/// For each slot, how many other items have it among their top `k` with a
/// label that differs from its own.
fn wrong_counts(memory: &VisualMemory, k: usize) -> Result<Vec<u32>> {
    let n = memory.len();
    let threads = if n < PARALLEL_MIN {
        1
    } else {
        thread::available_parallelism().map_or(1, |p| p.get())
    };
    // Each worker takes every `threads`-th query and counts into its own
    // array; the arrays are summed at the end.
    let count = |first: usize| -> Result<Vec<u32>> {
        let mut wrong = vec![0u32; n];
        for query in (first..n).step_by(threads) {
            let vector = memory.vector_at(query);
            let own = &memory.item(query).label;
            // The graph index widens `ef` to `k` by itself.
            for hit in memory.search_with_ef(&vector, k, Some(query), None)? {
                if memory.item(hit.slot).label != *own {
                    wrong[hit.slot] += 1;
                }
            }
        }
        Ok(wrong)
    };
    if threads == 1 {
        return count(0);
    }
    let parts: Vec<Result<Vec<u32>>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|first| scope.spawn(move || count(first)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut total = vec![0u32; n];
    for part in parts {
        for (t, w) in total.iter_mut().zip(part?) {
            *t += w;
        }
    }
    Ok(total)
}
