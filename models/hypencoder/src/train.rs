//! Training the hyperheads over a frozen encoder (SPECS §2, "Training").
//!
//! Inputs are precomputed: query token states and document vectors from the
//! encoder, and optionally a teacher's score for each (query, document)
//! pair. The loss is the paper's: MarginMSE against the teacher over
//! (positive, negative) pairs plus in-batch cross-entropy, where each
//! query's q-net must rank its own positive above the other queries'
//! positives; weights 1 and 1 by default. Only the hyperheads train: the
//! encoder's outputs are data here.

use candle_core::{DType, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};

use crate::error::{HypencoderError, Result};
use crate::hyperhead::QueryStates;
use crate::model::Hypencoder;

/// One training batch of `B` queries with `1 + n` documents each.
#[derive(Debug, Clone)]
pub struct TrainBatch {
    /// The `B` queries' token states.
    pub queries: QueryStates,
    /// `(B, 1 + n, h)` document vectors: each query's positive first, then
    /// its `n` (hard) negatives.
    pub documents: Tensor,
    /// `(B, 1 + n)` teacher scores of the same pairs; `None` trains with
    /// the in-batch cross-entropy alone.
    pub teacher: Option<Tensor>,
}

/// Optimiser and loss settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// AdamW learning rate. The paper uses 2e-5 to fine-tune all of BERT;
    /// the hyperheads alone, from scratch, take a larger step.
    pub learning_rate: f64,
    /// AdamW weight decay; the paper uses none.
    pub weight_decay: f64,
    /// Weight of the MarginMSE term (1 in the paper).
    pub margin_mse_weight: f64,
    /// Weight of the in-batch cross-entropy term (1 in the paper).
    pub in_batch_weight: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            learning_rate: 1e-4,
            weight_decay: 0.0,
            margin_mse_weight: 1.0,
            in_batch_weight: 1.0,
        }
    }
}

/// The loss of one batch and its parts, as scalar tensors that carry the
/// gradient graph.
#[derive(Debug, Clone)]
pub struct Losses {
    /// The weighted sum that is minimised.
    pub total: Tensor,
    /// MarginMSE, when the batch has a teacher and negatives.
    pub margin_mse: Option<Tensor>,
    /// In-batch cross-entropy.
    pub in_batch: Tensor,
}

/// The loss values of one optimiser step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The weighted total.
    pub total: f32,
    /// MarginMSE, when computed.
    pub margin_mse: Option<f32>,
    /// In-batch cross-entropy.
    pub in_batch: f32,
}

/// Mean squared error between student and teacher margins,
/// `(s_pos − s_neg) − (t_pos − t_neg)`, over every (positive, negative)
/// pair: `student` and `teacher` are `(B, 1 + n)` with the positive first.
/// Matching margins rather than scores leaves each model its own scale
/// (Hofstätter et al. 2020, "Improving Efficient Neural Ranking Models with
/// Cross-Architecture Knowledge Distillation").
pub fn margin_mse(student: &Tensor, teacher: &Tensor) -> Result<Tensor> {
    let (b, items) = student.dims2()?;
    if teacher.dims() != [b, items] || items < 2 {
        return Err(HypencoderError::InvalidInput(format!(
            "margin MSE needs (B, 1 + n) student and teacher scores with n >= 1, got {:?} and {:?}",
            student.dims(),
            teacher.dims()
        )));
    }
    let margins = |s: &Tensor| -> candle_core::Result<Tensor> {
        s.narrow(1, 0, 1)?
            .broadcast_sub(&s.narrow(1, 1, items - 1)?)
    };
    let diff = (margins(student)? - margins(&teacher.to_dtype(DType::F32)?)?)?;
    Ok(diff.sqr()?.mean_all()?)
}

/// Cross-entropy of `(B, B)` scores whose row `i` is query `i`'s q-net over
/// every query's positive: the target of row `i` is column `i`.
pub fn in_batch_cross_entropy(scores: &Tensor) -> Result<Tensor> {
    let (b, c) = scores.dims2()?;
    if b != c {
        return Err(HypencoderError::InvalidInput(format!(
            "in-batch scores must be square, got {:?}",
            scores.dims()
        )));
    }
    let targets = Tensor::arange(0u32, b as u32, scores.device())?;
    Ok(candle_nn::loss::cross_entropy(scores, &targets)?)
}

/// The loss of `batch` under `model`.
pub fn losses(model: &Hypencoder, batch: &TrainBatch, options: &TrainOptions) -> Result<Losses> {
    let (b, items, h) = batch.documents.dims3()?;
    if b != batch.queries.len() || h != model.config().hidden_size || items == 0 {
        return Err(HypencoderError::InvalidInput(format!(
            "documents must be ({}, 1 + n, {}), got {:?}",
            batch.queries.len(),
            model.config().hidden_size,
            batch.documents.dims()
        )));
    }
    let qnets = model.generate(&batch.queries)?;
    let positives = batch.documents.narrow(1, 0, 1)?.squeeze(1)?;
    let in_batch = in_batch_cross_entropy(&qnets.forward(&positives)?)?;
    let mut total = (&in_batch * options.in_batch_weight)?;
    let margin = match &batch.teacher {
        Some(teacher) if items > 1 => {
            let student = qnets.forward(&batch.documents)?;
            let loss = margin_mse(&student, teacher)?;
            total = (total + (&loss * options.margin_mse_weight)?)?;
            Some(loss)
        }
        _ => None,
    };
    Ok(Losses {
        total,
        margin_mse: margin,
        in_batch,
    })
}

/// AdamW over the hyperhead weights of a model.
pub struct Trainer {
    /// The model whose tensors are the variables below.
    model: Hypencoder,
    variables: VarMap,
    optimizer: AdamW,
    options: TrainOptions,
}

impl Trainer {
    /// Starts training a copy of `model`'s weights; `model` itself is not
    /// changed.
    pub fn new(model: &Hypencoder, options: TrainOptions) -> Result<Self> {
        let variables = VarMap::new();
        let model = {
            let mut data = variables
                .data()
                .lock()
                .map_err(|_| HypencoderError::InvalidInput("variable map poisoned".into()))?;
            model.map_tensors(|name, tensor| {
                let var = Var::from_tensor(&tensor.detach())?;
                let t = var.as_tensor().clone();
                data.insert(name.to_string(), var);
                Ok(t)
            })?
        };
        let optimizer = AdamW::new(
            variables.all_vars(),
            ParamsAdamW {
                lr: options.learning_rate,
                weight_decay: options.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        Ok(Self {
            model,
            variables,
            optimizer,
            options,
        })
    }

    /// The loss of `batch` under the current weights, with its gradient
    /// graph.
    pub fn losses(&self, batch: &TrainBatch) -> Result<Losses> {
        losses(&self.model, batch, &self.options)
    }

    /// One AdamW step on `batch`; returns the loss before the step.
    pub fn step(&mut self, batch: &TrainBatch) -> Result<StepReport> {
        let _span =
            tracing::debug_span!("hypencoder_step", queries = batch.queries.len()).entered();
        let losses = self.losses(batch)?;
        self.optimizer.backward_step(&losses.total)?;
        let scalar = |t: &Tensor| t.to_scalar::<f32>();
        Ok(StepReport {
            total: scalar(&losses.total)?,
            margin_mse: losses.margin_mse.as_ref().map(scalar).transpose()?,
            in_batch: scalar(&losses.in_batch)?,
        })
    }

    /// Changes the learning rate, e.g. for warm-up or decay.
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.optimizer.set_learning_rate(lr);
    }

    /// The trained variables by name (the names of `model.safetensors`).
    pub fn variables(&self) -> &VarMap {
        &self.variables
    }

    /// The current weights for inference or saving. The tensors share
    /// storage with the variables, so later steps show through; save or
    /// copy before training on if a fixed snapshot is needed.
    pub fn model(&self) -> Hypencoder {
        self.model.detached()
    }
}
