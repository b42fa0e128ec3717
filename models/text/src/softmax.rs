//! Attention softmax with the padding mask applied in the same pass.
//!
//! candle's path, `broadcast_add(mask_bias)` then `softmax_last_dim`, reads
//! and writes the `(batch, heads, seq, seq)` scores twice and calls scalar
//! libm `expf` per element: at 256 tokens a profile put ~15% of one-thread
//! inference time there. Here one in-place pass per row finds the maximum
//! over real keys, exponentiates with [`crate::fastmath::exp_neg`]
//! (vectorised), sets padded keys to exactly zero weight, as PyTorch's
//! `finfo.min` bias does, and normalises.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, InplaceOp2, Layout, Result, Tensor};

use mnemos_models_core::simd::{vectorized, Kernel};

use crate::fastmath::{exp_neg, sum, LANES};

/// Largest score among the real keys, `-inf` if there is none.
#[inline(always)]
fn masked_max(row: &[f32], mask: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut rows = row.chunks_exact(LANES);
    let mut masks = mask.chunks_exact(LANES);
    for (xs, ms) in rows.by_ref().zip(masks.by_ref()) {
        for l in 0..LANES {
            let x = if ms[l] > 0.0 {
                xs[l]
            } else {
                f32::NEG_INFINITY
            };
            acc[l] = if x > acc[l] { x } else { acc[l] };
        }
    }
    for (&x, &m) in rows.remainder().iter().zip(masks.remainder()) {
        if m > 0.0 && x > acc[0] {
            acc[0] = x;
        }
    }
    acc.into_iter().fold(f32::NEG_INFINITY, f32::max)
}

/// Softmax of one row of scores over the keys whose `mask` is 1.
#[inline(always)]
fn masked_softmax_row(row: &mut [f32], mask: &[f32]) {
    let max = masked_max(row, mask);
    if max == f32::NEG_INFINITY {
        // No real key (cannot happen for tokenised text, which always has
        // [CLS] and [SEP]): attend to nothing rather than divide by zero.
        row.fill(0.0);
        return;
    }
    for (x, &m) in row.iter_mut().zip(mask) {
        // A select, not `· m`: a padded score above the maximum would make
        // exp overflow, and ∞·0 is NaN.
        *x = if m > 0.0 { exp_neg(max - *x) } else { 0.0 };
    }
    let inv = 1.0 / sum(row);
    for x in row.iter_mut() {
        *x *= inv;
    }
}

/// Every row of `scores`, `rows_per_item` rows per mask row.
struct SoftmaxRows<'a> {
    scores: &'a mut [f32],
    mask: &'a [f32],
    keys: usize,
    rows_per_item: usize,
}

impl Kernel for SoftmaxRows<'_> {
    #[inline(always)]
    fn run(self) {
        for (i, row) in self.scores.chunks_exact_mut(self.keys).enumerate() {
            let b = i / self.rows_per_item;
            masked_softmax_row(row, &self.mask[b * self.keys..(b + 1) * self.keys]);
        }
    }
}

struct MaskedSoftmax;

impl InplaceOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "mnemos-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (Some((start, end)), Some((mstart, mend))) =
            (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            bail!("masked softmax: scores and mask must be contiguous");
        };
        let (batch, keys) = l2.shape().dims2()?;
        let dims = l1.shape().dims();
        if dims.len() != 4 || dims[0] != batch || dims[3] != keys {
            bail!(
                "masked softmax: scores {:?} do not match mask ({batch}, {keys})",
                dims
            );
        }
        let rows_per_item = dims[1] * dims[2];
        match (s1, s2) {
            (CpuStorage::F32(scores), CpuStorage::F32(mask)) => {
                vectorized(SoftmaxRows {
                    scores: &mut scores[start..end],
                    mask: &mask[mstart..mend],
                    keys,
                    rows_per_item,
                });
            }
            (a, b) => bail!(
                "masked softmax: only f32 is supported, got {:?} and {:?}",
                a.dtype(),
                b.dtype()
            ),
        }
        Ok(())
    }
}

/// Replaces `scores` `(batch, heads, queries, keys)` in place by their
/// softmax over keys, giving weight 0 to keys whose `mask` `(batch, keys)`
/// entry is 0. `scores` must be a contiguous f32 tensor that nothing else
/// shares, e.g. a fresh matrix product.
pub(crate) fn masked_softmax_in_place(scores: &Tensor, mask: &Tensor) -> Result<()> {
    scores.inplace_op2(mask, &MaskedSoftmax)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::ops::softmax_last_dim;

    #[test]
    fn matches_candle_softmax_with_bias() -> Result<()> {
        let dev = Device::Cpu;
        let mut rng = mnemos_models_core::rng::SplitMix64::new(5);
        let scores = rng.normal_tensor((2, 3, 4, 5), 3.0, &dev)?;
        let mask = Tensor::new(
            &[[1f32, 1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]],
            &dev,
        )?;
        let bias = mask
            .affine(f64::from(f32::MAX), f64::from(f32::MIN))?
            .reshape((2, 1, 1, 5))?;
        let expected = softmax_last_dim(&scores.broadcast_add(&bias)?)?;
        let ours = scores.copy()?;
        masked_softmax_in_place(&ours, &mask)?;
        let diff = (ours - &expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "max difference {diff}");
        Ok(())
    }

    #[test]
    fn padded_keys_get_exactly_zero() {
        let mut row = [3.0f32, -2.0, 50.0, 1e30];
        masked_softmax_row(&mut row, &[1.0, 1.0, 0.0, 0.0]);
        assert_eq!(row[2], 0.0);
        assert_eq!(row[3], 0.0);
        assert!((row[0] + row[1] - 1.0).abs() < 1e-6);
        assert!(row[0] > row[1]);
    }

    #[test]
    fn long_rows_use_every_lane_and_the_remainder() {
        // 37 keys: two full lane chunks plus a remainder of 5; the largest
        // real score sits in the remainder.
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        row[35] = 4.0;
        let mut mask = vec![1f32; 37];
        mask[36] = 0.0;
        let expected: Vec<f64> = {
            let exps: Vec<f64> = row[..36].iter().map(|&x| f64::from(x).exp()).collect();
            let total: f64 = exps.iter().sum();
            exps.iter().map(|e| e / total).collect()
        };
        masked_softmax_row(&mut row, &mask);
        for (got, want) in row.iter().zip(&expected) {
            assert!((f64::from(*got) - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert_eq!(row[36], 0.0);
    }

    #[test]
    fn all_masked_row_is_zero_not_nan() {
        let mut row = [1.0f32, 2.0];
        masked_softmax_row(&mut row, &[0.0, 0.0]);
        assert_eq!(row, [0.0, 0.0]);
    }

    #[test]
    fn shape_mismatch_is_an_error() -> Result<()> {
        let dev = Device::Cpu;
        let scores = Tensor::zeros((2, 1, 3, 3), candle_core::DType::F32, &dev)?;
        let mask = Tensor::ones((2, 4), candle_core::DType::F32, &dev)?;
        assert!(masked_softmax_in_place(&scores, &mask).is_err());
        Ok(())
    }
}
