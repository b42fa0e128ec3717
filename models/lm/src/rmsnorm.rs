//! Root-mean-square layer normalisation (Zhang & Sennrich 2019): scale
//! each vector by the inverse of its RMS, then by a learned gain; no mean
//! subtraction and no bias.

use candle_core::{Tensor, D};

use crate::error::Result;
use crate::params::{Init, ParamSource};

/// An RMSNorm over the last dimension.
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// The gain `name` of width `dim`, initialised to ones.
    pub fn build(src: &mut ParamSource, name: &str, dim: usize, eps: f64) -> Result<Self> {
        let weight = src.param(name, dim, Init::Const(1.0))?;
        Ok(Self { weight, eps })
    }

    /// Normalises `x` of shape `(…, dim)`.
    ///
    /// Training uses plain tensor ops: candle's fused `rms_norm` has no
    /// backward pass and would silently leave the gains and everything
    /// below untrained (PITFALLS, "candle training"). Inference uses the
    /// fused kernel, one pass instead of five.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            return Ok(candle_nn::ops::rms_norm(
                &x.contiguous()?,
                &self.weight,
                self.eps as f32,
            )?);
        }
        let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?;
        let inv_rms = (mean_square + self.eps)?.sqrt()?.recip()?;
        Ok(x.broadcast_mul(&inv_rms)?.broadcast_mul(&self.weight)?)
    }
}
