//! Editing the memory and measuring what the edit did: unlearning a whole
//! class and adding it back a few samples at a time (through the durable,
//! write-ahead-logged memory, so the "acknowledged" removal is the real
//! one), and hard and soft pruning (`SPECS.md` §3).

use std::collections::BTreeMap;
use std::path::Path;

use mnemos_visual::{Aggregation, DistanceRange, DurableMemory, Prune, PruneReport, VisualMemory};
use serde::Serialize;

use crate::knn::{correctness, label, ClassAccuracy};
use crate::{Result, Split};

/// The class removed and restored: the digit 0 (any digit would do; a
/// fixed one keeps reports comparable).
pub const UNLEARN_CLASS: u8 = 0;
/// Samples of that class put back, cumulatively, in memory order.
pub const ADD_BACK: [usize; 3] = [1, 10, 100];
/// The classifier the edit experiments score: the memory's default
/// (RankVoting, the paper's best) at its default k.
pub const EDIT_AGGREGATION: Aggregation = Aggregation::RankVoting;
pub const EDIT_K: usize = 10;
/// Items written per durable upsert (one log record and fsync each).
const UPSERT_BATCH: usize = 500;

/// What removing a class and restoring it did.
#[derive(Debug, Clone, Serialize)]
pub struct UnlearnReport {
    pub class: String,
    pub aggregation: &'static str,
    pub k: usize,
    /// Memory items removed with the class.
    pub removed: usize,
    pub before: ClassAccuracy,
    /// Right after `remove_class` returned (logged and fsynced).
    pub after: ClassAccuracy,
    /// The removed class's accuracy after the removal: must be 0.
    pub class_accuracy_after: f64,
    /// The same after closing and reopening the memory from its log.
    pub class_accuracy_after_reopen: f64,
    /// Largest change of any other class, in points, from `before`.
    pub max_other_change_points: f64,
    /// Largest fall of any other class, in points (0 when none fell).
    /// Rises are expected and harmless: queries that were mistaken for
    /// the removed class can now find their own.
    pub max_other_drop_points: f64,
    /// Every other class's change, `after − before`, in points.
    pub other_changes_points: BTreeMap<String, f64>,
    pub recovery: Vec<Recovery>,
}

/// The memory after putting `n` samples of the class back.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub n: usize,
    /// Samples actually restored (fewer than `n` when the memory held
    /// fewer of the class).
    pub added: usize,
    pub class_accuracy: f64,
    pub overall: f64,
    /// Largest change of any other class, in points, from before the
    /// removal.
    pub max_other_change_points: f64,
    /// Largest fall of any other class, in points, from before the
    /// removal.
    pub max_other_drop_points: f64,
}

/// Loads the memory set into a fresh [`DurableMemory`] in `dir`, removes
/// [`UNLEARN_CLASS`], and restores [`ADD_BACK`] samples of it.
pub fn unlearn(split: &Split, dir: &Path, threads: usize) -> Result<UnlearnReport> {
    let class = label(UNLEARN_CLASS);
    let labels: Vec<String> = split.memory_labels.iter().map(|&d| label(d)).collect();
    let items: Vec<(&str, &str, &[f32])> = split
        .memory_ids
        .iter()
        .zip(&labels)
        .zip(&split.memory_rows)
        .map(|((id, l), row)| (id.as_str(), l.as_str(), row.as_slice()))
        .collect();
    let score = |memory: &VisualMemory| -> Result<ClassAccuracy> {
        let queries = split.query_refs();
        // RankVoting weighs by rank only, so no distance range is needed.
        let correct = correctness(
            memory,
            DistanceRange::FULL,
            &queries,
            &split.query_labels,
            &[(EDIT_AGGREGATION, EDIT_K)],
            threads,
        )?;
        Ok(ClassAccuracy::of(&correct[0], &split.query_labels))
    };

    let mut durable = DurableMemory::open(dir, split.dim())?;
    for batch in items.chunks(UPSERT_BATCH) {
        durable.upsert(batch)?;
    }
    let before = score(durable.memory())?;
    let removed = durable.remove_class(&class)?.len();
    let after = score(durable.memory())?;
    drop(durable);
    let mut durable = DurableMemory::open(dir, split.dim())?;
    let reopened = score(durable.memory())?;

    let class_items: Vec<(&str, &str, &[f32])> = items
        .iter()
        .copied()
        .filter(|(_, l, _)| *l == class)
        .collect();
    let mut recovery = Vec::with_capacity(ADD_BACK.len());
    let mut added = 0;
    for n in ADD_BACK {
        let upto = n.min(class_items.len());
        if upto > added {
            durable.upsert(&class_items[added..upto])?;
            added = upto;
        }
        let now = score(durable.memory())?;
        recovery.push(Recovery {
            n,
            added,
            class_accuracy: now.class(&class),
            overall: now.overall,
            max_other_change_points: now.max_change_except(&before, &class),
            max_other_drop_points: now.max_drop_except(&before, &class),
        });
    }
    Ok(UnlearnReport {
        aggregation: EDIT_AGGREGATION.name(),
        k: EDIT_K,
        removed,
        class_accuracy_after: after.class(&class),
        class_accuracy_after_reopen: reopened.class(&class),
        max_other_change_points: after.max_change_except(&before, &class),
        max_other_drop_points: after.max_drop_except(&before, &class),
        other_changes_points: after.changes_except(&before, &class),
        class,
        before,
        after,
        recovery,
    })
}

/// Neighbourhood size for the wrong-label counts of both pruning kinds:
/// each item's appearances in other items' top-100, as `SPECS.md` §3
/// (after Geirhos et al.) defines them.
pub const PRUNE_K: usize = 100;
/// Hard-pruning thresholds swept: an item is dropped once it is a
/// wrong-label neighbour in at least this many other items' top-100. One
/// threshold says little, so the report shows the trade-off from
/// aggressive (50) to light (200).
pub const HARD_THRESHOLDS: [u32; 3] = [50, 100, 200];

/// What pruning did to accuracy at [`EDIT_K`].
#[derive(Debug, Clone, Serialize)]
pub struct PruningReport {
    pub k: usize,
    /// Accuracy per aggregation before pruning.
    pub before: BTreeMap<&'static str, f64>,
    /// One entry per threshold of [`HARD_THRESHOLDS`].
    pub hard: Vec<HardPruning>,
    pub soft: SoftPruning,
}

#[derive(Debug, Clone, Serialize)]
pub struct HardPruning {
    pub prune_k: usize,
    pub threshold: u32,
    pub removed: usize,
    pub removed_per_class: BTreeMap<String, usize>,
    /// Accuracy per aggregation after pruning.
    pub accuracy: BTreeMap<&'static str, f64>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoftPruning {
    pub prune_k: usize,
    pub downweighted: usize,
    /// Mean vote multiplier over the down-weighted items.
    pub mean_multiplier: f64,
    /// Accuracy per aggregation after pruning.
    pub accuracy: BTreeMap<&'static str, f64>,
    pub seconds: f64,
}

/// Prunes copies of `memory`, hard at each of [`HARD_THRESHOLDS`] and soft
/// (each pass is one search per item, which the memory spreads over all
/// cores), and scores every aggregation at [`EDIT_K`] before and after.
pub fn pruning(memory: &VisualMemory, split: &Split, threads: usize) -> Result<PruningReport> {
    let queries = split.query_refs();
    let grid: Vec<(Aggregation, usize)> = Aggregation::ALL.iter().map(|&a| (a, EDIT_K)).collect();
    let score = |memory: &VisualMemory| -> Result<BTreeMap<&'static str, f64>> {
        let correct = correctness(
            memory,
            memory.distance_range(),
            &queries,
            &split.query_labels,
            &grid,
            threads,
        )?;
        Ok(grid
            .iter()
            .zip(&correct)
            .map(|(&(a, _), c)| (a.name(), crate::knn::fraction(c)))
            .collect())
    };
    let prune = |how: Prune| -> Result<(VisualMemory, PruneReport, f64)> {
        let started = std::time::Instant::now();
        let mut copy = memory.clone();
        let report = copy.prune(how)?;
        Ok((copy, report, started.elapsed().as_secs_f64()))
    };
    let mut hard = Vec::with_capacity(HARD_THRESHOLDS.len());
    for threshold in HARD_THRESHOLDS {
        let (pruned, report, seconds) = prune(Prune::Hard {
            k: PRUNE_K,
            threshold,
        })?;
        let mut removed_per_class = BTreeMap::new();
        for (_, l, _) in &report.removed {
            *removed_per_class.entry(l.clone()).or_insert(0) += 1;
        }
        hard.push(HardPruning {
            prune_k: PRUNE_K,
            threshold,
            removed: report.removed.len(),
            removed_per_class,
            accuracy: score(&pruned)?,
            seconds,
        });
    }
    let (pruned, soft, seconds) = prune(Prune::Soft { k: PRUNE_K })?;
    let down: Vec<f32> = soft.downweighted().map(|(_, m)| *m).collect();
    let multipliers: f64 = down.iter().map(|m| f64::from(*m)).sum();
    Ok(PruningReport {
        k: EDIT_K,
        before: score(memory)?,
        hard,
        soft: SoftPruning {
            prune_k: PRUNE_K,
            downweighted: down.len(),
            mean_multiplier: multipliers / down.len().max(1) as f64,
            accuracy: score(&pruned)?,
            seconds,
        },
    })
}
