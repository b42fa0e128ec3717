//! A small seeded random source for initialisation.
//!
//! candle's CPU `randn` draws from an unseeded thread-local generator, so two
//! runs of the same training command would start from different weights. A
//! fixed seed makes `mnemos train hypencoder` reproducible bit for bit.

use candle_core::{Device, Result, Shape, Tensor};

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and good enough to
/// draw initial weights; not for anything that needs unpredictability.
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0, 1): 53 random bits, offset by half
    /// a step so that `ln` below never sees 0.
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box–Muller; the second value is dropped for
    /// simplicity, initialisation is not a hot path).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// An f32 tensor of `shape` with entries drawn from N(0, std²).
    pub fn normal_tensor<S: Into<Shape>>(
        &mut self,
        shape: S,
        std: f64,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let data: Vec<f32> = (0..shape.elem_count())
            .map(|_| (self.normal() * std) as f32)
            .collect();
        Tensor::from_vec(data, shape, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_draws_repeat_and_have_the_asked_spread() -> Result<()> {
        let a = SplitMix64::new(7).normal_tensor(10_000, 2.0, &Device::Cpu)?;
        let b = SplitMix64::new(7).normal_tensor(10_000, 2.0, &Device::Cpu)?;
        assert_eq!(a.to_vec1::<f32>()?, b.to_vec1::<f32>()?);
        let mean = a.mean_all()?.to_scalar::<f32>()?;
        let std = a.sqr()?.mean_all()?.to_scalar::<f32>()?.sqrt();
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!((std - 2.0).abs() < 0.1, "std {std}");
        Ok(())
    }
}
