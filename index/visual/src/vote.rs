//! Turning the k nearest neighbours of a query into class scores
//! (`SPECS.md` §3, after Geirhos et al. 2024, §2).
//!
//! Neighbours arrive sorted by distance `d = 1 − cosine`, nearest first;
//! rank `r` is 0-based. Each neighbour adds a weight to its label's score:
//!
//! | aggregation | weight |
//! |---|---|
//! | plurality | 1 |
//! | distance | exp(−d) |
//! | softmax | exp((1 − d̂)/τ), d̂ = d min-max normalised over the memory, τ = 0.07 |
//! | RankVoting (default) | 1/(r + α), α = 2 |
//!
//! times the neighbour's own multiplier (1 unless soft pruning lowered it
//! to 1.75/(1 + wrong-count)). The prediction is the class with the highest
//! score; a tie goes to the class that reached that score first, i.e. whose
//! last contributing neighbour has the lowest rank: it needed fewer of the
//! nearest neighbours to get there.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Result, VisualError};

/// τ of the softmax aggregation (Geirhos et al.).
pub const SOFTMAX_TAU: f32 = 0.07;
/// α of RankVoting (Geirhos et al.).
pub const RANK_ALPHA: f32 = 2.0;

/// How neighbours' votes are weighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Plurality,
    Distance,
    Softmax,
    /// The paper's best: nearer ranks weigh more, whatever the distances.
    #[default]
    RankVoting,
}

impl Aggregation {
    pub const ALL: [Aggregation; 4] = [
        Aggregation::Plurality,
        Aggregation::Distance,
        Aggregation::Softmax,
        Aggregation::RankVoting,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Plurality => "plurality",
            Aggregation::Distance => "distance",
            Aggregation::Softmax => "softmax",
            Aggregation::RankVoting => "rank_voting",
        }
    }

    /// Parses a request's `aggregation`, naming the accepted values when it
    /// is unknown.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                VisualError::InvalidInput(format!(
                    "unknown aggregation {name:?}; use one of plurality, distance, softmax, rank_voting"
                ))
            })
    }
}

/// The spread of distances in the memory, for the softmax aggregation's
/// normalisation. The paper normalises over the data set; the store keeps
/// this range as items come and go. [`DistanceRange::FULL`], the whole
/// range of `1 − cosine`, is the fallback when nothing better is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistanceRange {
    pub min: f32,
    pub max: f32,
}

impl DistanceRange {
    pub const FULL: DistanceRange = DistanceRange { min: 0.0, max: 2.0 };

    /// `d` mapped to [0, 1] (clamped: a neighbour may lie outside the range
    /// seen so far).
    fn normalise(self, d: f32) -> f32 {
        let span = self.max - self.min;
        if span.is_finite() && span > f32::EPSILON {
            ((d - self.min) / span).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// One retrieved neighbour.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbor<'a> {
    pub id: &'a str,
    pub label: &'a str,
    /// `1 − cosine` to the query.
    pub distance: f32,
    /// 1, or less after soft pruning.
    pub multiplier: f32,
}

/// A neighbour's part in a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vote {
    pub id: String,
    pub label: String,
    pub distance: f32,
    pub weight: f32,
}

/// The outcome of one classification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// `None` when there were no neighbours (an empty memory).
    pub label: Option<String>,
    /// Every label that received a vote, with its score.
    pub scores: Vec<(String, f32)>,
    /// The neighbours in rank order with the weight each contributed.
    pub neighbors: Vec<Vote>,
}

/// Scores `neighbors` (nearest first) with `aggregation`.
pub fn aggregate(
    neighbors: &[Neighbor<'_>],
    aggregation: Aggregation,
    range: DistanceRange,
) -> Decision {
    // label -> (score, rank of its last contribution)
    let mut tally: HashMap<&str, (f32, usize)> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    let mut votes = Vec::with_capacity(neighbors.len());
    for (rank, n) in neighbors.iter().enumerate() {
        let base = match aggregation {
            Aggregation::Plurality => 1.0,
            Aggregation::Distance => (-n.distance).exp(),
            Aggregation::Softmax => ((1.0 - range.normalise(n.distance)) / SOFTMAX_TAU).exp(),
            Aggregation::RankVoting => 1.0 / (rank as f32 + RANK_ALPHA),
        };
        let weight = base * n.multiplier;
        let entry = tally.entry(n.label).or_insert_with(|| {
            order.push(n.label);
            (0.0, rank)
        });
        if weight > 0.0 {
            entry.0 += weight;
            entry.1 = rank;
        }
        votes.push(Vote {
            id: n.id.to_owned(),
            label: n.label.to_owned(),
            distance: n.distance,
            weight,
        });
    }
    let label = order
        .iter()
        .map(|l| (*l, tally[l]))
        .fold(
            None::<(&str, f32, usize)>,
            |best, (l, (score, last))| match best {
                Some((_, s, r)) if s > score || (s == score && r <= last) => best,
                _ => Some((l, score, last)),
            },
        )
        .map(|(l, _, _)| l.to_owned());
    let scores = order
        .iter()
        .map(|l| ((*l).to_owned(), tally[l].0))
        .collect();
    Decision {
        label,
        scores,
        neighbors: votes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n<'a>(id: &'a str, label: &'a str, distance: f32) -> Neighbor<'a> {
        Neighbor {
            id,
            label,
            distance,
            multiplier: 1.0,
        }
    }

    fn score(d: &Decision, label: &str) -> f32 {
        d.scores
            .iter()
            .find(|(l, _)| l == label)
            .map_or(0.0, |s| s.1)
    }

    #[test]
    fn plurality_counts_and_rank_voting_prefers_the_nearest() {
        // Two far "dog"s against one nearest "cat".
        let ns = [n("a", "cat", 0.1), n("b", "dog", 0.5), n("c", "dog", 0.6)];
        let p = aggregate(&ns, Aggregation::Plurality, DistanceRange::FULL);
        assert_eq!(p.label.as_deref(), Some("dog"));
        assert_eq!(score(&p, "dog"), 2.0);
        // RankVoting: cat 1/2 = 0.5; dog 1/3 + 1/4 ≈ 0.583: dog still wins.
        let r = aggregate(&ns, Aggregation::RankVoting, DistanceRange::FULL);
        assert_eq!(r.label.as_deref(), Some("dog"));
        assert!((score(&r, "cat") - 0.5).abs() < 1e-6);
        assert!((score(&r, "dog") - (1.0 / 3.0 + 0.25)).abs() < 1e-6);
        // Add a "cat" at rank 3: RankVoting now picks cat (0.7 vs 0.583);
        // plurality is tied 2–2 and goes to the class that got there first
        // (dog, at rank 2).
        let ns = [
            n("a", "cat", 0.1),
            n("b", "dog", 0.5),
            n("c", "dog", 0.6),
            n("d", "cat", 0.7),
        ];
        let r = aggregate(&ns, Aggregation::RankVoting, DistanceRange::FULL);
        assert_eq!(r.label.as_deref(), Some("cat"));
        let p = aggregate(&ns, Aggregation::Plurality, DistanceRange::FULL);
        assert_eq!(p.label.as_deref(), Some("dog"));
    }

    #[test]
    fn distance_and_softmax_weights_follow_the_formulas() {
        let ns = [n("a", "x", 0.2), n("b", "y", 0.4)];
        let d = aggregate(&ns, Aggregation::Distance, DistanceRange::FULL);
        assert!((d.neighbors[0].weight - (-0.2f32).exp()).abs() < 1e-6);
        let range = DistanceRange { min: 0.2, max: 0.6 };
        let s = aggregate(&ns, Aggregation::Softmax, range);
        // d̂ = 0 and 0.5: weights e^(1/τ) and e^(0.5/τ).
        assert!((s.neighbors[0].weight / (1.0 / SOFTMAX_TAU).exp() - 1.0).abs() < 1e-5);
        assert!((s.neighbors[1].weight / (0.5 / SOFTMAX_TAU).exp() - 1.0).abs() < 1e-5);
        assert_eq!(s.label.as_deref(), Some("x"));
    }

    #[test]
    fn soft_pruning_multipliers_scale_votes() {
        let mut ns = [n("a", "cat", 0.1), n("b", "dog", 0.2)];
        ns[0].multiplier = 1.75 / (1.0 + 4.0);
        let r = aggregate(&ns, Aggregation::RankVoting, DistanceRange::FULL);
        // cat 0.5·0.35 = 0.175 < dog 1/3.
        assert_eq!(r.label.as_deref(), Some("dog"));
        assert!((r.neighbors[0].weight - 0.175).abs() < 1e-6);
    }

    #[test]
    fn empty_memory_has_no_label_and_every_vote_is_explained() {
        let d = aggregate(&[], Aggregation::RankVoting, DistanceRange::FULL);
        assert_eq!(d.label, None);
        assert!(d.scores.is_empty());
        let ns = [n("a", "x", 0.3), n("b", "x", 0.4), n("c", "y", 0.5)];
        let d = aggregate(&ns, Aggregation::Plurality, DistanceRange::FULL);
        let ids: Vec<&str> = d.neighbors.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(d.scores.len(), 2);
    }

    #[test]
    fn degenerate_range_and_names() {
        let ns = [n("a", "x", 0.3)];
        let s = aggregate(
            &ns,
            Aggregation::Softmax,
            DistanceRange { min: 1.0, max: 1.0 },
        );
        assert!(s.neighbors[0].weight.is_finite());
        for a in Aggregation::ALL {
            assert_eq!(Aggregation::parse(a.name()).unwrap(), a);
        }
        let err = Aggregation::parse("majority").unwrap_err().to_string();
        assert!(err.contains("rank_voting"), "{err}");
    }
}
