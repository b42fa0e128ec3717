//! Turning per-token hidden states into one sentence vector.
//!
//! Sentence-BERT (Reimers & Gurevych 2019, arXiv:1908.10084, §3) found the
//! mean of the token vectors to work better than the `[CLS]` vector for
//! sentence similarity; all-MiniLM-L6-v2 uses the mean, some other
//! checkpoints (e.g. BGE) use `[CLS]`. Padding positions must not count
//! towards the mean, so it is taken under the attention mask.

use candle_core::{DType, Result, Tensor, D};

/// How token vectors are combined into a sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Mean of the token vectors under the attention mask.
    #[default]
    Mean,
    /// The vector of the first token (`[CLS]`).
    Cls,
}

/// Pools `hidden` `(batch, seq, dim)` into `(batch, dim)`; `mask` is
/// `(batch, seq)` with 1 for real tokens and 0 for padding, in `hidden`'s
/// dtype.
pub(crate) fn pool(hidden: &Tensor, mask: &Tensor, pooling: Pooling) -> Result<Tensor> {
    match pooling {
        Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
        Pooling::Mean => {
            let summed = hidden.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?.sum(1)?;
            // sentence-transformers clamps the count at 1e-9; our sequences
            // always hold [CLS] and [SEP], so this only guards a zero mask.
            let counts = mask.sum_keepdim(1)?.clamp(1e-9, f64::MAX)?;
            summed.broadcast_div(&counts)
        }
    }
}

/// Scales each row of `x` `(batch, dim)` to unit L2 norm, so that a dot
/// product of two outputs is their cosine similarity. Like PyTorch's
/// `F.normalize`, a zero row stays zero instead of becoming NaN.
pub(crate) fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norms = x
        .to_dtype(DType::F32)?
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norms.to_dtype(x.dtype())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn hidden() -> Tensor {
        // Two sequences of three tokens, dim 2; the second has one pad token.
        let data: Vec<f32> = vec![
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, //
            2.0, 0.0, 4.0, 0.0, 100.0, 100.0,
        ];
        Tensor::from_vec(data, (2, 3, 2), &Device::Cpu).expect("shape matches")
    }

    fn mask() -> Tensor {
        Tensor::from_vec(vec![1f32, 1., 1., 1., 1., 0.], (2, 3), &Device::Cpu)
            .expect("shape matches")
    }

    #[test]
    fn mean_ignores_padding() -> Result<()> {
        let pooled = pool(&hidden(), &mask(), Pooling::Mean)?.to_vec2::<f32>()?;
        assert_eq!(pooled, vec![vec![3.0, 4.0], vec![3.0, 0.0]]);
        Ok(())
    }

    #[test]
    fn cls_takes_first_token() -> Result<()> {
        let pooled = pool(&hidden(), &mask(), Pooling::Cls)?.to_vec2::<f32>()?;
        assert_eq!(pooled, vec![vec![1.0, 2.0], vec![2.0, 0.0]]);
        Ok(())
    }

    #[test]
    fn normalize_gives_unit_rows_and_keeps_zero_rows() -> Result<()> {
        let x = Tensor::from_vec(vec![3f32, 4., 0., 0.], (2, 2), &Device::Cpu)?;
        let y = l2_normalize(&x)?.to_vec2::<f32>()?;
        assert_eq!(y, vec![vec![0.6, 0.8], vec![0.0, 0.0]]);
        Ok(())
    }
}
