//! The SwiGLU feed-forward network (Shazeer, "GLU Variants Improve
//! Transformer", 2020): `W_down(SiLU(W_gate x) ⊙ W_up x)`, as in Llama.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::ops::linear;
use crate::params::{Init, ParamSource};

/// A SwiGLU feed-forward network of hidden width `hidden`.
#[derive(Debug, Clone)]
pub struct SwiGlu {
    /// `(hidden, dim)`.
    gate: Tensor,
    /// `(hidden, dim)`.
    up: Tensor,
    /// `(dim, hidden)`.
    down: Tensor,
}

impl SwiGlu {
    /// A standalone network with random weights (e.g. for benchmarks); the
    /// same `seed` gives the same weights.
    pub fn new(dim: usize, hidden: usize, seed: u64) -> Result<Self> {
        let mut src = ParamSource::random(seed, &Device::Cpu);
        let std = 0.02;
        Self::build(&mut src, "ffn", dim, hidden, std, std)
    }

    /// Weights `{prefix}.gate`, `{prefix}.up` (N(0, std²)) and
    /// `{prefix}.down` (N(0, out_std²)).
    pub(crate) fn build(
        src: &mut ParamSource,
        prefix: &str,
        dim: usize,
        hidden: usize,
        std: f64,
        out_std: f64,
    ) -> Result<Self> {
        Ok(Self {
            gate: src.param(&format!("{prefix}.gate"), (hidden, dim), Init::Normal(std))?,
            up: src.param(&format!("{prefix}.up"), (hidden, dim), Init::Normal(std))?,
            down: src.param(
                &format!("{prefix}.down"),
                (dim, hidden),
                Init::Normal(out_std),
            )?,
        })
    }

    /// Trainable scalars: `3 · dim · hidden`.
    pub fn num_parameters(&self) -> usize {
        self.gate.elem_count() + self.up.elem_count() + self.down.elem_count()
    }

    /// `x` of shape `(…, dim)` to the same shape.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let hidden = (linear(x, &self.gate)?.silu()? * linear(x, &self.up)?)?;
        linear(&hidden, &self.down)
    }
}
