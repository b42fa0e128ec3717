//! Layer normalisation (Ba et al. 2016, arXiv:1607.06450) with BERT's
//! residual addition folded in: `LN(x + residual)` in place, one thread.
//!
//! candle-nn's `LayerNorm` runs its rows through rayon's `par_iter`
//! whatever their number. An inference worker is not a rayon thread, so
//! each of the 13 normalisations of a MiniLM forward pass was handed to
//! rayon's pool and the worker slept until a pool thread had run it: two
//! thread switches per call, ~8% of one-thread time for a search query in
//! a profile. Two workers also shared the one pool thread that
//! `RAYON_NUM_THREADS=1` leaves: SciFact queries one at a time on two
//! workers went from 165–170 to 215–256 per second with this module, one
//! worker alone from 86–106 to 120–136 (`corpus_embed … 1109 1 2` and
//! `… 1 1`, interleaved runs). Here the rows run on the calling thread,
//! and the residual sum, which candle wrote to a fresh tensor first, is
//! made in the same pass.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, InplaceOp1, InplaceOp2, Layout, Result, Tensor};
use candle_nn::VarBuilder;

use mnemos_models_core::simd::{vectorized, Kernel};

use crate::fastmath::{sum, LANES};

#[inline(always)]
fn squared_deviation(xs: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in chunks.by_ref() {
        for l in 0..LANES {
            let d = c[l] - mean;
            acc[l] += d * d;
        }
    }
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|x| (x - mean) * (x - mean))
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// A layer norm's learned scale (`weight`, γ) and shift (`bias`, β).
pub(crate) struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    /// Reads `weight` and `bias` of width `hidden` under `vb`, as Hugging
    /// Face's BERT stores them.
    pub fn load(hidden: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Self::new(
            vb.get(hidden, "weight")?.to_vec1()?,
            vb.get(hidden, "bias")?.to_vec1()?,
            eps,
        )
    }

    pub fn new(weight: Vec<f32>, bias: Vec<f32>, eps: f64) -> Result<Self> {
        if weight.is_empty() || weight.len() != bias.len() {
            bail!(
                "layer norm: weight of {} and bias of {}",
                weight.len(),
                bias.len()
            );
        }
        Ok(Self {
            weight,
            bias,
            eps: eps as f32,
        })
    }

    /// Normalises `xs` in place over its last dimension. `xs` must be a
    /// contiguous f32 tensor that nothing else shares (a fresh output).
    pub fn forward_in_place(&self, xs: &Tensor) -> Result<()> {
        xs.inplace_op1(self)
    }

    /// `xs ← LN(xs + residual)`, with the same demands on `xs`; `residual`
    /// has its shape.
    pub fn add_forward_in_place(&self, xs: &Tensor, residual: &Tensor) -> Result<()> {
        xs.inplace_op2(residual, self)
    }

    fn rows<'a>(&'a self, xs: &'a mut [f32], residual: Option<&'a [f32]>) -> Rows<'a> {
        Rows {
            xs,
            residual,
            norm: self,
        }
    }

    fn check(&self, layout: &Layout) -> Result<(usize, usize)> {
        let Some(offsets) = layout.contiguous_offsets() else {
            bail!("layer norm: input must be contiguous");
        };
        if layout.shape().dims().last() != Some(&self.weight.len()) {
            bail!(
                "layer norm: input {:?} does not end in {} features",
                layout.shape(),
                self.weight.len()
            );
        }
        Ok(offsets)
    }
}

struct Rows<'a> {
    xs: &'a mut [f32],
    residual: Option<&'a [f32]>,
    norm: &'a LayerNorm,
}

impl Kernel for Rows<'_> {
    #[inline(always)]
    fn run(self) {
        let width = self.norm.weight.len();
        let n = width as f32;
        for (r, row) in self.xs.chunks_exact_mut(width).enumerate() {
            if let Some(residual) = self.residual {
                for (x, y) in row.iter_mut().zip(&residual[r * width..][..width]) {
                    *x += y;
                }
            }
            // Two passes (mean, then squared deviations): exact where the
            // one-pass E[x²] − E[x]² loses digits to cancellation.
            let mean = sum(row) / n;
            let scale = 1.0 / (squared_deviation(row, mean) / n + self.norm.eps).sqrt();
            for ((x, g), b) in row.iter_mut().zip(&self.norm.weight).zip(&self.norm.bias) {
                *x = (*x - mean) * scale * g + b;
            }
        }
    }
}

impl InplaceOp1 for LayerNorm {
    fn name(&self) -> &'static str {
        "mnemos-layer-norm"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let (start, end) = self.check(layout)?;
        match storage {
            CpuStorage::F32(data) => vectorized(self.rows(&mut data[start..end], None)),
            other => bail!("layer norm: only f32 is supported, got {:?}", other.dtype()),
        }
        Ok(())
    }
}

impl InplaceOp2 for LayerNorm {
    fn name(&self) -> &'static str {
        "mnemos-residual-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (start, end) = self.check(l1)?;
        let Some((rstart, rend)) = l2.contiguous_offsets() else {
            bail!("layer norm: the residual must be contiguous");
        };
        if l1.shape() != l2.shape() {
            bail!(
                "layer norm: residual {:?} for input {:?}",
                l2.shape(),
                l1.shape()
            );
        }
        match (s1, s2) {
            (CpuStorage::F32(xs), CpuStorage::F32(residual)) => {
                vectorized(self.rows(&mut xs[start..end], Some(&residual[rstart..rend])))
            }
            (a, b) => bail!(
                "layer norm: only f32 is supported, got {:?} and {:?}",
                a.dtype(),
                b.dtype()
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use mnemos_models_core::rng::SplitMix64;

    fn params(width: usize) -> Result<(Tensor, Tensor)> {
        let dev = Device::Cpu;
        let mut rng = SplitMix64::new(11);
        Ok((
            (rng.normal_tensor(width, 0.2, &dev)? + 1.0)?,
            rng.normal_tensor(width, 0.1, &dev)?,
        ))
    }

    fn worst(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    /// Layer norm of `x + residual` `(rows, width)` in f64, row by row, with
    /// BERT's ε of 1e-12.
    fn reference(x: &Tensor, residual: &Tensor, g: &Tensor, b: &Tensor) -> Result<Tensor> {
        let x: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let residual: Vec<f32> = residual.flatten_all()?.to_vec1()?;
        let (g, b): (Vec<f32>, Vec<f32>) = (g.to_vec1()?, b.to_vec1()?);
        let width = g.len();
        let mut out = Vec::with_capacity(x.len());
        for (xs, rs) in x.chunks(width).zip(residual.chunks(width)) {
            let row: Vec<f64> = xs.iter().zip(rs).map(|(a, b)| f64::from(a + b)).collect();
            let mean = row.iter().sum::<f64>() / width as f64;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / width as f64;
            let scale = 1.0 / (var + 1e-12).sqrt();
            for ((v, g), b) in row.iter().zip(&g).zip(&b) {
                out.push(((v - mean) * scale * f64::from(*g) + f64::from(*b)) as f32);
            }
        }
        Tensor::from_vec(out, (x.len() / width, width), &Device::Cpu)
    }

    /// Against an f64 reference and candle-nn's layer norm, for widths
    /// with and without a remainder past the lanes, and rows far from zero
    /// mean, where candle's one-pass variance loses digits and ours must
    /// not.
    #[test]
    fn matches_a_reference_layer_norm_with_residual() -> Result<()> {
        let dev = Device::Cpu;
        for (rows, width, offset) in [(7, 384, 0.0), (3, 37, 0.0), (2, 5, 100.0), (1, 1536, 3.0)] {
            let (g, b) = params(width)?;
            let mut rng = SplitMix64::new(width as u64);
            let x = (rng.normal_tensor((rows, width), 2.0, &dev)? + offset)?;
            let residual = rng.normal_tensor((rows, width), 1.0, &dev)?;
            let norm = LayerNorm::new(g.to_vec1()?, b.to_vec1()?, 1e-12)?;
            let got = x.copy()?;
            norm.add_forward_in_place(&got, &residual)?;
            let diff = worst(&got, &reference(&x, &residual, &g, &b)?)?;
            assert!(diff < 1e-5, "{rows}x{width}+{offset}: {diff}");
            if offset == 0.0 {
                let candle = candle_nn::ops::layer_norm(&(&x + &residual)?, &g, &b, 1e-12)?;
                assert!(worst(&got, &candle)? < 2e-5);
            }

            let alone = x.copy()?;
            norm.forward_in_place(&alone)?;
            let want = reference(&x, &residual.zeros_like()?, &g, &b)?;
            assert!(worst(&alone, &want)? < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn a_constant_row_maps_to_the_bias() -> Result<()> {
        let norm = LayerNorm::new(vec![2.0; 4], vec![0.5, -1.0, 0.0, 3.0], 1e-12)?;
        let x = Tensor::new(&[[7f32, 7.0, 7.0, 7.0]], &Device::Cpu)?;
        norm.forward_in_place(&x)?;
        assert_eq!(x.to_vec2::<f32>()?, vec![vec![0.5, -1.0, 0.0, 3.0]]);
        Ok(())
    }

    #[test]
    fn wrong_shapes_are_errors() -> Result<()> {
        let dev = Device::Cpu;
        let norm = LayerNorm::new(vec![1.0; 4], vec![0.0; 4], 1e-5)?;
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &dev)?;
        assert!(norm.forward_in_place(&x).is_err());
        let x = Tensor::zeros((2, 4), candle_core::DType::F32, &dev)?;
        let r = Tensor::zeros((1, 4), candle_core::DType::F32, &dev)?;
        assert!(norm.add_forward_in_place(&x, &r).is_err());
        assert!(LayerNorm::new(vec![1.0; 3], vec![0.0; 4], 1e-5).is_err());
        Ok(())
    }
}
