//! Extra SwiGLU hidden units appended to a model's feed-forward networks:
//! the form a hierarchical memory block takes at inference (SPECS §5, "FFN
//! memories"). For block `l` with base network `W2·(silu(W1·x) ⊙ W3·x)`,
//! `r` appended units add `D·(silu(G·x) ⊙ U·x)` with `G`, `U` of shape
//! `[r, dim]` and `D` of shape `[dim, r]` — the same as appending rows to
//! `W1` and `W3` and columns to `W2`, without touching the quantized base
//! weights. Units with `U = 0` change nothing, which is how a fresh memory
//! block starts.

use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::error::{LlamaError, Result};

/// The appended units of one block.
#[derive(Debug, Clone)]
pub struct UnitWeights {
    /// `[r, dim]`: the units' gate projections (rows appended to `W1`).
    pub gate: Tensor,
    /// `[r, dim]`: the units' up projections (rows appended to `W3`).
    pub up: Tensor,
    /// `[dim, r]`: the units' output projections (columns appended to `W2`).
    pub down: Tensor,
}

impl UnitWeights {
    /// Number of appended units.
    pub fn units(&self) -> usize {
        self.gate.dims().first().copied().unwrap_or(0)
    }

    /// Parameters held.
    pub fn parameters(&self) -> usize {
        self.gate.elem_count() + self.up.elem_count() + self.down.elem_count()
    }

    /// Checks the three shapes against each other and the model width.
    pub fn check(&self, dim: usize) -> Result<()> {
        let r = self.units();
        let ok = self.gate.dims() == [r, dim]
            && self.up.dims() == [r, dim]
            && self.down.dims() == [dim, r];
        if !ok {
            return Err(LlamaError::InvalidInput(format!(
                "memory units must be gate [r, {dim}], up [r, {dim}], down [{dim}, r]; got {:?}, {:?}, {:?}",
                self.gate.dims(),
                self.up.dims(),
                self.down.dims()
            )));
        }
        Ok(())
    }

    /// The units' contribution for normalised inputs `x` of shape
    /// `[.., dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = x.broadcast_matmul(&self.gate.t()?)?;
        let up = x.broadcast_matmul(&self.up.t()?)?;
        let hidden = (candle_nn::ops::silu(&gate)? * up)?;
        Ok(hidden.broadcast_matmul(&self.down.t()?)?)
    }

    /// Several blocks' units side by side: the units of a memory path.
    pub fn concat(parts: &[&UnitWeights]) -> Result<UnitWeights> {
        let cat = |f: fn(&UnitWeights) -> &Tensor, dim| -> Result<Tensor> {
            let ts: Vec<&Tensor> = parts.iter().map(|p| f(p)).collect();
            Ok(Tensor::cat(&ts, dim)?)
        };
        if parts.is_empty() {
            return Err(LlamaError::InvalidInput("no units to concatenate".into()));
        }
        Ok(UnitWeights {
            gate: cat(|p| &p.gate, 0)?,
            up: cat(|p| &p.up, 0)?,
            down: cat(|p| &p.down, 1)?,
        })
    }
}

/// Appended units per block index.
#[derive(Debug, Clone, Default)]
pub struct FfnUnits {
    /// Block index → its units. Blocks not named run unchanged.
    pub layers: BTreeMap<usize, UnitWeights>,
}

impl FfnUnits {
    /// Parameters held over all blocks.
    pub fn parameters(&self) -> usize {
        self.layers.values().map(UnitWeights::parameters).sum()
    }

    /// Whether no block gets any unit.
    pub fn is_empty(&self) -> bool {
        self.layers.values().all(|u| u.units() == 0)
    }

    /// Checks every block index and shape against a model.
    pub fn check(&self, layers: usize, dim: usize) -> Result<()> {
        for (&l, u) in &self.layers {
            if l >= layers {
                return Err(LlamaError::InvalidInput(format!(
                    "memory units for block {l}, but the model has {layers}"
                )));
            }
            u.check(dim)?;
        }
        Ok(())
    }

    /// The units of several memory blocks merged per model block: a path's
    /// blocks are simply more hidden units side by side.
    pub fn merge(parts: &[&FfnUnits]) -> Result<FfnUnits> {
        let mut by_layer: BTreeMap<usize, Vec<&UnitWeights>> = BTreeMap::new();
        for p in parts {
            for (&l, u) in &p.layers {
                by_layer.entry(l).or_default().push(u);
            }
        }
        let mut layers = BTreeMap::new();
        for (l, us) in by_layer {
            layers.insert(l, UnitWeights::concat(&us)?);
        }
        Ok(FfnUnits { layers })
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn units(r: usize, dim: usize, seed: f64) -> UnitWeights {
        let dev = &Device::Cpu;
        let t = |a, b, s: f64| {
            Tensor::arange(0f32, (a * b) as f32, dev)
                .and_then(|t| t.reshape((a, b)))
                .and_then(|t| (t * s)?.sin())
                .expect("tensor")
        };
        UnitWeights {
            gate: t(r, dim, seed),
            up: t(r, dim, seed + 0.3),
            down: t(dim, r, seed + 0.7),
        }
    }

    #[test]
    fn concatenated_units_add_up_and_zero_up_is_inert() -> Result<()> {
        let dim = 6;
        let (a, b) = (units(3, dim, 0.1), units(2, dim, 0.5));
        let x = Tensor::arange(0f32, 12.0, &Device::Cpu)?.reshape((1, 2, dim))?;
        let both = UnitWeights::concat(&[&a, &b])?;
        assert_eq!(both.units(), 5);
        let sum = (a.forward(&x)? + b.forward(&x)?)?;
        let diff = (both.forward(&x)? - sum)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{diff}");
        let inert = UnitWeights {
            up: a.up.zeros_like()?,
            ..a.clone()
        };
        let out = inert.forward(&x)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(out, 0.0);
        Ok(())
    }

    #[test]
    fn shapes_and_block_indices_are_checked() {
        let mut u = FfnUnits::default();
        u.layers.insert(1, units(2, 6, 0.1));
        assert!(u.check(2, 6).is_ok());
        assert!(u.check(1, 6).is_err());
        assert!(u.check(2, 5).is_err());
        let merged = FfnUnits::merge(&[&u, &u]).expect("merge");
        assert_eq!(merged.layers[&1].units(), 4);
        assert_eq!(merged.parameters(), 2 * u.parameters());
    }
}
