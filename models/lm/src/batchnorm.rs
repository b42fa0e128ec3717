//! Batch normalisation of the memory queries (Ioffe & Szegedy 2015), as in
//! Lample et al. 2019 §3.2: it keeps the queries spread over the sub-keys,
//! which the paper found raises key usage and lowers perplexity.

use std::sync::Mutex;

use candle_core::Tensor;

use crate::error::{LmError, Result};
use crate::ops::with_host_f32;
use crate::params::{Init, ParamSource};

/// PyTorch's defaults: the running statistics move 10% towards each
/// training batch's; `eps` guards the division.
const MOMENTUM: f64 = 0.1;
const EPS: f64 = 1e-5;

/// Per-channel batch norm with a learned affine map and running
/// statistics for inference.
#[derive(Debug)]
pub(crate) struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    /// Running mean and (unbiased) variance, `(C,)` each: updated by every
    /// training forward pass, read by inference. Behind a mutex because a
    /// training pass takes `&self` like every other forward pass.
    running: Mutex<(Tensor, Tensor)>,
}

impl Clone for BatchNorm {
    /// A clone owns a copy of the current running statistics, so further
    /// training of one does not move the other's.
    fn clone(&self) -> Self {
        Self {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            running: Mutex::new(self.running()),
        }
    }
}

impl BatchNorm {
    /// `{prefix}.weight` (ones), `{prefix}.bias` (zeros) and the buffers
    /// `{prefix}.running_mean` (zeros), `{prefix}.running_var` (ones).
    pub fn build(src: &mut ParamSource, prefix: &str, channels: usize) -> Result<Self> {
        let weight = src.param(&format!("{prefix}.weight"), channels, Init::Const(1.0))?;
        let bias = src.param(&format!("{prefix}.bias"), channels, Init::Const(0.0))?;
        let mean = src.buffer(
            &format!("{prefix}.running_mean"),
            channels,
            Init::Const(0.0),
        )?;
        let var = src.buffer(&format!("{prefix}.running_var"), channels, Init::Const(1.0))?;
        Ok(Self {
            weight,
            bias,
            running: Mutex::new((mean, var)),
        })
    }

    /// The running mean and variance.
    pub fn running(&self) -> (Tensor, Tensor) {
        // A poisoned lock only means a panic elsewhere mid-update; the
        // tensors themselves are always whole.
        let guard = self.running.lock().unwrap_or_else(|e| e.into_inner());
        guard.clone()
    }

    /// Normalises `(T, C)` with the statistics of these `T` rows and moves
    /// the running statistics towards them.
    pub fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        let rows = x.dim(0)?;
        if rows < 2 {
            return Err(LmError::InvalidInput(
                "query batch norm needs at least 2 tokens per training batch".into(),
            ));
        }
        let mean = x.mean_keepdim(0)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(0)?;
        let y = centered.broadcast_div(&(&var + EPS)?.sqrt()?)?;
        {
            let mut guard = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let (old_mean, old_var) = &*guard;
            let unbiased = (var.detach().squeeze(0)? * (rows as f64 / (rows - 1) as f64))?;
            let new_mean =
                ((old_mean * (1.0 - MOMENTUM))? + (mean.detach().squeeze(0)? * MOMENTUM)?)?;
            let new_var = ((old_var * (1.0 - MOMENTUM))? + (unbiased * MOMENTUM)?)?;
            *guard = (new_mean, new_var);
        }
        Ok(y.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?)
    }

    /// Normalises `(T, C)` with the running statistics.
    ///
    /// Computed on the host: the per-channel scale and shift are a few
    /// hundred floats, and seven small tensor ops per call cost more than
    /// the arithmetic (this runs once per token in generation).
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        let (scale, shift) = self.eval_affine()?;
        let channels = scale.len();
        if x.dims().last() != Some(&channels) {
            return Err(LmError::InvalidInput(format!(
                "batch norm over {channels} channels got {:?}",
                x.dims()
            )));
        }
        let y = with_host_f32(x, |data| {
            let mut y = data.to_vec();
            for row in y.chunks_exact_mut(channels) {
                for ((v, &a), &b) in row.iter_mut().zip(&scale).zip(&shift) {
                    *v = *v * a + b;
                }
            }
            y
        })?;
        Ok(Tensor::from_vec(y, x.shape(), x.device())?)
    }

    /// Inference as a per-channel affine map `y = scale ⊙ x + shift`,
    /// from the running statistics.
    pub fn eval_affine(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let (mean, var) = self.running();
        let (mean, var) = (mean.to_vec1::<f32>()?, var.to_vec1::<f32>()?);
        let (weight, bias) = (self.weight.to_vec1::<f32>()?, self.bias.to_vec1::<f32>()?);
        let scale: Vec<f32> = var
            .iter()
            .zip(&weight)
            .map(|(&v, &w)| w / (v + EPS as f32).sqrt())
            .collect();
        let shift = (0..mean.len())
            .map(|c| bias[c] - mean[c] * scale[c])
            .collect();
        Ok((scale, shift))
    }
}
