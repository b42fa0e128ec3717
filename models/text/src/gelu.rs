//! GELU in its exact form, `x·Φ(x) = x/2·(1 + erf(x/√2))` (Hendrycks &
//! Gimpel 2016, arXiv:1606.08415), which BERT's `hidden_act: "gelu"` means,
//! computed fast.
//!
//! candle's `gelu_erf` calls a scalar libm `erff` per element; profiling
//! all-MiniLM-L6-v2 on one thread put ~18% of all inference time there.
//! Here erf is a short branch-free formula over f32 arithmetic that the
//! compiler vectorises: Abramowitz & Stegun, *Handbook of Mathematical
//! Functions* (1964), eq. 7.1.26, absolute error ≤ 1.5·10⁻⁷, with
//! `exp(-x²)` by range reduction to `2ⁿ·e^r`, |r| ≤ ln2/2, and a degree-7
//! Taylor polynomial (relative error ~5·10⁻⁹, [`crate::fastmath`]).

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, InplaceOp1, Layout, Result, Tensor};

use mnemos_models_core::simd::{vectorized, Kernel};

use crate::fastmath::exp_neg;

// A&S 7.1.26 coefficients.
const P: f32 = 0.327_591_1;
const A1: f32 = 0.254_829_6;
const A2: f32 = -0.284_496_74;
const A3: f32 = 1.421_413_7;
const A4: f32 = -1.453_152_1;
const A5: f32 = 1.061_405_4;

#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    (1.0 - poly * exp_neg(a * a)).copysign(x)
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

struct GeluSlice<'a>(&'a mut [f32]);

impl Kernel for GeluSlice<'_> {
    #[inline(always)]
    fn run(self) {
        for x in self.0 {
            *x = gelu(*x);
        }
    }
}

struct GeluInPlace;

impl InplaceOp1 for GeluInPlace {
    fn name(&self) -> &'static str {
        "mnemos-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("gelu: input must be contiguous");
        };
        match storage {
            CpuStorage::F32(data) => vectorized(GeluSlice(&mut data[start..end])),
            other => bail!("gelu: only f32 is supported, got {:?}", other.dtype()),
        }
        Ok(())
    }
}

/// Applies exact-form GELU to `xs` in place: `xs` must be a contiguous f32
/// CPU tensor whose storage nothing else shares, e.g. a layer's fresh
/// output.
pub(crate) fn gelu_in_place(xs: &Tensor) -> Result<()> {
    xs.inplace_op1(&GeluInPlace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::cpu::erf::erf_f64;
    use candle_core::Device;

    fn reference(x: f32) -> f64 {
        let x = f64::from(x);
        0.5 * x * (1.0 + erf_f64(x / std::f64::consts::SQRT_2))
    }

    #[test]
    fn matches_exact_gelu() {
        let mut worst = 0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4; // [-20, 20]
            let err = (f64::from(gelu(x)) - reference(x)).abs() / f64::from(x.abs()).max(1.0);
            worst = worst.max(err);
        }
        assert!(worst < 3e-7, "worst scaled error {worst}");
    }

    #[test]
    fn extremes_are_finite() {
        assert_eq!(gelu(0.0), 0.0);
        assert_eq!(gelu(-1e4), 0.0);
        assert_eq!(gelu(1e4), 1e4);
        assert!(gelu(f32::NAN).is_nan());
        assert!((exp_neg(0.0) - 1.0).abs() < 1e-7);
        assert!(exp_neg(1e9) >= 0.0 && exp_neg(1e9) < 1e-37);
    }

    #[test]
    fn tensor_in_place() -> Result<()> {
        let xs = Tensor::new(&[[-1f32, 0.0, 1.0], [2.0, -3.0, 0.5]], &Device::Cpu)?;
        let expected = xs.gelu_erf()?.to_vec2::<f32>()?;
        gelu_in_place(&xs)?;
        for (a, b) in xs
            .to_vec2::<f32>()?
            .iter()
            .flatten()
            .zip(expected.iter().flatten())
        {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        Ok(())
    }
}
