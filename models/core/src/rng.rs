//! A small seeded random source for initialisation, sampling and training
//! data order, shared by the model crates.
//!
//! candle's CPU `randn` draws from an unseeded thread-local generator, so
//! two runs would start from different weights, and generation needs a seed
//! the caller controls. SplitMix64 makes both reproducible bit for bit.

use candle_core::{Device, Result, Shape, Tensor};

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and good enough to
/// draw initial weights, sample tokens and pick training windows; not for
/// anything that needs unpredictability.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose draws depend only on `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0, 1): 53 random bits, offset by half
    /// a step so that `ln` never sees 0.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Uniform in `0..bound` (`bound > 0`); the modulo bias is below
    /// 2⁻³² for every bound this crate uses.
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound.max(1) as u64) as usize
    }

    /// A standard normal draw (Box–Muller; the second value is dropped for
    /// simplicity, initialisation is not a hot path).
    pub fn normal(&mut self) -> f64 {
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

    /// `len` f32 values uniform in (−bound, bound).
    pub fn uniform_vec(&mut self, len: usize, bound: f64) -> Vec<f32> {
        (0..len)
            .map(|_| ((2.0 * self.uniform() - 1.0) * bound) as f32)
            .collect()
    }

    /// An f32 tensor of `shape` with entries uniform in (−bound, bound).
    pub fn uniform_tensor<S: Into<Shape>>(
        &mut self,
        shape: S,
        bound: f64,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let data = self.uniform_vec(shape.elem_count(), bound);
        Tensor::from_vec(data, shape, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_draws_repeat_and_have_the_asked_spread() -> Result<()> {
        let shape = Shape::from(10_000usize);
        let a = SplitMix64::new(7).normal_tensor(shape.clone(), 2.0, &Device::Cpu)?;
        let b = SplitMix64::new(7).normal_tensor(shape.clone(), 2.0, &Device::Cpu)?;
        assert_eq!(a.to_vec1::<f32>()?, b.to_vec1::<f32>()?);
        let std = a.sqr()?.mean_all()?.to_scalar::<f32>()?.sqrt();
        assert!((std - 2.0).abs() < 0.1, "std {std}");
        let u = SplitMix64::new(1).uniform_tensor(shape.clone(), 0.5, &Device::Cpu)?;
        let max = u.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(max < 0.5 && max > 0.49, "max {max}");
        Ok(())
    }
}
