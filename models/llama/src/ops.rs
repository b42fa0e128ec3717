//! The pieces of the forward pass that differ between inference and
//! training, and the position tables both use.

use candle_core::{Device, Tensor, D};

use crate::config::LlamaConfig;
use crate::error::Result;
use crate::model::MAX_POSITIONS;

/// Which kernels a forward pass uses: candle's fused RMSNorm, softmax and
/// rotary kernels are fastest but have no backward pass (PITFALLS), so a
/// pass that must carry gradients spells them out in plain ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ops {
    Fused,
    Differentiable,
}

impl Ops {
    pub(crate) fn rms_norm(self, x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        Ok(match self {
            Ops::Fused => candle_nn::ops::rms_norm(x, weight, eps as f32)?,
            Ops::Differentiable => {
                let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
                x.broadcast_mul(&inv)?.broadcast_mul(weight)?
            }
        })
    }

    /// Rotary positions on interleaved pairs `(x[2i], x[2i+1])` of
    /// `x: [1, heads, t, head_dim]`, with `cos`, `sin`: `[t, head_dim / 2]`.
    pub(crate) fn rope(self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Ops::Fused => candle_nn::rotary_emb::rope_i(x, cos, sin)?,
            Ops::Differentiable => {
                let (b, h, t, hd) = x.dims4()?;
                let pairs = x.reshape((b, h, t, hd / 2, 2))?;
                let (x0, x1) = (pairs.narrow(4, 0, 1)?, pairs.narrow(4, 1, 1)?);
                let cos = cos.reshape((1, 1, t, hd / 2, 1))?;
                let sin = sin.reshape((1, 1, t, hd / 2, 1))?;
                let r0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
                let r1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
                Tensor::cat(&[r0, r1], 4)?.reshape((b, h, t, hd))?
            }
        })
    }

    pub(crate) fn softmax(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Ops::Fused => candle_nn::ops::softmax_last_dim(x)?,
            Ops::Differentiable => candle_nn::ops::softmax(x, D::Minus1)?,
        })
    }
}

/// What every block of one pass shares.
pub(crate) struct BlockStep<'a> {
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    pub mask: Option<&'a Tensor>,
    pub ops: Ops,
}

/// Rotary cosines and sines `[positions, head_dim / 2]`.
pub(crate) fn rotary_tables(c: &LlamaConfig) -> Result<(Tensor, Tensor)> {
    let hd = c.head_dim();
    let n = c.context_length.min(MAX_POSITIONS);
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| 1.0 / c.rope_theta.powf(2.0 * i as f32 / hd as f32))
        .collect();
    let mut angles = Vec::with_capacity(n * hd / 2);
    for p in 0..n {
        angles.extend(inv.iter().map(|f| p as f32 * f));
    }
    let angles = Tensor::from_vec(angles, (n, hd / 2), &Device::Cpu)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// Additive causal mask `[rep·t, start + t]` for `t` new positions after
/// `start` cached ones, repeated for the `rep` query heads that share a
/// key head; `None` for a single position (it sees everything).
pub(crate) fn causal_mask(t: usize, start: usize, rep: usize) -> Result<Option<Tensor>> {
    if t == 1 {
        return Ok(None);
    }
    let total = start + t;
    let mut m = Vec::with_capacity(rep * t * total);
    for _ in 0..rep {
        for i in 0..t {
            m.extend((0..total).map(|j| {
                if j <= start + i {
                    0f32
                } else {
                    f32::NEG_INFINITY
                }
            }));
        }
    }
    Ok(Some(Tensor::from_vec(m, (rep * t, total), &Device::Cpu)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_lets_each_position_see_itself_and_the_past() -> Result<()> {
        let m = causal_mask(2, 1, 2)?.expect("mask").to_vec2::<f32>()?;
        assert_eq!(m.len(), 4);
        for rep in 0..2 {
            assert_eq!(m[rep * 2][..2], [0.0, 0.0]);
            assert!(m[rep * 2][2].is_infinite());
            assert!(m[rep * 2 + 1].iter().all(|v| *v == 0.0));
        }
        assert!(causal_mask(1, 5, 3)?.is_none());
        Ok(())
    }

    #[test]
    fn plain_rope_matches_the_fused_kernel() -> Result<()> {
        let dev = &Device::Cpu;
        let mut rng = mnemos_models_core::rng::SplitMix64::new(3);
        let x = rng.normal_tensor((1, 3, 5, 8), 1.0, dev)?;
        let angles = rng.normal_tensor((5, 4), 1.0, dev)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);
        let fused = Ops::Fused.rope(&x, &cos, &sin)?;
        let plain = Ops::Differentiable.rope(&x, &cos, &sin)?;
        let diff = (fused - plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        let w = rng.normal_tensor(8, 1.0, dev)?;
        let a = Ops::Fused.rms_norm(&x, &w, 1e-5)?;
        let b = Ops::Differentiable.rms_norm(&x, &w, 1e-5)?;
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{diff}");
        Ok(())
    }
}
