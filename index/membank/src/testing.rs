//! Synthetic embeddings for the tests.

use mnemos_models_core::rng::SplitMix64;

use crate::kmeans::normalise;
use crate::{BankConfig, TreeParams};

/// `clusters × per_cluster` unit vectors of `dim` dimensions, cluster `c`
/// spread around the `c`-th basis vector with Gaussian noise of std
/// `noise` per component; ids are `"c{c}-{i}"`. Rows are interleaved
/// across clusters, so input order says nothing about membership.
pub(crate) fn clustered(
    clusters: usize,
    per_cluster: usize,
    dim: usize,
    noise: f64,
    seed: u64,
) -> (Vec<f32>, Vec<String>) {
    let mut rng = SplitMix64::new(seed);
    let mut vectors = Vec::with_capacity(clusters * per_cluster * dim);
    let mut ids = Vec::with_capacity(clusters * per_cluster);
    for i in 0..per_cluster {
        for c in 0..clusters {
            let mut v: Vec<f32> = (0..dim).map(|_| (rng.normal() * noise) as f32).collect();
            v[c % dim] += 1.0;
            normalise(&mut v);
            vectors.extend(v);
            ids.push(format!("c{c}-{i}"));
        }
    }
    (vectors, ids)
}

/// The `row`-th vector of a row-major block.
pub(crate) fn row(vectors: &[f32], dim: usize, row: usize) -> &[f32] {
    &vectors[row * dim..(row + 1) * dim]
}

/// A tiny bank's config: 6-wide model, blocks in layers 1 and 3, 4 then 2
/// units, a 2-level tree of 3 children.
pub(crate) fn bank_config() -> BankConfig {
    BankConfig {
        anchor: "tiny".into(),
        dim: 6,
        layers: vec![3, 1],
        units_per_level: vec![4, 2],
        tree: TreeParams {
            levels: 2,
            branching: 3,
            iterations: 25,
            seed: 5,
        },
        training: Vec::new(),
        max_tokens: 0,
    }
}
