//! Scoring documents with q-nets: exhaustively, and by the paper's graph
//! search (SPECS §2).
//!
//! Both work on slots; [`crate::HypencoderIndex`] turns slots into ids under
//! the same read lock, so a result never names a document removed before
//! the search began.

use mnemos_hypencoder::{HypencoderError, QNets};
use mnemos_index_core::{IndexError, Result};

use crate::docs::DocTable;
use crate::graph::NeighborGraph;
use crate::params::GraphSearch;
use crate::topk::SmallestK;

/// With more than this fraction of slots dead, exhaustive search gathers
/// the live rows instead of scoring the whole matrix and skipping the dead.
const GATHER_ABOVE_DEAD: f64 = 0.125;

/// One query's best slots, best first, with what finding them cost.
pub(crate) struct Found {
    /// `(score, slot)`, highest score first.
    pub(crate) hits: Vec<(f32, u32)>,
    /// Documents scored.
    pub(crate) scored: usize,
    /// Rounds of scoring (1 for an exhaustive search).
    pub(crate) rounds: usize,
}

/// Every live document under every q-net of `qnets`: one list per query.
///
/// The whole matrix goes through [`QNets::score_slice`] (blocked matrix
/// products), dead slots are skipped when selecting; once dead slots pass
/// [`GATHER_ABOVE_DEAD`] of the matrix, only live rows are gathered and
/// scored instead.
pub(crate) fn exhaustive(docs: &DocTable, qnets: &QNets, k: usize) -> Result<Vec<Found>> {
    let live = docs.live_count();
    if k == 0 || live == 0 {
        return Ok((0..qnets.len()).map(|_| empty_found()).collect());
    }
    let gathered: Option<Vec<u32>> =
        if docs.dead_count() as f64 > GATHER_ABOVE_DEAD * docs.slots() as f64 {
            Some(docs.live_slots().collect())
        } else {
            None
        };
    let scores = match &gathered {
        Some(rows) => qnets.score_gathered(docs.vectors(), rows),
        None => qnets.score_slice(docs.vectors()),
    }
    .map_err(model_error)?;
    Ok(scores
        .into_iter()
        .map(|scores| {
            let mut top = SmallestK::new(k);
            match &gathered {
                Some(rows) => {
                    for (&slot, &score) in rows.iter().zip(&scores) {
                        top.push(-score, slot);
                    }
                }
                None => {
                    for (slot, &score) in scores.iter().enumerate() {
                        if -score < top.bound() && docs.is_live(slot as u32) {
                            top.push(-score, slot as u32);
                        }
                    }
                }
            }
            Found {
                hits: best_first(top),
                scored: live,
                rounds: 1,
            }
        })
        .collect())
}

/// The paper's graph search for the one q-net in `qnet`.
///
/// Start from `C` random live documents, all marked visited. Each round
/// scores all current candidates in one batch ([`QNets::score_gathered`])
/// and pushes them into a top-`k` heap; the next round's candidates are
/// the unvisited neighbours of this round's best `nCand` candidates, marked
/// visited as they are taken. Stop after `maxIter` rounds, when no
/// candidates remain, or when a round put nothing new into the top `k`.
/// With `C` at least the live count, this is [`exhaustive`].
pub(crate) fn graph(
    docs: &DocTable,
    graph: &NeighborGraph,
    qnet: &QNets,
    k: usize,
    params: &GraphSearch,
    seed: u64,
) -> Result<Found> {
    debug_assert_eq!(qnet.len(), 1);
    let live = docs.live_count();
    if k == 0 || live == 0 {
        return Ok(empty_found());
    }
    if params.entry_points >= live {
        return Ok(exhaustive(docs, qnet, k)?.pop().unwrap_or_else(empty_found));
    }
    let mut visited = Visited::new(docs.slots());
    let mut candidates = entry_points(docs, params.entry_points, seed, &mut visited);
    let mut top = SmallestK::new(k);
    let mut scored = 0;
    let mut rounds = 0;
    while !candidates.is_empty() && rounds < params.max_rounds {
        rounds += 1;
        let scores = qnet
            .score_gathered(docs.vectors(), &candidates)
            .map_err(model_error)?
            .pop()
            .unwrap_or_default();
        scored += candidates.len();
        let mut entered = false;
        for (&slot, &score) in candidates.iter().zip(&scores) {
            entered |= top.push(-score, slot);
        }
        if !entered || rounds == params.max_rounds {
            break;
        }
        // This round's best nCand, then their unvisited live neighbours.
        let mut ranked: Vec<(f32, u32)> = scores.into_iter().zip(candidates).collect();
        let n_best = params.candidates.min(ranked.len());
        if n_best < ranked.len() {
            ranked.select_nth_unstable_by(n_best - 1, |a, b| b.0.total_cmp(&a.0));
        }
        candidates = Vec::new();
        for &(_, slot) in &ranked[..n_best] {
            for &neighbor in graph.neighbors(slot) {
                if docs.is_live(neighbor) && visited.insert(neighbor) {
                    candidates.push(neighbor);
                }
            }
        }
    }
    Ok(Found {
        hits: best_first(top),
        scored,
        rounds,
    })
}

/// `count` distinct random live slots (`count` < live count), marked
/// visited. Rejection sampling over the slot range while live slots are
/// plentiful; a partial shuffle of the live slots otherwise.
fn entry_points(docs: &DocTable, count: usize, seed: u64, visited: &mut Visited) -> Vec<u32> {
    let mut rng = SplitMix64(seed);
    let slots = docs.slots() as u64;
    let mut chosen = Vec::with_capacity(count);
    if 2 * count <= docs.live_count() {
        // Each draw succeeds with probability ≥ (live − count) / slots; the
        // cap only guards against a table that is almost all dead slots.
        let mut tries = 0usize;
        let max_tries = 32 * count + 1024;
        while chosen.len() < count && tries < max_tries {
            tries += 1;
            let slot = rng.below(slots) as u32;
            if docs.is_live(slot) && visited.insert(slot) {
                chosen.push(slot);
            }
        }
        if chosen.len() == count {
            return chosen;
        }
    }
    let mut pool: Vec<u32> = docs
        .live_slots()
        .filter(|&s| !visited.contains(s))
        .collect();
    while chosen.len() < count && !pool.is_empty() {
        let at = rng.below(pool.len() as u64) as usize;
        let slot = pool.swap_remove(at);
        visited.insert(slot);
        chosen.push(slot);
    }
    chosen
}

fn best_first(top: SmallestK) -> Vec<(f32, u32)> {
    top.into_sorted()
        .into_iter()
        .map(|kept| (-kept.key, kept.slot))
        .collect()
}

fn empty_found() -> Found {
    Found {
        hits: Vec::new(),
        scored: 0,
        rounds: 0,
    }
}

/// A model error raised while scoring: bad input is the caller's fault,
/// anything else the backend's.
pub(crate) fn model_error(e: HypencoderError) -> IndexError {
    match e {
        HypencoderError::InvalidInput(message) => IndexError::InvalidArgument(message),
        other => IndexError::Backend {
            backend: "hypencoder",
            message: other.to_string(),
        },
    }
}

/// A bitset over slots.
struct Visited(Vec<u64>);

impl Visited {
    fn new(slots: usize) -> Self {
        Self(vec![0; slots.div_ceil(64)])
    }

    fn contains(&self, slot: u32) -> bool {
        self.0[slot as usize / 64] & (1 << (slot % 64)) != 0
    }

    /// Marks `slot`; returns whether it was unmarked.
    fn insert(&mut self, slot: u32) -> bool {
        let word = &mut self.0[slot as usize / 64];
        let bit = 1 << (slot % 64);
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, seedable, and good enough
/// to pick entry points; its stream never changes with a dependency.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0), by the multiply-shift method.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn entry_points_are_distinct_live_and_visited() {
        let mut docs = DocTable::new(1);
        for i in 0..100 {
            let slot = docs.reserve(&[i as f32]);
            docs.commit(slot, Arc::from(format!("d{i}")), 1);
        }
        for slot in (0..100).step_by(3) {
            docs.release(slot);
        }
        for count in [1, 10, 40, 66] {
            let mut visited = Visited::new(docs.slots());
            let mut chosen = entry_points(&docs, count, 7, &mut visited);
            assert_eq!(chosen.len(), count);
            assert!(chosen
                .iter()
                .all(|&s| docs.is_live(s) && visited.contains(s)));
            chosen.sort_unstable();
            chosen.dedup();
            assert_eq!(chosen.len(), count);
        }
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SplitMix64(1);
        assert!((0..1000).all(|_| rng.below(7) < 7));
    }
}
