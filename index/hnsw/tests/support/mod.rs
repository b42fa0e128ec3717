//! Synthetic embeddings for tests and benches.
//!
//! Real sentence embeddings are not uniform on the sphere: they cluster by
//! topic and occupy a low-dimensional subspace. Uniform random vectors in
//! 384 dimensions are a much harder (and unrealistic) case for any ANN
//! graph, so recall is measured on vectors made the way below instead: a
//! cluster centre in a small latent space, per-point latent noise, a fixed
//! random projection up to `dim`, full-rank noise, normalised.

#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const LATENT_DIM: usize = 32;
const CLUSTERS: usize = 1000;
/// Spread of a point around its cluster centre (centres have unit variance
/// per latent dimension): clusters overlap.
const LATENT_NOISE: f32 = 1.5;
/// Full-rank noise per output dimension, against a projected component of
/// about sqrt(LATENT_DIM) ≈ 5.7.
const ISOTROPIC_NOISE: f32 = 3.0;

/// Draws clustered unit vectors. All draws from one generator share its
/// clusters and projection, so queries and corpus come from one
/// distribution. Hard enough to separate settings (recall@10 with m = 16:
/// 0.90 at ef_search 32, 0.997 at 128 for 20k vectors; 0.81 and 0.980 for
/// 100k) while far easier than uniform vectors.
pub struct Embeddings {
    dim: usize,
    projection: Vec<f32>,
    centres: Vec<Vec<f32>>,
    rng: StdRng,
}

impl Embeddings {
    pub fn new(dim: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let projection = (0..LATENT_DIM * dim).map(|_| gaussian(&mut rng)).collect();
        let centres = (0..CLUSTERS)
            .map(|_| (0..LATENT_DIM).map(|_| gaussian(&mut rng)).collect())
            .collect();
        Self {
            dim,
            projection,
            centres,
            rng,
        }
    }

    pub fn sample(&mut self) -> Vec<f32> {
        let centre = self.rng.random_range(0..self.centres.len());
        let z: Vec<f32> = self.centres[centre]
            .iter()
            .map(|c| c + LATENT_NOISE * gaussian(&mut self.rng))
            .collect();
        let v: Vec<f32> = (0..self.dim)
            .map(|j| {
                let projected: f32 = (0..LATENT_DIM)
                    .map(|i| z[i] * self.projection[i * self.dim + j])
                    .sum();
                projected + ISOTROPIC_NOISE * gaussian(&mut self.rng)
            })
            .collect();
        unit(v)
    }

    pub fn samples(&mut self, n: usize) -> Vec<Vec<f32>> {
        (0..n).map(|_| self.sample()).collect()
    }
}

/// Uniform random unit vectors: the hard case, and fine for tests that only
/// need distinct vectors.
pub fn uniform(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| unit((0..dim).map(|_| gaussian(&mut rng)).collect()))
        .collect()
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// Approximately standard normal (Irwin–Hall with 4 terms, rescaled to unit
/// variance); good enough for synthetic data and needs no extra crate.
fn gaussian(rng: &mut StdRng) -> f32 {
    let sum: f32 = (0..4).map(|_| rng.random::<f32>()).sum();
    (sum - 2.0) * 3.0f32.sqrt()
}

pub fn id(i: usize) -> String {
    format!("doc-{i}")
}
