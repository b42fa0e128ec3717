//! Q-nets: the small per-query networks that score document vectors
//! (SPECS §2).
//!
//! For each hidden layer `j`: `y = LayerNorm_without_affine(ReLU(x·W_j +
//! b_j))`, plus the residual `y += x` on all but the last hidden layer;
//! then `score = x·W_out` (no bias).
//!
//! [`QNets::forward`] is the differentiable form used in training; the fast
//! inference form, which never records a gradient graph, is in
//! [`crate::scoring`].

use candle_core::{Tensor, D};

use crate::error::{HypencoderError, Result};
use crate::hyperhead::{layer_norm, Generated};

/// The generated q-nets of a batch of queries.
///
/// Produced by [`crate::Hypencoder::generate`]. Tensors hold the gradient
/// graph back to the hyperheads when the model is being trained; scoring
/// with [`QNets::score`] detaches them, and [`QNets::detach`] drops the
/// graph explicitly.
#[derive(Debug, Clone)]
pub struct QNets {
    /// `L` tensors `(B, h, h)`, in `x·W` orientation (`in×out`).
    pub(crate) weights: Vec<Tensor>,
    /// `L` tensors `(B, h)`.
    pub(crate) biases: Vec<Tensor>,
    /// `(B, h)`: the output column `W_out`.
    pub(crate) output: Tensor,
    pub(crate) residual: bool,
    pub(crate) eps: f64,
}

impl QNets {
    pub(crate) fn new(generated: Generated, residual: bool, eps: f64) -> Self {
        Self {
            weights: generated.weights,
            biases: generated.biases,
            output: generated.output,
            residual,
            eps,
        }
    }

    /// Number of queries (q-nets) in the batch.
    pub fn len(&self) -> usize {
        self.output.dims()[0]
    }

    /// Whether the batch holds no q-net.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Width `h` of the document vectors these q-nets take.
    pub fn width(&self) -> usize {
        self.output.dims()[1]
    }

    /// Number of hidden layers `L`.
    pub fn num_hidden_layers(&self) -> usize {
        self.weights.len()
    }

    /// Hidden layer `j`'s weights `W_j`, `(B, h, h)`, as in `x·W_j`.
    pub fn weight(&self, j: usize) -> Option<&Tensor> {
        self.weights.get(j)
    }

    /// Hidden layer `j`'s biases `b_j`, `(B, h)`.
    pub fn bias(&self, j: usize) -> Option<&Tensor> {
        self.biases.get(j)
    }

    /// The output columns `W_out`, `(B, h)`.
    pub fn output(&self) -> &Tensor {
        &self.output
    }

    /// The same q-nets without the gradient graph (storage is shared).
    pub fn detach(&self) -> Self {
        Self {
            weights: self.weights.iter().map(Tensor::detach).collect(),
            biases: self.biases.iter().map(Tensor::detach).collect(),
            output: self.output.detach(),
            residual: self.residual,
            eps: self.eps,
        }
    }

    /// The q-nets of queries `start..start + len`, e.g. one query's.
    pub fn slice(&self, start: usize, len: usize) -> Result<Self> {
        if start + len > self.len() {
            return Err(HypencoderError::InvalidInput(format!(
                "queries {start}..{} out of {}",
                start + len,
                self.len()
            )));
        }
        let cut = |t: &Tensor| t.narrow(0, start, len);
        Ok(Self {
            weights: self.weights.iter().map(cut).collect::<Result<_, _>>()?,
            biases: self.biases.iter().map(cut).collect::<Result<_, _>>()?,
            output: cut(&self.output)?,
            residual: self.residual,
            eps: self.eps,
        })
    }

    /// Differentiable scores, `(B, N)`.
    ///
    /// `docs` is either `(B, N, h)`, each query's own documents (training
    /// with hard negatives), or `(N, h)`, the same documents for every query
    /// (in-batch negatives). Builds the full `(B, N, h)` activations: use
    /// [`QNets::score`] for inference over many documents.
    pub fn forward(&self, docs: &Tensor) -> Result<Tensor> {
        let b = self.len();
        let h = self.width();
        let docs = match docs.dims() {
            [n, w] if *w == h => docs.broadcast_as((b, *n, h))?.contiguous()?,
            [bb, _, w] if *bb == b && *w == h => docs.clone(),
            dims => {
                return Err(HypencoderError::InvalidInput(format!(
                    "documents must be (N, {h}) or ({b}, N, {h}), got {dims:?}"
                )))
            }
        };
        let last = self.weights.len() - 1;
        let mut x = docs;
        for (j, (w, bias)) in self.weights.iter().zip(&self.biases).enumerate() {
            let y = x.matmul(w)?.broadcast_add(&bias.unsqueeze(1)?)?.relu()?;
            let y = layer_norm(&y, self.eps)?;
            x = if self.residual && j < last {
                (y + x)?
            } else {
                y
            };
        }
        Ok(x.matmul(&self.output.unsqueeze(D::Minus1)?)?
            .squeeze(D::Minus1)?)
    }
}
