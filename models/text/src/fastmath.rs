//! Branch-free f32 math that the compiler vectorises, for the element-wise
//! hot loops of the encoder (GELU, softmax, layer norm): libm's scalar `expf`/`erff`
//! cost ~10–18% of one-thread inference time each where candle calls them.
//!
//! The loops that use it run under [`mnemos_models_core::simd::vectorized`],
//! compiled for AVX-512 or AVX2+FMA as the CPU allows.

/// Lanes of [`sum`]: floating-point reductions are not reassociated by
/// the compiler, so a plain loop stays scalar; independent lane
/// accumulators let it use full vector registers.
pub(crate) const LANES: usize = 16;

/// The sum of `xs`, in [`LANES`] partial sums.
#[inline(always)]
pub(crate) fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in chunks.by_ref() {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `exp(-z)` for `z ≥ 0`; `z` above 87 (and NaN) gives `e^-87`, the
/// smallest normal result, so callers that need exact zeros mask instead.
#[inline(always)]
pub(crate) fn exp_neg(z: f32) -> f32 {
    // ln 2 split in a part exact in f32 and a remainder (Cody & Waite), so
    // that `n·ln2` is subtracted without rounding error.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5·2²³ rounds to an integer, kept in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let y = (-z).max(-87.0);
    let shifted = y * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let n_bits = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = y - n * LN2_HI - n * LN2_LO;
    let poly = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    // 2ⁿ built from its exponent bits; y ≥ -87 keeps n ≥ -126 (normal).
    let scale = f32::from_bits(((n_bits + 127) as u32) << 23);
    poly * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_libm_exp() {
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let z = i as f32 * 1e-4; // [0, 87]
            let exact = (-f64::from(z)).exp();
            worst = worst.max((f64::from(exp_neg(z)) - exact).abs() / exact);
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
    }

    #[test]
    fn extremes() {
        assert_eq!(exp_neg(0.0), 1.0);
        assert!(exp_neg(1e9) >= 0.0 && exp_neg(1e9) < 1e-37);
    }
}
