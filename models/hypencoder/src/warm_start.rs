//! The dense warm start ([`crate::Start::Dense`]): hyperheads whose q-nets,
//! before any training, score documents like the dual encoder underneath.
//!
//! Why: the paper trains on MS MARCO's half a million queries; SciFact has
//! ~800. From the paper's random start a q-net must learn text matching from
//! those few queries, while the frozen encoder already matches text well
//! (its cosine is the dense backend). Starting at the encoder's own ranking
//! turns training into learning *corrections* to it.
//!
//! The construction keeps the architecture of SPECS §2 untouched; only the
//! initial values differ:
//!
//! - Every hidden layer's base weight is the identity and its base bias a
//!   constant `c_j` large enough that `ReLU(x + c_j)` never clips. Then the
//!   layer computes `LN(x + c_j) = z(x)`, the standardised `x`. With the
//!   residual, `x₁ = z(d) + d`, an increasing affine map of `d`, whose
//!   standardisation is again `z(d)`; by induction every layer sees an
//!   affine image of `d` and the last one (no residual) outputs `z(d)`.
//! - The output column's head attends uniformly (its learned query is 0)
//!   over the query's tokens with an identity value projection shifted by
//!   a constant, so `H` is the mean of the token states (the encoder's
//!   pooled, not yet normalised query vector `u`) plus that constant; its
//!   `Ĥ` layer is `β·I`, giving `W_out = β·z(u)`.
//!
//! So the initial score is `β·z(d)·z(u) = β·h·pearson(d, u)`: Pearson's
//! correlation is the cosine of the mean-centred vectors, which ranks a
//! query's documents almost exactly as the encoder's cosine does. All other
//! `Ĥ` layers keep the paper's near-zero initialisation, so every generated
//! weight starts a hair away from these bases and gradients reach every
//! head from the first step.

use candle_core::{Device, Tensor};

use crate::config::HypencoderConfig;
use crate::hyperhead::{HeadGroup, HyperHeads};

/// `β`: scale of the initial scores. `β·h·pearson` with `β = 0.05`, `h =
/// 384` spans ~±19, the usual scale (20) of contrastive sentence-embedding
/// training, so the in-batch softmax is neither flat nor saturated.
pub const DENSE_SCORE_SCALE: f32 = 0.05;

/// Shift added to the pooled token states in the output head: MiniLM's
/// token-state means stay far above −10, so `ReLU` passes them unchanged.
pub const VALUE_SHIFT: f32 = 10.0;

/// Base bias of hidden layer `j`: layer `j`'s input is `d` plus `j`
/// standardised copies of it, whose entries grow with `j`; `8·(j + 1)`
/// keeps `ReLU` from clipping even MiniLM's outlier dimensions (~±6 in a
/// standardised embedding).
pub fn hidden_shift(j: usize) -> f32 {
    8.0 * (j as f32 + 1.0)
}

/// Rewrites freshly initialised `heads` into the dense warm start.
pub(crate) fn dense(heads: HyperHeads, cfg: &HypencoderConfig) -> candle_core::Result<HyperHeads> {
    let h = cfg.hidden_size;
    let l = cfg.num_hidden_layers;
    let dev = Device::Cpu;

    // Hidden weights: base = identity for every layer.
    let eye = Tensor::eye(h, candle_core::DType::F32, &dev)?;
    let matrices = HeadGroup {
        base: Tensor::stack(&vec![eye.clone(); l], 0)?,
        ..heads.matrices
    };

    // Vectors: hidden biases `c_j`, then the output column's head.
    let v = heads.vectors;
    let mut base = v.base.flatten_all()?.to_vec1::<f32>()?; // (L + 1)·h
    for (j, chunk) in base.chunks_exact_mut(h).enumerate() {
        chunk.fill(if j < l { hidden_shift(j) } else { 0.0 });
    }
    let replace_last = |t: &Tensor, last: Tensor| -> candle_core::Result<Tensor> {
        Tensor::cat(&[t.narrow(0, 0, l)?, last.unsqueeze(0)?], 0)
    };
    let vectors = HeadGroup {
        query: replace_last(&v.query, Tensor::zeros((1, h), v.query.dtype(), &dev)?)?,
        value: replace_last(&v.value, eye.clone())?,
        value_bias: replace_last(&v.value_bias, Tensor::full(VALUE_SHIFT, h, &dev)?)?,
        delta_weight: replace_last(&v.delta_weight, (eye * DENSE_SCORE_SCALE as f64)?)?,
        delta_bias: replace_last(&v.delta_bias, Tensor::zeros(h, v.delta_bias.dtype(), &dev)?)?,
        base: Tensor::from_vec(base, v.base.shape(), &dev)?,
        key: v.key,
    };
    Ok(HyperHeads { matrices, vectors })
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use crate::{Hypencoder, HypencoderConfig, QueryStates, Start};

    /// Pearson correlation of two equal-length slices.
    fn pearson(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len() as f32;
        let (ma, mb) = (a.iter().sum::<f32>() / n, b.iter().sum::<f32>() / n);
        let cov: f32 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f32 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f32 = b.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    }

    #[test]
    fn dense_start_scores_by_pearson_correlation_with_the_pooled_query() -> crate::Result<()> {
        let h = 64;
        let cfg = HypencoderConfig {
            start: Start::Dense,
            ..HypencoderConfig::new(h, 4)
        };
        let model = Hypencoder::new(cfg, 3)?;
        let dev = Device::Cpu;
        // Two queries of 5 tokens, the second with 2 padding tokens whose
        // (large) states must not count.
        let mut rng = crate::rng::SplitMix64::new(5);
        let mut states = rng.normal_tensor((2, 5, h), 0.5, &dev)?.to_vec3::<f32>()?;
        for token in &mut states[1][3..5] {
            token.iter_mut().for_each(|v| *v = 50.0);
        }
        let flat: Vec<f32> = states.iter().flatten().flatten().copied().collect();
        let mask = vec![1., 1., 1., 1., 1., 1., 1., 1., 0., 0.];
        let queries = QueryStates::from_flat(flat, mask, 2, 5, h)?;
        let docs = rng.normal_tensor((40, h), 1.0, &dev)?;
        let norms = docs.sqr()?.sum_keepdim(1)?.sqrt()?;
        let docs = docs.broadcast_div(&norms)?;
        let scores = model.generate(&queries)?.score(&docs)?;
        let docs = docs.to_vec2::<f32>()?;
        for (q, real) in [(0, 5), (1, 3)] {
            let pooled: Vec<f32> = (0..h)
                .map(|i| (0..real).map(|t| states[q][t][i]).sum::<f32>() / real as f32)
                .collect();
            // Scores span ±β·h; the near-zero `Ĥ` layers may move each by
            // a few hundredths of that (more at this small h, where their
            // initial spread 1/h² is larger).
            let span = super::DENSE_SCORE_SCALE * h as f32;
            for (d, score) in docs.iter().zip(&scores[q]) {
                let expected = span * pearson(d, &pooled);
                assert!(
                    (score - expected).abs() < 0.02 * span,
                    "query {q}: {score} vs {expected}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn dense_start_round_trips_through_save_and_load() -> crate::Result<()> {
        let cfg = HypencoderConfig {
            start: Start::Dense,
            ..HypencoderConfig::new(16, 2)
        };
        let model = Hypencoder::new(cfg, 1)?;
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path(), DType::F32)?;
        let back = Hypencoder::load(dir.path())?;
        for ((name, a), (_, b)) in model.named_tensors().iter().zip(back.named_tensors()) {
            let diff = (*a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff == 0.0, "{name} differs by {diff}");
        }
        Ok(())
    }
}
