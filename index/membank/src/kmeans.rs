//! Spherical k-means: the clustering step of the memory tree (SPECS §5,
//! "hierarchical k-means over embeddings").
//!
//! The embeddings are L2-normalised, so similarity is the dot product and a
//! cluster's centre is its mean direction: the mean renormalised to unit
//! length (Dhillon & Modha 2001). Seeding is k-means++ (Arthur &
//! Vassilvitskii 2007) with the squared chord distance `2 − 2·x·c`.
//!
//! The partition returned is exactly the argmax-dot assignment under the
//! centroids returned, ties going to the lower cluster index. The tree's
//! greedy descent uses the same rule, so a document queried with its own
//! vector reaches the leaf it was placed in.

use mnemos_index_core::vector::dot;
use mnemos_models_core::rng::SplitMix64;

/// Clusters of one node's documents.
#[derive(Debug)]
pub(crate) struct Clustering {
    /// Unit-length centre of each cluster.
    pub centroids: Vec<Vec<f32>>,
    /// Positions in the `members` slice given to [`spherical_kmeans`], per
    /// cluster; no cluster is empty.
    pub members: Vec<Vec<usize>>,
}

/// Scales `v` to unit length; `false` (and `v` unchanged) when it has no
/// direction to keep.
pub(crate) fn normalise(v: &mut [f32]) -> bool {
    let norm = dot(v, v).sqrt();
    if !norm.is_finite() || norm <= f32::MIN_POSITIVE {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

/// Index of the centroid with the highest dot product with `x`, the first
/// one on ties. `None` only when there are no centroids.
pub(crate) fn nearest<'a>(x: &[f32], centroids: impl Iterator<Item = &'a [f32]>) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, c) in centroids.enumerate() {
        let score = dot(x, c);
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// Splits the unit vectors `members` (each `dim` long) into at most `k`
/// non-empty clusters, never more than there are members. `members` must
/// not be empty.
pub(crate) fn spherical_kmeans(
    members: &[&[f32]],
    dim: usize,
    k: usize,
    iterations: usize,
    rng: &mut SplitMix64,
) -> Clustering {
    let k = k.min(members.len()).max(1);
    let mut centroids = seed_plus_plus(members, k, rng);
    let mut assignment = assign(members, &centroids);
    for _ in 0..iterations {
        update_centroids(members, dim, &assignment, &mut centroids);
        let next = assign(members, &centroids);
        let converged = next == assignment;
        assignment = next;
        if converged {
            break;
        }
    }
    // Clusters left empty by the last assignment are dropped rather than
    // patched: moving a point into one would break the argmax property the
    // descent relies on.
    let mut clusters: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (m, &c) in assignment.iter().enumerate() {
        clusters[c].push(m);
    }
    let (centroids, members) = centroids
        .into_iter()
        .zip(clusters)
        .filter(|(_, ms)| !ms.is_empty())
        .unzip();
    Clustering { centroids, members }
}

/// k-means++: the first centre uniformly, each next one with probability
/// proportional to its squared distance from the nearest chosen centre.
fn seed_plus_plus(members: &[&[f32]], k: usize, rng: &mut SplitMix64) -> Vec<Vec<f32>> {
    let first = members[rng.below(members.len())];
    let mut centroids = vec![first.to_vec()];
    let mut d2: Vec<f64> = members.iter().map(|x| chord2(x, first)).collect();
    while centroids.len() < k {
        let total: f64 = d2.iter().sum();
        let pick = if total > 0.0 {
            let mut target = rng.uniform() * total;
            let mut pick = d2.len() - 1;
            for (i, &d) in d2.iter().enumerate() {
                if target < d {
                    pick = i;
                    break;
                }
                target -= d;
            }
            pick
        } else {
            // Every member coincides with a centre: any choice is as good.
            rng.below(members.len())
        };
        let centre = members[pick];
        for (d, x) in d2.iter_mut().zip(members) {
            *d = d.min(chord2(x, centre));
        }
        centroids.push(centre.to_vec());
    }
    centroids
}

/// Squared Euclidean distance between unit vectors, `2 − 2·x·c`, clamped
/// at zero against rounding.
fn chord2(x: &[f32], c: &[f32]) -> f64 {
    (2.0 - 2.0 * f64::from(dot(x, c))).max(0.0)
}

fn assign(members: &[&[f32]], centroids: &[Vec<f32>]) -> Vec<usize> {
    members
        .iter()
        .map(|x| nearest(x, centroids.iter().map(Vec::as_slice)).unwrap_or(0))
        .collect()
}

/// Moves each centroid to its cluster's mean direction. An empty cluster
/// is re-seeded from the member farthest from its own centroid (taken from
/// a cluster with more than one member), so `k` clusters stay in play.
fn update_centroids(
    members: &[&[f32]],
    dim: usize,
    assignment: &[usize],
    centroids: &mut [Vec<f32>],
) {
    let k = centroids.len();
    let mut sums = vec![vec![0.0f32; dim]; k];
    let mut counts = vec![0usize; k];
    for (x, &c) in members.iter().zip(assignment) {
        sums[c].iter_mut().zip(*x).for_each(|(s, v)| *s += v);
        counts[c] += 1;
    }
    for ((centroid, mut sum), &count) in centroids.iter_mut().zip(sums).zip(&counts) {
        // A mean of opposing directions has none: keep the old centre.
        if count > 0 && normalise(&mut sum) {
            *centroid = sum;
        }
    }
    let mut assignment = assignment.to_vec();
    for empty in 0..k {
        if counts[empty] > 0 {
            continue;
        }
        let farthest = members
            .iter()
            .enumerate()
            .filter(|&(m, _)| counts[assignment[m]] > 1)
            .map(|(m, x)| (m, dot(x, &centroids[assignment[m]])))
            .fold(None, |best: Option<(usize, f32)>, (m, s)| match best {
                Some((_, b)) if b <= s => best,
                _ => Some((m, s)),
            });
        if let Some((m, _)) = farthest {
            counts[assignment[m]] -= 1;
            counts[empty] = 1;
            assignment[m] = empty;
            centroids[empty] = members[m].to_vec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_clusters_than_members_and_none_empty() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        let members: Vec<&[f32]> = vec![&a, &b, &a];
        let c = spherical_kmeans(&members, 2, 8, 10, &mut SplitMix64::new(1));
        assert_eq!(c.members.len(), 2);
        assert!(c.members.iter().all(|m| !m.is_empty()));
        let mut all: Vec<usize> = c.members.concat();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2]);
    }

    #[test]
    fn identical_members_collapse_to_one_cluster() {
        let a = [0.6f32, 0.8];
        let members: Vec<&[f32]> = vec![&a; 5];
        let c = spherical_kmeans(&members, 2, 4, 10, &mut SplitMix64::new(3));
        assert_eq!(c.members, [vec![0, 1, 2, 3, 4]]);
        assert!((dot(&c.centroids[0], &a) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn result_is_the_argmax_partition_of_its_centroids() {
        let raw: Vec<Vec<f32>> = (0..60)
            .map(|i| {
                let mut v: Vec<f32> = (0..5).map(|j| ((i * 7 + j * 3) as f32).sin()).collect();
                normalise(&mut v);
                v
            })
            .collect();
        let members: Vec<&[f32]> = raw.iter().map(Vec::as_slice).collect();
        let c = spherical_kmeans(&members, 5, 6, 25, &mut SplitMix64::new(9));
        for (cluster, ms) in c.members.iter().enumerate() {
            for &m in ms {
                let best = nearest(members[m], c.centroids.iter().map(Vec::as_slice));
                assert_eq!(best, Some(cluster));
            }
        }
        for centroid in &c.centroids {
            assert!((dot(centroid, centroid) - 1.0).abs() < 1e-5);
        }
    }
}
