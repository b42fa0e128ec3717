//! Next-token training: cross-entropy, AdamW with the memory values in
//! their own parameter group, and validation loss / perplexity.
//!
//! Lample et al. 2019 train the memory values with a higher learning rate
//! (Adam, 1e-3) than the rest of the network, because each value is read
//! by only a few tokens per batch and so receives few, sparse updates.
//! candle's AdamW has no parameter groups (PITFALLS), so the trainer runs
//! two optimisers over disjoint sets of variables.

use std::collections::HashMap;

use candle_core::{backprop::GradStore, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::error::{LmError, Result};
use crate::model::Lm;
use crate::rng::SplitMix64;

/// Optimiser settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// AdamW learning rate of everything but the memory values.
    pub learning_rate: f64,
    /// AdamW learning rate of the memory values (the paper's 1e-3).
    pub value_learning_rate: f64,
    /// Weight decay of everything but the memory values. candle decays
    /// every variable of an optimiser, norm gains included; at 0.1 × lr
    /// per step that moves a gain of 1 by under 3% in 1,000 steps.
    pub weight_decay: f64,
    /// Weight decay of the memory values: none, as a value read rarely
    /// would otherwise decay between its reads.
    pub value_weight_decay: f64,
    /// Rescale the gradient when its global L2 norm exceeds this.
    pub max_grad_norm: Option<f64>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            learning_rate: 3e-4,
            value_learning_rate: 1e-3,
            weight_decay: 0.1,
            value_weight_decay: 0.0,
            max_grad_norm: Some(1.0),
        }
    }
}

/// Whether `name` is a memory value table (its own parameter group).
pub fn is_memory_values(name: &str) -> bool {
    name.ends_with("values")
}

/// `B` windows of a token stream: `inputs` and the same tokens shifted by
/// one, `targets`, both `(B, S)` u32.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `(B, S)` token ids.
    pub inputs: Tensor,
    /// `(B, S)` next-token ids.
    pub targets: Tensor,
}

impl Batch {
    /// The windows `tokens[start..start + S + 1]` for each start.
    pub fn from_windows(tokens: &[u32], starts: &[usize], seq_len: usize) -> Result<Self> {
        let mut inputs = Vec::with_capacity(starts.len() * seq_len);
        let mut targets = Vec::with_capacity(starts.len() * seq_len);
        for &start in starts {
            let window = tokens.get(start..start + seq_len + 1).ok_or_else(|| {
                LmError::InvalidInput(format!(
                    "window {start}..{} is outside the {} tokens",
                    start + seq_len + 1,
                    tokens.len()
                ))
            })?;
            inputs.extend_from_slice(&window[..seq_len]);
            targets.extend_from_slice(&window[1..]);
        }
        let shape = (starts.len(), seq_len);
        Ok(Self {
            inputs: Tensor::from_vec(inputs, shape, &Device::Cpu)?,
            targets: Tensor::from_vec(targets, shape, &Device::Cpu)?,
        })
    }

    /// `batch` windows at seeded random positions of `tokens`.
    pub fn random(
        tokens: &[u32],
        batch: usize,
        seq_len: usize,
        rng: &mut SplitMix64,
    ) -> Result<Self> {
        if tokens.len() <= seq_len || batch == 0 || seq_len == 0 {
            return Err(LmError::InvalidInput(format!(
                "need a batch of windows of {seq_len} + 1 tokens from {} tokens",
                tokens.len()
            )));
        }
        let starts: Vec<usize> = (0..batch)
            .map(|_| rng.below(tokens.len() - seq_len))
            .collect();
        Self::from_windows(tokens, &starts, seq_len)
    }
}

/// Mean next-token cross-entropy of `logits` `(B, S, V)` against
/// `targets` `(B, S)`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, s, v) = logits.dims3()?;
    if targets.dims() != [b, s] {
        return Err(LmError::InvalidInput(format!(
            "targets must be ({b}, {s}), got {:?}",
            targets.dims()
        )));
    }
    // log_softmax + gather: plain ops, differentiable (PITFALLS).
    Ok(candle_nn::loss::cross_entropy(
        &logits.reshape((b * s, v))?,
        &targets.flatten_all()?,
    )?)
}

/// Loss and gradient size of one optimiser step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Mean cross-entropy before the step.
    pub loss: f32,
    /// Global L2 norm of the gradient before clipping.
    pub grad_norm: f32,
}

/// Validation result over a token stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalReport {
    /// Mean next-token cross-entropy (nats).
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Tokens scored.
    pub tokens: usize,
}

/// AdamW training of a copy of a model's weights.
pub struct Trainer {
    model: Lm,
    vars: Vec<(String, Var)>,
    main: AdamW,
    values: Option<AdamW>,
    options: TrainOptions,
}

impl Trainer {
    /// Starts training a copy of `model`'s weights; `model` is unchanged.
    pub fn new(model: &Lm, options: TrainOptions) -> Result<Self> {
        let mut tensors: HashMap<String, Tensor> = model.named_tensors().into_iter().collect();
        let mut vars = Vec::with_capacity(model.params().len());
        for (name, tensor) in model.params() {
            let var = Var::from_tensor(&tensor.detach())?;
            tensors.insert(name.clone(), var.as_tensor().clone());
            vars.push((name.clone(), var));
        }
        let model = model.rebuild(tensors)?;
        let group = |values: bool| -> Vec<Var> {
            vars.iter()
                .filter(|(name, _)| is_memory_values(name) == values)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let main = AdamW::new(
            group(false),
            ParamsAdamW {
                lr: options.learning_rate,
                weight_decay: options.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        let value_vars = group(true);
        let values = if value_vars.is_empty() {
            None
        } else {
            Some(AdamW::new(
                value_vars,
                ParamsAdamW {
                    lr: options.value_learning_rate,
                    weight_decay: options.value_weight_decay,
                    ..ParamsAdamW::default()
                },
            )?)
        };
        Ok(Self {
            model,
            vars,
            main,
            values,
            options,
        })
    }

    /// The training-mode loss of `batch` with its gradient graph (this
    /// also moves batch-norm running statistics).
    pub fn loss(&self, batch: &Batch) -> Result<Tensor> {
        cross_entropy(&self.model.forward_train(&batch.inputs)?, &batch.targets)
    }

    /// The gradient of every trainable tensor on `batch`, by name; `None`
    /// where none reached it (which a correct model never shows).
    pub fn gradients(&self, batch: &Batch) -> Result<Vec<(String, Option<Tensor>)>> {
        let grads = self.loss(batch)?.backward()?;
        Ok(self
            .vars
            .iter()
            .map(|(name, var)| (name.clone(), grads.get(var.as_tensor()).cloned()))
            .collect())
    }

    /// One AdamW step on `batch`.
    pub fn step(&mut self, batch: &Batch) -> Result<StepReport> {
        let _span = tracing::debug_span!("lm_step").entered();
        let loss = self.loss(batch)?;
        let mut grads = loss.backward()?;
        let grad_norm = self.clip(&mut grads)?;
        self.main.step(&grads)?;
        if let Some(values) = &mut self.values {
            values.step(&grads)?;
        }
        Ok(StepReport {
            loss: loss.to_scalar::<f32>()?,
            grad_norm,
        })
    }

    /// The global gradient norm; rescales the gradients above the limit.
    fn clip(&self, grads: &mut GradStore) -> Result<f32> {
        let mut sum = 0f64;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                sum += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let norm = sum.sqrt();
        if let Some(max) = self.options.max_grad_norm {
            if norm > max && norm.is_finite() {
                let scale = max / norm;
                for (_, var) in &self.vars {
                    if let Some(g) = grads.remove(var.as_tensor()) {
                        grads.insert(var.as_tensor(), (g * scale)?);
                    }
                }
            }
        }
        Ok(norm as f32)
    }

    /// Changes both learning rates, e.g. for warm-up or decay.
    pub fn set_learning_rates(&mut self, learning_rate: f64, value_learning_rate: f64) {
        self.main.set_learning_rate(learning_rate);
        if let Some(values) = &mut self.values {
            values.set_learning_rate(value_learning_rate);
        }
    }

    /// The model being trained; its weights are the variables, so use it
    /// for evaluation between steps, not as a snapshot.
    pub fn current(&self) -> &Lm {
        &self.model
    }

    /// A snapshot of the current weights, detached from training.
    pub fn model(&self) -> Result<Lm> {
        let tensors = self
            .model
            .named_tensors()
            .into_iter()
            .map(|(name, t)| Ok((name, t.detach().copy()?)))
            .collect::<Result<HashMap<_, _>>>()?;
        self.model.rebuild(tensors)
    }
}

/// Loss and perplexity of `model` over `tokens`, cut into consecutive
/// windows of `seq_len` next-token predictions, `batch` windows at a time
/// (inference mode: batch-norm running statistics).
pub fn evaluate(model: &Lm, tokens: &[u32], seq_len: usize, batch: usize) -> Result<EvalReport> {
    let windows = tokens
        .len()
        .saturating_sub(1)
        .checked_div(seq_len)
        .unwrap_or(0);
    if windows == 0 || batch == 0 {
        return Err(LmError::InvalidInput(format!(
            "evaluation needs more than seq_len = {seq_len} tokens and batch > 0, got {} tokens",
            tokens.len()
        )));
    }
    let starts: Vec<usize> = (0..windows).map(|w| w * seq_len).collect();
    let mut total = 0f64;
    for chunk in starts.chunks(batch) {
        let b = Batch::from_windows(tokens, chunk, seq_len)?;
        let loss = cross_entropy(&model.forward(&b.inputs)?, &b.targets)?;
        total += loss.to_scalar::<f32>()? as f64 * (chunk.len() * seq_len) as f64;
    }
    let count = windows * seq_len;
    let loss = total / count as f64;
    Ok(EvalReport {
        loss,
        perplexity: loss.exp(),
        tokens: count,
    })
}
