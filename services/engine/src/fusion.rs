//! Rank fusion of several backends' result lists (SPECS §1).
//!
//! Pure functions over ranked lists so they are easy to test and bench. Each
//! fused hit keeps every backend's rank and raw score, which the API returns
//! as the hit's explanation.

use std::collections::{BTreeMap, HashMap};

use mnemos_config::Normalization;
use mnemos_index_core::Hit;

/// One backend's ranked list, best first.
#[derive(Debug, Clone)]
pub struct Ranked<'a> {
    pub backend: &'a str,
    pub hits: Vec<Hit>,
}

/// A hit after fusion, with where it stood in each backend.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedHit {
    pub id: String,
    pub score: f32,
    /// backend → (1-based rank, raw score).
    pub sources: BTreeMap<String, (usize, f32)>,
}

/// Collects, per id, the rank and score it had in each list.
fn gather(lists: &[Ranked<'_>]) -> Vec<FusedHit> {
    let mut order: Vec<FusedHit> = Vec::new();
    let mut slot: HashMap<&str, usize> = HashMap::new();
    for list in lists {
        for (i, hit) in list.hits.iter().enumerate() {
            let at = *slot.entry(hit.id.as_str()).or_insert_with(|| {
                order.push(FusedHit {
                    id: hit.id.clone(),
                    score: 0.0,
                    sources: BTreeMap::new(),
                });
                order.len() - 1
            });
            // A backend listing an id twice keeps its best (first) rank.
            order[at]
                .sources
                .entry(list.backend.to_string())
                .or_insert((i + 1, hit.score));
        }
    }
    order
}

/// Sorts by score descending; ties keep first-seen order (stable sort), so
/// results are deterministic.
fn finish(mut hits: Vec<FusedHit>, k: usize) -> Vec<FusedHit> {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits.truncate(k);
    hits
}

/// Reciprocal Rank Fusion (Cormack, Clarke & Büttcher 2009):
/// score(d) = Σ_backends 1 / (k + rank_b(d)), ranks from 1.
pub fn fuse_rrf(lists: &[Ranked<'_>], rrf_k: f32, k: usize) -> Vec<FusedHit> {
    let mut hits = gather(lists);
    for h in &mut hits {
        h.score = h
            .sources
            .values()
            .map(|(rank, _)| 1.0 / (rrf_k + *rank as f32))
            .sum();
    }
    finish(hits, k)
}

/// Normalises one list's scores to comparable ranges. Min-max maps the list
/// to [0, 1]; z-score centres on the mean in units of standard deviation.
/// A list whose scores are all equal maps to 1 (min-max) or 0 (z-score).
fn normalizer(hits: &[Hit], how: Normalization) -> impl Fn(f32) -> f32 {
    let n = hits.len().max(1) as f32;
    let (min, max) = hits
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), h| {
            (lo.min(h.score), hi.max(h.score))
        });
    let mean = hits.iter().map(|h| h.score).sum::<f32>() / n;
    let var = hits.iter().map(|h| (h.score - mean).powi(2)).sum::<f32>() / n;
    let std = var.sqrt();
    move |s: f32| match how {
        Normalization::MinMax if max > min => (s - min) / (max - min),
        Normalization::MinMax => 1.0,
        Normalization::ZScore if std > 0.0 => (s - mean) / std,
        Normalization::ZScore => 0.0,
    }
}

/// Normalised linear combination: score(d) = Σ_b w_b · norm_b(score_b(d)).
/// A document missing from a backend's list contributes that backend's
/// lowest normalised score (it ranked below everything listed), which is the
/// convention of the hybrid in SPECS §1 re-ranking the union of n-bests.
pub fn fuse_linear(
    lists: &[Ranked<'_>],
    weights: &BTreeMap<String, f32>,
    how: Normalization,
    k: usize,
) -> Vec<FusedHit> {
    let mut hits = gather(lists);
    for list in lists {
        let w = weights.get(list.backend).copied().unwrap_or(0.0);
        let norm = normalizer(&list.hits, how);
        let floor = list
            .hits
            .iter()
            .map(|h| norm(h.score))
            .fold(f32::INFINITY, f32::min);
        let floor = if floor.is_finite() { floor } else { 0.0 };
        for h in &mut hits {
            let part = match h.sources.get(list.backend) {
                Some((_, raw)) => norm(*raw),
                None => floor,
            };
            h.score += w * part;
        }
    }
    finish(hits, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list<'a>(backend: &'a str, ids: &[(&str, f32)]) -> Ranked<'a> {
        Ranked {
            backend,
            hits: ids
                .iter()
                .map(|(id, s)| Hit {
                    id: id.to_string(),
                    score: *s,
                })
                .collect(),
        }
    }

    #[test]
    fn rrf_rewards_agreement() {
        let a = list("bm25", &[("x", 9.0), ("y", 5.0), ("z", 1.0)]);
        let b = list("dense", &[("y", 0.9), ("w", 0.8), ("x", 0.1)]);
        let fused = fuse_rrf(&[a, b], 60.0, 10);
        assert_eq!(fused[0].id, "y"); // ranks 2 and 1
        assert_eq!(fused[1].id, "x"); // ranks 1 and 3
        let expected = 1.0 / 62.0 + 1.0 / 61.0;
        assert!((fused[0].score - expected).abs() < 1e-6);
        assert_eq!(fused[0].sources["bm25"], (2, 5.0));
        assert_eq!(fused[0].sources["dense"], (1, 0.9));
        assert_eq!(fused.len(), 4);
        assert_eq!(fuse_rrf(&[list("bm25", &[("x", 1.0)])], 60.0, 0).len(), 0);
    }

    #[test]
    fn linear_respects_weights_and_normalisation() {
        let a = list("bm25", &[("x", 20.0), ("y", 10.0)]);
        let b = list("dense", &[("y", 0.9), ("x", 0.5)]);
        let mut w = BTreeMap::new();
        w.insert("bm25".to_string(), 1.0);
        w.insert("dense".to_string(), 0.0);
        let fused = fuse_linear(&[a.clone(), b.clone()], &w, Normalization::MinMax, 10);
        assert_eq!(fused[0].id, "x");
        assert!((fused[0].score - 1.0).abs() < 1e-6);
        w.insert("bm25".to_string(), 0.2);
        w.insert("dense".to_string(), 0.8);
        let fused = fuse_linear(&[a, b], &w, Normalization::ZScore, 10);
        assert_eq!(fused[0].id, "y");
    }

    #[test]
    fn linear_missing_backend_gets_floor_and_constant_lists_are_finite() {
        let a = list("bm25", &[("x", 3.0), ("y", 3.0)]);
        let b = list("dense", &[("z", 0.7)]);
        let w: BTreeMap<String, f32> = [("bm25".into(), 0.5), ("dense".into(), 0.5)].into();
        for how in [Normalization::MinMax, Normalization::ZScore] {
            let fused = fuse_linear(&[a.clone(), b.clone()], &w, how, 10);
            assert_eq!(fused.len(), 3);
            assert!(fused.iter().all(|h| h.score.is_finite()));
        }
        assert!(fuse_linear(&[], &w, Normalization::MinMax, 10).is_empty());
    }
}
