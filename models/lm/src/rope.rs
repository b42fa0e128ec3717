//! Rotary position embeddings (Su et al., "RoFormer", 2021): each pair of
//! query/key channels is rotated by an angle proportional to the position,
//! so attention scores depend on relative offsets only.
//!
//! The pairs are the two halves of each head (`x[i]` with `x[i + d/2]`,
//! the GPT-NeoX / Llama layout of hub checkpoints), not adjacent channels.

use candle_core::{Device, Tensor, D};

use crate::error::{LmError, Result};

/// Cosine and sine tables for every position up to the context length.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    /// `(max_seq_len, head_dim / 2)`.
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Tables for heads of width `head_dim` (even) and positions
    /// `0..max_seq_len`; frequency `i` is `theta^(−2i / head_dim)`.
    pub fn new(head_dim: usize, max_seq_len: usize, theta: f64, device: &Device) -> Result<Self> {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_seq_len * half);
        let mut sin = Vec::with_capacity(max_seq_len * half);
        for pos in 0..max_seq_len {
            for i in 0..half {
                let freq = theta.powf(-2.0 * i as f64 / head_dim as f64);
                let angle = pos as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (max_seq_len, half), device)?,
            sin: Tensor::from_vec(sin, (max_seq_len, half), device)?,
        })
    }

    /// Rotates `x` of shape `(B, heads, T, head_dim)` whose tokens sit at
    /// positions `offset..offset + T`.
    ///
    /// Training writes the rotation with plain ops: candle's fused `rope`
    /// has no backward pass (PITFALLS). Inference uses the fused kernel.
    pub fn apply(&self, x: &Tensor, offset: usize, train: bool) -> Result<Tensor> {
        let (_, _, t, d) = x.dims4()?;
        let (max, half) = self.cos.dims2()?;
        if offset + t > max || d != 2 * half {
            return Err(LmError::InvalidInput(format!(
                "positions {offset}..{} exceed the context of {max} tokens",
                offset + t
            )));
        }
        let cos = self.cos.narrow(0, offset, t)?;
        let sin = self.sin.narrow(0, offset, t)?;
        if !train {
            return Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)?);
        }
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
        let rotated2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
        Ok(Tensor::cat(&[rotated1, rotated2], D::Minus1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_and_plain_rotations_agree_and_keep_norms() -> Result<()> {
        let dev = Device::Cpu;
        let rope = Rope::new(8, 16, 10_000.0, &dev)?;
        let x = crate::rng::SplitMix64::new(4).normal_tensor((2, 3, 5, 8), 1.0, &dev)?;
        let fused = rope.apply(&x, 4, false)?;
        let plain = rope.apply(&x, 4, true)?;
        let diff = (&fused - &plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "diff {diff}");
        let norms = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(t.sqr()?.sum_all()?.to_vec0::<f32>().map(|v| vec![v])?)
        };
        let (a, b) = (norms(&x)?[0], norms(&plain)?[0]);
        assert!((a - b).abs() / a < 1e-5);
        assert!(rope.apply(&x, 12, false).is_err());
        Ok(())
    }
}
