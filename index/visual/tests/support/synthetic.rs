//! Synthetic image embeddings for the scale example and the benchmark.
//!
//! Uniform random points in 1280 dimensions are a useless test of an ANN
//! graph: every pair is about equally far apart, so "nearest" means
//! nothing and recall collapses. Real image embeddings are structured:
//! classes form clusters; class centres are themselves related (breeds of
//! dog lie nearer each other than to trucks), so they span far fewer
//! directions than the embedding has; the variation within a class spans
//! a few dozen directions (pose, lighting, background); and the whole
//! cloud leans towards a common mean direction. Each vector is made as
//!
//! ```text
//! normalise( 0.5·g  +  c_class  +  0.8·B·z/√r  +  σ·ε )
//! ```
//!
//! - `g`: one unit vector shared by everything (the common mean);
//! - `c_class = normalise(S·u_class)`, `u ~ N(0, I_s)`, `S` a random
//!   `dim × s` basis: class centres in an `s`-dimensional "semantic"
//!   subspace (`s = 64` by default; 0 draws centres independently in all
//!   `dim` directions, which leaves every class equally far from every
//!   other: no real data look like that, and graph search has no gradient
//!   to follow between classes);
//! - `B`: a random `dim × r` basis shared by all classes, `z ~ N(0, I_r)`:
//!   low-rank within-class variation (`r = 48` by default);
//! - `ε`: isotropic noise of unit expected norm (uniform components, cheap
//!   to draw), `σ = 0.3` by default: small beside the structured parts.
//!
//! With the defaults (squared norms 0.25 + 1 + 0.64 + 0.09 before
//! normalising), two samples of one class have cosine ≈ 0.63, of
//! different classes ≈ 0.13 ± 0.06, and a class's most similar other class
//! has its centre at cosine ≈ 0.4. Queries are drawn from the same model with
//! another seed, so they are never stored items.

#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const GLOBAL: f32 = 0.5;
const LATENT: f32 = 0.8;

/// The shape of the synthetic data.
#[derive(Debug, Clone)]
pub struct Spec {
    pub dim: usize,
    pub classes: usize,
    /// Directions of within-class variation (`r`).
    pub rank: usize,
    /// Dimension of the subspace holding the class centres (`s`); 0 for
    /// independent centres.
    pub semantic: usize,
    /// Expected norm of the isotropic noise (`σ`).
    pub noise: f32,
}

impl Spec {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            classes: 1000,
            rank: 48,
            semantic: 64,
            noise: 0.3,
        }
    }
}

/// A generator of class-labelled synthetic embeddings.
#[derive(Clone)]
pub struct Synthetic {
    spec: Spec,
    global: Vec<f32>,
    /// `classes × dim`, unit rows.
    centres: Vec<f32>,
    /// `rank × dim`: row `i` is basis column `i`.
    basis: Vec<f32>,
    rng: StdRng,
}

impl Synthetic {
    pub fn new(spec: Spec, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let dim = spec.dim;
        let global = unit((0..dim).map(|_| gaussian(&mut rng)).collect());
        let semantic = random_basis(&mut rng, spec.semantic, dim);
        let centres = (0..spec.classes)
            .flat_map(|_| {
                if spec.semantic == 0 {
                    unit((0..dim).map(|_| gaussian(&mut rng)).collect())
                } else {
                    let mut c = vec![0.0; dim];
                    for column in semantic.chunks_exact(dim) {
                        let u = gaussian(&mut rng);
                        for (x, s) in c.iter_mut().zip(column) {
                            *x += u * s;
                        }
                    }
                    unit(c)
                }
            })
            .collect();
        let basis = random_basis(&mut rng, spec.rank, dim);
        Self {
            spec,
            global,
            centres,
            basis,
            rng,
        }
    }

    /// The same model (centres, bases) drawing from another random stream:
    /// for queries that come from the stored distribution but are not
    /// stored items.
    pub fn with_seed(&self, seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            ..self.clone()
        }
    }

    /// A sample of a uniformly drawn class: `(class, unit vector)`.
    pub fn sample(&mut self) -> (usize, Vec<f32>) {
        let class = self.rng.random_range(0..self.spec.classes);
        (class, self.sample_of(class))
    }

    /// A unit vector of class `class`.
    pub fn sample_of(&mut self, class: usize) -> Vec<f32> {
        let dim = self.spec.dim;
        let centre = &self.centres[class * dim..(class + 1) * dim];
        let mut v: Vec<f32> = self
            .global
            .iter()
            .zip(centre)
            .map(|(g, c)| GLOBAL * g + c)
            .collect();
        let latent = LATENT / (self.spec.rank.max(1) as f32).sqrt();
        for column in self.basis.chunks_exact(dim) {
            let z = gaussian(&mut self.rng) * latent;
            for (x, b) in v.iter_mut().zip(column) {
                *x += z * b;
            }
        }
        // Uniform on [-a, a] has variance a²/3: a = √3·σ/√dim gives the
        // noise an expected norm of σ.
        let a = 3f32.sqrt() * self.spec.noise / (dim as f32).sqrt();
        if a > 0.0 {
            for x in &mut v {
                *x += self.rng.random_range(-a..a);
            }
        }
        unit(v)
    }
}

/// `n` random directions of about unit norm, row-major `n × dim`.
fn random_basis(rng: &mut StdRng, n: usize, dim: usize) -> Vec<f32> {
    let scale = 1.0 / (dim as f32).sqrt();
    (0..n * dim).map(|_| gaussian(rng) * scale).collect()
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    for x in &mut v {
        *x /= norm;
    }
    v
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u: f32 = rng.random_range(f32::EPSILON..1.0);
    let v: f32 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}
