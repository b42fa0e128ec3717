//! Causal multi-head self-attention with rotary positions and a KV cache
//! for incremental decoding (Vaswani et al. 2017; Su et al. 2021).

use candle_core::{Device, Tensor, D};

use crate::error::Result;
use crate::ops::linear;
use crate::params::{Init, ParamSource};
use crate::rope::Rope;

/// The keys and values of every token decoded so far, per block, so each
/// new token attends to them without recomputing them: one forward pass
/// per generated token costs `O(context)` instead of `O(context²)`.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    /// Per block: `(B, heads, S, head_dim)` keys and values.
    pub(crate) layers: Vec<Option<(Tensor, Tensor)>>,
    /// Tokens cached (`S`), the position of the next token.
    pub(crate) len: usize,
}

impl KvCache {
    /// An empty cache; the first forward pass through it sizes it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tokens cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every token, to start a new sequence.
    pub fn clear(&mut self) {
        self.layers.clear();
        self.len = 0;
    }
}

/// Self-attention weights of one block.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    /// `(3·dim, dim)`: query, key and value projections in one matrix, so
    /// a token's three projections are one matrix product.
    qkv: Tensor,
    /// `(dim, dim)`.
    out: Tensor,
    heads: usize,
}

impl Attention {
    /// Weights `{prefix}.qkv` and `{prefix}.out`.
    pub fn build(
        src: &mut ParamSource,
        prefix: &str,
        dim: usize,
        heads: usize,
        std: f64,
        out_std: f64,
    ) -> Result<Self> {
        Ok(Self {
            qkv: src.param(&format!("{prefix}.qkv"), (3 * dim, dim), Init::Normal(std))?,
            out: src.param(&format!("{prefix}.out"), (dim, dim), Init::Normal(out_std))?,
            heads,
        })
    }

    /// Attends `x` `(B, T, dim)`, at positions `offset..offset + T`, to
    /// itself and to the cached tokens before it; appends its keys and
    /// values to `cache` when given.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        offset: usize,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        train: bool,
    ) -> Result<Tensor> {
        let (b, t, dim) = x.dims3()?;
        let head_dim = dim / self.heads;
        // (B, T, 3, H, hd) → (3, B, H, T, hd).
        let qkv = linear(x, &self.qkv)?
            .reshape((b, t, 3, self.heads, head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let q = rope.apply(&qkv.get(0)?, offset, train)?;
        let k = rope.apply(&qkv.get(1)?, offset, train)?;
        let v = qkv.get(2)?.contiguous()?;
        let (k, v) = match cache {
            Some(slot) => {
                let (k, v) = match slot.take() {
                    Some((old_k, old_v)) => {
                        (Tensor::cat(&[old_k, k], 2)?, Tensor::cat(&[old_v, v], 2)?)
                    }
                    None => (k, v),
                };
                *slot = Some((k.clone(), v.clone()));
                (k, v)
            }
            None => (k, v),
        };
        let keys = k.dim(2)?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)? * scale)?; // (B, H, T, S)
        if t > 1 {
            scores = scores.broadcast_add(&causal_mask(t, keys, offset, x.device())?)?;
        }
        // The fused softmax has no backward pass (PITFALLS); inference
        // takes it for its single pass.
        let probs = if train {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, dim))?;
        linear(&y, &self.out)
    }
}

/// `(T, S)` additive mask: query `i` (position `offset + i`) sees keys
/// `0..=offset + i`.
fn causal_mask(t: usize, s: usize, offset: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..s).map(move |j| {
                if j <= offset + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (t, s), device)?)
}
