//! Hyperheads: attention from learned queries over the query's token states,
//! producing every weight and bias of that query's q-net (SPECS §2).
//!
//! For one generated matrix `W` (`in×out`), with `E_q` the query's token
//! states (`T×h`):
//!
//! ```text
//! K = E_q·Wkᵀ            V = E_q·Wvᵀ + bv          (T×in)
//! H = softmax(Q·Kᵀ/√out, pad tokens masked)·V     (out×in; Q is out×in, learned)
//! Ĥ = Linear_in→in(LayerNorm_without_affine(ReLU(H)))
//! W = (Ĥ + Base)ᵀ
//! ```
//!
//! Heads are kept in two groups of equal shape so each group runs as a few
//! batched matrix products instead of one small product per head: the
//! *matrices* (`out = h`, the `L` hidden weights) and the *vectors*
//! (`out = 1`: the `L` hidden biases, then the output column).
//!
//! The key projection has no bias, unlike a plain `Linear`: a key bias adds
//! `Q·bk`, the same number, to every token's score in a row, which softmax
//! cancels, so it could never learn anything (its gradient is exactly zero).
//!
//! Only gradient-carrying candle ops are used (`ops::softmax` over the last
//! dimension, a hand-written layer norm), see `PITFALLS.md`.

use candle_core::{DType, Device, Tensor, D};

use crate::config::HypencoderConfig;
use crate::error::{HypencoderError, Result};
use crate::rng::SplitMix64;

/// Added to the attention scores of padding tokens: `exp` of it underflows
/// to exactly 0, so padding gets exactly zero weight whatever its states.
const MASKED_SCORE: f64 = -1e9;

/// Layer normalisation over the last dimension without scale or shift,
/// written with plain ops so that it carries gradients (candle's fused
/// `ops::layer_norm` does not).
pub(crate) fn layer_norm(x: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_div(&(var + eps)?.sqrt()?)
}

/// A batch of queries as the frozen encoder left them: final-layer token
/// states and the attention mask, padded on the right.
#[derive(Debug, Clone)]
pub struct QueryStates {
    states: Tensor,
    mask: Tensor,
}

impl QueryStates {
    /// `states` `(B, T, h)` f32 and `mask` `(B, T)` (1 for real tokens, 0 for
    /// padding; any float dtype). Every query needs at least one real token.
    pub fn new(states: Tensor, mask: Tensor) -> Result<Self> {
        let bad = |msg: String| Err(HypencoderError::InvalidInput(msg));
        let (b, t, _) = match states.dims3() {
            Ok(dims) => dims,
            Err(_) => return bad(format!("states must be (B, T, h), got {:?}", states.dims())),
        };
        if states.dtype() != DType::F32 {
            return bad(format!("states must be f32, got {:?}", states.dtype()));
        }
        if mask.dims() != [b, t] {
            return bad(format!(
                "mask must be (B, T) = ({b}, {t}), got {:?}",
                mask.dims()
            ));
        }
        let mask = mask.to_dtype(DType::F32)?;
        let rows = mask.to_vec2::<f32>()?;
        if let Some(i) = rows.iter().position(|row| !row.iter().any(|&m| m > 0.0)) {
            return bad(format!("query {i} has no unmasked token"));
        }
        Ok(Self {
            states: states.detach(),
            mask: mask.detach(),
        })
    }

    /// Builds the tensors from row-major buffers: `states` is
    /// `rows × seq_len × dim`, `mask` is `rows × seq_len`.
    pub fn from_flat(
        states: Vec<f32>,
        mask: Vec<f32>,
        rows: usize,
        seq_len: usize,
        dim: usize,
    ) -> Result<Self> {
        if states.len() != rows * seq_len * dim || mask.len() != rows * seq_len {
            return Err(HypencoderError::InvalidInput(format!(
                "{} states and {} mask values do not fit {rows}×{seq_len}×{dim}",
                states.len(),
                mask.len()
            )));
        }
        let device = Device::Cpu;
        Self::new(
            Tensor::from_vec(states, (rows, seq_len, dim), &device)?,
            Tensor::from_vec(mask, (rows, seq_len), &device)?,
        )
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.mask.dims()[0]
    }

    /// Whether the batch holds no query.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(B, T, h)` token states.
    pub fn states(&self) -> &Tensor {
        &self.states
    }

    /// `(B, T)` f32 attention mask.
    pub fn mask(&self) -> &Tensor {
        &self.mask
    }
}

/// The heads of one group: `G` generated tensors of shape `out×in`.
#[derive(Debug, Clone)]
pub(crate) struct HeadGroup {
    /// `(G, in, h)` key projections (no bias, see the module docs).
    pub key: Tensor,
    /// `(G, in, h)` value projections and their `(G, in)` biases.
    pub value: Tensor,
    pub value_bias: Tensor,
    /// `(G, out, in)` learned attention queries.
    pub query: Tensor,
    /// `(G, in, in)` and `(G, in)`: the linear layer producing `Ĥ`.
    pub delta_weight: Tensor,
    pub delta_bias: Tensor,
    /// `(G, out, in)` base tensors.
    pub base: Tensor,
}

/// Names of a group's tensors in `model.safetensors`, in a fixed order.
pub(crate) const GROUP_TENSORS: [&str; 7] = [
    "key",
    "value",
    "value_bias",
    "query",
    "delta_weight",
    "delta_bias",
    "base",
];

impl HeadGroup {
    /// Expected shapes, in [`GROUP_TENSORS`] order.
    pub fn shapes(heads: usize, out: usize, h: usize) -> [Vec<usize>; 7] {
        [
            vec![heads, h, h],
            vec![heads, h, h],
            vec![heads, h],
            vec![heads, out, h],
            vec![heads, h, h],
            vec![heads, h],
            vec![heads, out, h],
        ]
    }

    /// Random initialisation (see [`crate::InitScale`]); `base_std` per
    /// head, so biases can start at zero and the output column at He scale.
    fn init(
        rng: &mut SplitMix64,
        cfg: &HypencoderConfig,
        heads: usize,
        out: usize,
        base_std: &[f64],
    ) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let init = &cfg.init;
        let dev = Device::Cpu;
        let bases = base_std
            .iter()
            .map(|&std| rng.normal_tensor((1, out, h), std, &dev))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            key: rng.normal_tensor((heads, h, h), init.projection_std, &dev)?,
            value: rng.normal_tensor((heads, h, h), init.projection_std, &dev)?,
            value_bias: Tensor::zeros((heads, h), DType::F32, &dev)?,
            query: rng.normal_tensor((heads, out, h), init.query_std, &dev)?,
            delta_weight: rng.normal_tensor((heads, h, h), init.delta_std, &dev)?,
            delta_bias: Tensor::zeros((heads, h), DType::F32, &dev)?,
            base: Tensor::cat(&bases, 0)?,
        })
    }

    /// The group's tensors in [`GROUP_TENSORS`] order.
    pub fn tensors(&self) -> [&Tensor; 7] {
        [
            &self.key,
            &self.value,
            &self.value_bias,
            &self.query,
            &self.delta_weight,
            &self.delta_bias,
            &self.base,
        ]
    }

    /// Rebuilds a group from tensors in [`GROUP_TENSORS`] order.
    pub fn from_tensors(t: [Tensor; 7]) -> Self {
        let [key, value, value_bias, query, delta_weight, delta_bias, base] = t;
        Self {
            key,
            value,
            value_bias,
            query,
            delta_weight,
            delta_bias,
            base,
        }
    }

    /// `(G, B, out, in)`: `Ĥ + Base` for every head and query, before the
    /// final transpose. `flat` is the `(B·T, h)` token states, `mask_bias`
    /// the `(B, T)` additive mask.
    fn generate(
        &self,
        flat: &Tensor,
        (b, t): (usize, usize),
        mask_bias: &Tensor,
        eps: f64,
    ) -> candle_core::Result<Tensor> {
        let (g, out, inn) = self.query.dims3()?;
        let h = flat.dim(1)?;
        // All G projections in one product: (B·T, h)·(h, G·in).
        let keys = flat
            .matmul(&self.key.reshape((g * inn, h))?.t()?)?
            .reshape((b, t, g, inn))?
            .permute((2, 3, 0, 1))?
            .contiguous()?
            .reshape((g, inn, b * t))?;
        let values = flat
            .matmul(&self.value.reshape((g * inn, h))?.t()?)?
            .broadcast_add(&self.value_bias.flatten_all()?)?
            .reshape((b, t, g, inn))?
            .permute((2, 0, 1, 3))?
            .contiguous()?; // (G, B, T, in)
                            // Scores of every learned query row against every token of every
                            // query in the batch: (G, out, in)·(G, in, B·T).
        let scores = (self.query.matmul(&keys)? * (1.0 / (out as f64).sqrt()))?
            .reshape((g, out, b, t))?
            .broadcast_add(mask_bias)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?
            .permute((0, 2, 1, 3))?
            .contiguous()?; // (G, B, out, T)
        let heads = probs.matmul(&values)?; // (G, B, out, in)
        let normed = layer_norm(&heads.relu()?, eps)?;
        let delta = normed
            .reshape((g, b * out, inn))?
            .matmul(&self.delta_weight.transpose(1, 2)?)?
            .broadcast_add(&self.delta_bias.unsqueeze(1)?)?
            .reshape((g, b, out, inn))?;
        delta.broadcast_add(&self.base.unsqueeze(1)?)
    }
}

/// All hyperheads of a model.
#[derive(Debug, Clone)]
pub(crate) struct HyperHeads {
    /// `L` heads with `out = h`: the hidden layers' weight matrices.
    pub matrices: HeadGroup,
    /// `L + 1` heads with `out = 1`: the hidden biases, then the output
    /// column.
    pub vectors: HeadGroup,
}

/// Generated q-net parameters for a batch of queries, in `x·W` orientation.
pub(crate) struct Generated {
    /// `L` tensors `(B, h, h)`.
    pub weights: Vec<Tensor>,
    /// `L` tensors `(B, h)`.
    pub biases: Vec<Tensor>,
    /// `(B, h)`.
    pub output: Tensor,
}

impl HyperHeads {
    /// A freshly initialised set of heads, reproducible from `seed`.
    pub fn init(cfg: &HypencoderConfig, seed: u64) -> candle_core::Result<Self> {
        let l = cfg.num_hidden_layers;
        let h = cfg.hidden_size;
        let mut rng = SplitMix64::new(seed);
        let base = cfg.init.base_std;
        let matrices = HeadGroup::init(&mut rng, cfg, l, h, &vec![base; l])?;
        // Hidden biases start at zero, as is usual for a ReLU layer; the
        // output column at He scale like the hidden weights.
        let mut vector_std = vec![0.0; l];
        vector_std.push(base);
        let vectors = HeadGroup::init(&mut rng, cfg, l + 1, 1, &vector_std)?;
        let heads = Self { matrices, vectors };
        match cfg.start {
            crate::config::Start::Random => Ok(heads),
            crate::config::Start::Dense => crate::warm_start::dense(heads, cfg),
        }
    }

    /// The q-net parameters of every query in `queries`.
    pub fn generate(&self, queries: &QueryStates, eps: f64) -> Result<Generated> {
        let (b, t, h) = queries.states().dims3()?;
        let expected = self.matrices.key.dim(2)?;
        if h != expected {
            return Err(HypencoderError::InvalidInput(format!(
                "query states are {h} wide, the model expects {expected}"
            )));
        }
        let _span = tracing::debug_span!("hyperheads", queries = b, tokens = t).entered();
        let flat = queries.states().reshape((b * t, h))?;
        let mask_bias = queries.mask().affine(-MASKED_SCORE, MASKED_SCORE)?;

        let l = self.matrices.query.dim(0)?;
        let matrices = self.matrices.generate(&flat, (b, t), &mask_bias, eps)?;
        let weights = (0..l)
            .map(|j| matrices.get(j)?.transpose(1, 2)?.contiguous())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let vectors = self
            .vectors
            .generate(&flat, (b, t), &mask_bias, eps)?
            .squeeze(2)?; // (L + 1, B, h)
        let biases = (0..l)
            .map(|j| vectors.get(j))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Generated {
            weights,
            biases,
            output: vectors.get(l)?,
        })
    }
}
