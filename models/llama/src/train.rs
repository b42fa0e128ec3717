//! Training appended feed-forward units with the anchor frozen (SPECS §5,
//! "post-hoc" memories). The residual stream entering the first block that
//! has units is fixed, so it is computed once per text
//! ([`TrainText::prepare`]); each step runs only the blocks from there on,
//! in ops that carry gradients, and updates only the units' variables with
//! AdamW.

use std::time::Instant;

use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use mnemos_models_core::rng::SplitMix64;

use crate::error::{LlamaError, Result};
use crate::model::Llama;
use crate::units::{FfnUnits, UnitWeights};

/// A training text, ready for steps: its residual stream at the first
/// trained block and its next-token targets.
#[derive(Debug, Clone)]
pub struct TrainText {
    hidden: Tensor,
    targets: Tensor,
    tokens: usize,
}

impl TrainText {
    /// Runs `tokens` up to block `first` once. Needs at least 2 tokens.
    pub fn prepare(model: &Llama, tokens: &[u32], first: usize) -> Result<Self> {
        if tokens.len() < 2 {
            return Err(LlamaError::InvalidInput(format!(
                "a training text needs at least 2 tokens, got {}",
                tokens.len()
            )));
        }
        let inputs = &tokens[..tokens.len() - 1];
        Ok(Self {
            hidden: model.hidden_before(inputs, first)?,
            targets: Tensor::new(&tokens[1..], &candle_core::Device::Cpu)?,
            tokens: inputs.len(),
        })
    }

    /// Predictions the text contributes per step.
    pub fn tokens(&self) -> usize {
        self.tokens
    }
}

/// How to train one block's units.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitTraining {
    /// Passes over the block's texts.
    pub epochs: usize,
    /// Texts whose losses are summed into one update.
    pub batch: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Order of texts within an epoch.
    pub seed: u64,
}

impl Default for UnitTraining {
    fn default() -> Self {
        Self {
            epochs: 4,
            batch: 4,
            learning_rate: 2e-3,
            weight_decay: 0.0,
            seed: 0,
        }
    }
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitTrainingReport {
    /// Optimiser updates.
    pub steps: usize,
    /// Mean loss per token over the first epoch's texts, before their
    /// update (nats).
    pub first_epoch_loss: f64,
    /// Mean loss per token over the last epoch.
    pub last_epoch_loss: f64,
    /// Wall-clock seconds.
    pub secs: f64,
    /// Tokens processed per second (forward and backward).
    pub tokens_per_sec: f64,
}

/// Trains `init` (its tensors become variables) on `texts`, with `frozen`
/// units (the ancestors' blocks on a memory path) appended alongside but
/// not updated. `first` must be the lowest block with units. `progress` is
/// called after every update with (step, mean loss of the update).
pub fn train_units(
    model: &Llama,
    texts: &[&TrainText],
    first: usize,
    frozen: Option<&FfnUnits>,
    init: &FfnUnits,
    config: &UnitTraining,
    mut progress: impl FnMut(usize, f64),
) -> Result<(FfnUnits, UnitTrainingReport)> {
    if texts.is_empty() {
        return Err(LlamaError::InvalidInput("no texts to train on".into()));
    }
    if config.epochs == 0 || config.batch == 0 {
        return Err(LlamaError::InvalidInput(
            "epochs and batch must be at least 1".into(),
        ));
    }
    let started = Instant::now();
    let mut vars = Vec::new();
    let mut layers = std::collections::BTreeMap::new();
    for (&l, u) in &init.layers {
        let (gate, up, down) = (
            Var::from_tensor(&u.gate)?,
            Var::from_tensor(&u.up)?,
            Var::from_tensor(&u.down)?,
        );
        layers.insert(l, [gate.clone(), up.clone(), down.clone()]);
        vars.extend([gate, up, down]);
    }
    let current = || -> FfnUnits {
        FfnUnits {
            layers: layers
                .iter()
                .map(|(&l, [g, u, d])| {
                    let w = UnitWeights {
                        gate: g.as_tensor().clone(),
                        up: u.as_tensor().clone(),
                        down: d.as_tensor().clone(),
                    };
                    (l, w)
                })
                .collect(),
        }
    };
    let mut opt = AdamW::new(
        vars.clone(),
        ParamsAdamW {
            lr: config.learning_rate,
            weight_decay: config.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let mut rng = SplitMix64::new(config.seed);
    let mut order: Vec<usize> = (0..texts.len()).collect();
    let (mut steps, mut tokens_seen) = (0usize, 0usize);
    let (mut first_epoch, mut last_epoch) = (0f64, 0f64);
    for epoch in 0..config.epochs {
        shuffle(&mut order, &mut rng);
        let (mut epoch_loss, mut epoch_tokens) = (0f64, 0usize);
        for chunk in order.chunks(config.batch) {
            let trainable = current();
            let units = match frozen {
                Some(f) => FfnUnits::merge(&[f, &trainable])?,
                None => trainable,
            };
            let mut total: Option<Tensor> = None;
            let mut chunk_tokens = 0usize;
            for &i in chunk {
                let text = texts[i];
                let logits = model.train_logits(&text.hidden, first, &units)?;
                let loss = candle_nn::loss::cross_entropy(&logits, &text.targets)?;
                let summed = (loss * text.tokens as f64)?;
                chunk_tokens += text.tokens;
                total = Some(match total {
                    Some(t) => (t + summed)?,
                    None => summed,
                });
            }
            let Some(total) = total else { continue };
            let mean = (total / chunk_tokens as f64)?;
            let value = f64::from(mean.to_scalar::<f32>()?);
            opt.backward_step(&mean)?;
            steps += 1;
            tokens_seen += chunk_tokens;
            epoch_loss += value * chunk_tokens as f64;
            epoch_tokens += chunk_tokens;
            progress(steps, value);
        }
        let mean = epoch_loss / epoch_tokens.max(1) as f64;
        if epoch == 0 {
            first_epoch = mean;
        }
        last_epoch = mean;
    }
    let secs = started.elapsed().as_secs_f64();
    let trained = current();
    // Detach from the optimiser's graph: plain tensors, cheap to keep.
    let trained = FfnUnits {
        layers: trained
            .layers
            .into_iter()
            .map(|(l, u)| {
                let w = UnitWeights {
                    gate: u.gate.detach(),
                    up: u.up.detach(),
                    down: u.down.detach(),
                };
                (l, w)
            })
            .collect(),
    };
    Ok((
        trained,
        UnitTrainingReport {
            steps,
            first_epoch_loss: first_epoch,
            last_epoch_loss: last_epoch,
            secs,
            tokens_per_sec: tokens_seen as f64 / secs.max(1e-9),
        },
    ))
}

/// Fisher–Yates with the shared seeded generator.
fn shuffle(order: &mut [usize], rng: &mut SplitMix64) {
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
}
