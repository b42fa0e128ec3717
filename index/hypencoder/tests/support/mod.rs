//! Synthetic document vectors and q-nets for tests, benches and examples.
//!
//! Real sentence embeddings are not uniform on the sphere: they cluster by
//! topic and occupy a low-dimensional subspace. Vectors are made the way
//! `mnemos-hnsw`'s tests make them: a cluster centre in a small latent
//! space, per-point latent noise, a fixed random projection up to `dim`,
//! full-rank noise, normalised.

#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use mnemos_hypencoder::{Hypencoder, HypencoderConfig, QNets, QueryStates};
use mnemos_models_core::rng::SplitMix64;

const LATENT_DIM: usize = 32;
/// Spread of a point around its cluster centre (centres have unit variance
/// per latent dimension): clusters overlap.
const LATENT_NOISE: f32 = 1.5;
/// Full-rank noise per output dimension, against a projected component of
/// about sqrt(LATENT_DIM) ≈ 5.7.
const ISOTROPIC_NOISE: f32 = 3.0;

/// The model crates' SplitMix64 with the draws these fixtures use;
/// deterministic across platforms and dependency versions.
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Approximately standard normal (Irwin–Hall with 4 terms, rescaled).
    pub fn gaussian(&mut self) -> f32 {
        let sum: f32 = (0..4).map(|_| self.uniform()).sum();
        (sum - 2.0) * 3.0f32.sqrt()
    }
}

/// Clustered unit vectors; all draws of one generator share its clusters
/// and projection.
pub struct Embeddings {
    dim: usize,
    projection: Vec<f32>,
    centres: Vec<Vec<f32>>,
    rng: Rng,
}

impl Embeddings {
    pub fn new(dim: usize, clusters: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let projection = (0..LATENT_DIM * dim).map(|_| rng.gaussian()).collect();
        let centres = (0..clusters)
            .map(|_| (0..LATENT_DIM).map(|_| rng.gaussian()).collect())
            .collect();
        Self {
            dim,
            projection,
            centres,
            rng,
        }
    }

    pub fn sample(&mut self) -> Vec<f32> {
        let centre = self.rng.below(self.centres.len());
        let z: Vec<f32> = self.centres[centre]
            .iter()
            .map(|c| c + LATENT_NOISE * self.rng.gaussian())
            .collect();
        let mut v = vec![0f32; self.dim];
        for (i, zi) in z.iter().enumerate() {
            let row = &self.projection[i * self.dim..(i + 1) * self.dim];
            for (x, p) in v.iter_mut().zip(row) {
                *x += zi * p;
            }
        }
        for x in v.iter_mut() {
            *x += ISOTROPIC_NOISE * self.rng.gaussian();
        }
        unit(v)
    }

    pub fn samples(&mut self, n: usize) -> Vec<Vec<f32>> {
        (0..n).map(|_| self.sample()).collect()
    }
}

pub fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

pub fn id(i: usize) -> String {
    format!("doc-{i}")
}

/// `(id, seq, vector)` triples as `IndexWrite::upsert` takes them.
pub fn entries<'a>(ids: &'a [String], vectors: &'a [Vec<f32>]) -> Vec<(&'a str, u64, &'a [f32])> {
    ids.iter()
        .zip(vectors)
        .map(|(id, v)| (id.as_str(), 1, v.as_slice()))
        .collect()
}

/// A randomly initialised Hypencoder of width `dim` with `layers` hidden
/// layers.
pub fn model(dim: usize, layers: usize, seed: u64) -> Hypencoder {
    Hypencoder::new(HypencoderConfig::new(dim, layers), seed).expect("valid config")
}

/// q-nets for `queries` random queries of `tokens` tokens, token states
/// normal with standard deviation `scale`.
pub fn qnets(model: &Hypencoder, queries: usize, tokens: usize, scale: f32, seed: u64) -> QNets {
    let dim = model.config().hidden_size;
    let mut rng = Rng::new(seed);
    let states: Vec<f32> = (0..queries * tokens * dim)
        .map(|_| scale * rng.gaussian())
        .collect();
    let states = Tensor::from_vec(states, (queries, tokens, dim), &Device::Cpu).expect("shape");
    let mask = Tensor::ones((queries, tokens), DType::F32, &Device::Cpu).expect("mask");
    model
        .generate(&QueryStates::new(states, mask).expect("valid states"))
        .expect("generate")
}
