//! The product-key memory layer (Lample et al., "Large Memory Layers with
//! Product Keys", NeurIPS 2019) and its Memory+ variant (Berges et al.,
//! "Memory Layers at Scale", 2024); SPECS §4.
//!
//! A table of `N = n²` values, of which each token reads `H·k`. The query
//! of head `h` is split into halves scored against two sets of `n`
//! sub-keys; the top `k` of each half give `k²` candidate pairs whose
//! summed scores are exactly the scores of `k²` of the `N` product keys;
//! the top `k` of those are read and mixed by the softmax of their scores.
//! Per token that is `O(H·n·d_k) = O(√N)` key work and `H·k` value rows:
//! the table is only ever indexed, never scanned.
//!
//! Two forward paths share the selection code ([`crate::topk`]) and the
//! embedding-bag kernel ([`crate::bag`]):
//! - [`MemoryLayer::forward_train`]: differentiable. The scores of the
//!   chosen sub-keys are `gather`ed from the score tensor, so gradients
//!   reach the query projection and the sub-keys; the chosen rows are
//!   summed by a custom op whose backward reaches them. candle has no
//!   sparse gradients: the value table receives a dense `(N, dim)`
//!   gradient whose only non-zero rows are the ones read, and a dense
//!   AdamW update (PITFALLS). At N = 65k × 256 a training step of the
//!   default model with one memory layer took ~1.1 s against ~0.7 s
//!   dense (8 × 128 tokens, one thread; `examples/lm_train_step.rs`).
//! - [`MemoryLayer::forward`]: inference. Sub-keys are scored from a
//!   packed copy of the keys once [`MemoryLayer::pack_keys`] made one
//!   (served models), else by `matmul`. Weights and the weighted sum of
//!   the chosen rows are computed on the host straight from the value
//!   table's buffer: no gradient graph, no intermediate tensors. For one
//!   token 5–15% faster than the training path, which shares the bag
//!   kernel (`examples/memory_scale.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, D};

use crate::bag::{bag_sum, EmbeddingBag};
use crate::batchnorm::BatchNorm;
use crate::config::{MemoryConfig, MemoryVariant};
use crate::error::{LmError, Result};
use crate::ops::{linear, with_host_f32};
use crate::paged::PagedValues;
use crate::params::{Init, ParamSource};
use crate::picks::{Picks, Selection};
use crate::query_proj::{self, QueryProjection};
use crate::subkeys::{KeyPrecision, Packed};

/// What [`MemoryLayer::pack_keys`] prepares for inference.
#[derive(Debug)]
struct PackedLookup {
    keys: Packed,
    /// None when the query weight is not exactly f16 (then `matmul`).
    query: Option<QueryProjection>,
}

/// What one lookup chose, for inspection and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    /// Tokens looked up (`T`).
    pub tokens: usize,
    /// Memory heads (`H`).
    pub heads: usize,
    /// Values read per head (`k`).
    pub k: usize,
    /// `(T, H, k)` row-major: value ids `i·n + j`, best first per head.
    pub indices: Vec<u32>,
    /// `(T, H, k)`: each head's softmax weights over its `k` values.
    pub weights: Vec<f32>,
    /// `(T, H, k)`: the key scores before the softmax.
    pub scores: Vec<f32>,
}

/// Memory+'s gated output projection.
#[derive(Debug, Clone)]
struct Gate {
    /// `W_g`, `(dim, dim)`.
    gate: Tensor,
    /// `W_o`, `(dim, dim)`.
    out: Tensor,
}

/// A product-key memory layer (or a Memory+ layer).
#[derive(Debug, Clone)]
pub struct MemoryLayer {
    config: MemoryConfig,
    dim: usize,
    /// `W_q`, `(H·d_k, dim)`.
    query: Tensor,
    query_norm: Option<BatchNorm>,
    /// `(2H, d_k/2, n)`: slice `2h` holds head `h`'s first-half sub-keys
    /// as columns, slice `2h + 1` its second-half ones, matching the query
    /// layout. Columns rather than rows because scoring one token is a
    /// matrix-vector product that streams every sub-key from memory, and
    /// gemm streams this layout twice as fast (measured at n = 1024: 52
    /// against 109 µs for all eight halves).
    keys: Tensor,
    /// `(N, dim)`; with Memory+, one table shared by all memory layers.
    values: Tensor,
    gate: Option<Gate>,
    /// When set, inference reads the value rows in pages through the
    /// memory tiers instead of from `values` ([`MemoryLayer::set_paged_values`]).
    paged: Option<Arc<PagedValues>>,
    /// The keys and query projection packed for inference
    /// ([`MemoryLayer::pack_keys`]).
    packed: Option<Arc<PackedLookup>>,
    /// Lookups answered with a page missing (its rows read as zero).
    degraded: Arc<AtomicU64>,
}

impl MemoryLayer {
    /// A standalone layer of width `dim` with random weights (e.g. for
    /// benchmarks); the same `seed` gives the same weights.
    pub fn new(dim: usize, config: &MemoryConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        if dim == 0 {
            return Err(LmError::Config("dim must be positive".into()));
        }
        let mut src = ParamSource::random(seed, &Device::Cpu);
        Self::build(&mut src, "memory", config, dim, 0.02, 0.02, None)
    }

    /// Tensors `{prefix}.query`, `{prefix}.query_norm.*`, `{prefix}.keys`,
    /// `{prefix}.values` (unless `shared_values` is given) and, for
    /// Memory+, `{prefix}.gate` and `{prefix}.out`.
    ///
    /// Initialisation as in the paper: sub-keys uniform in ±1/√(d_k/2),
    /// values N(0, 1/dim) so a value row has unit norm; the query
    /// projection N(0, 1/dim) so that, without batch norm, query entries
    /// have unit scale for RMS-normalised input.
    pub(crate) fn build(
        src: &mut ParamSource,
        prefix: &str,
        config: &MemoryConfig,
        dim: usize,
        std: f64,
        out_std: f64,
        shared_values: Option<&Tensor>,
    ) -> Result<Self> {
        let (h, dk, n) = (config.heads, config.key_dim, config.n_keys);
        let inv_sqrt_dim = 1.0 / (dim as f64).sqrt();
        let query = src.param(
            &format!("{prefix}.query"),
            (h * dk, dim),
            Init::Normal(inv_sqrt_dim),
        )?;
        let query_norm = if config.query_batch_norm {
            Some(BatchNorm::build(
                src,
                &format!("{prefix}.query_norm"),
                h * dk,
            )?)
        } else {
            None
        };
        let half = dk / 2;
        let bound = 1.0 / (half as f64).sqrt();
        let keys = src.param(
            &format!("{prefix}.keys"),
            (2 * h, half, n),
            Init::Uniform(bound),
        )?;
        let values = match shared_values {
            Some(values) => values.clone(),
            None => src.param(
                &format!("{prefix}.values"),
                (n * n, dim),
                Init::Normal(inv_sqrt_dim),
            )?,
        };
        let gate = match config.variant {
            MemoryVariant::Pkm => None,
            MemoryVariant::MemoryPlus => Some(Gate {
                gate: src.param(&format!("{prefix}.gate"), (dim, dim), Init::Normal(std))?,
                out: src.param(&format!("{prefix}.out"), (dim, dim), Init::Normal(out_std))?,
            }),
        };
        Ok(Self {
            config: config.clone(),
            dim,
            query,
            query_norm,
            keys,
            values,
            gate,
            paged: None,
            packed: None,
            degraded: Arc::default(),
        })
    }

    /// The value table, `(N, dim)` row-major.
    pub fn value_table(&self) -> Result<Vec<f32>> {
        Ok(self.values.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Reads values in pages through the memory tiers at inference
    /// (`None`: from the in-memory table again). Training always uses the
    /// in-memory table. The pages must hold this layer's `(N, dim)` table.
    pub fn set_paged_values(&mut self, paged: Option<Arc<PagedValues>>) -> Result<()> {
        if let Some(p) = &paged {
            if p.rows() != self.config.num_values() || p.dim() != self.dim {
                return Err(LmError::InvalidInput(format!(
                    "paged values of {} x {} for a memory of {} x {}",
                    p.rows(),
                    p.dim(),
                    self.config.num_values(),
                    self.dim
                )));
            }
        }
        self.paged = paged;
        Ok(())
    }

    /// Rounds the sub-keys and the query weight to f16 values, as a
    /// checkpoint that `mnemos train lm` saved holds them: benches and
    /// examples time a fresh layer this way as it would be served (an
    /// f16 query weight is projected from a packed copy while decoding).
    pub fn round_to_f16(&mut self) -> Result<()> {
        let round =
            |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(DType::F16)?.to_dtype(DType::F32)?) };
        self.keys = round(&self.keys)?;
        self.query = round(&self.query)?;
        self.packed = None;
        Ok(())
    }

    /// Scores sub-keys at inference from a packed copy of the keys
    /// ([`crate::subkeys`]), in f16, read in order with no per-call copy.
    /// For frozen weights only: training would update the key tensor, not
    /// the copy, so keys that are a training variable are refused (the
    /// trainer never packs; served models are packed at load).
    pub fn pack_keys(&mut self) -> Result<()> {
        self.pack_keys_as(KeyPrecision::F16)
    }

    /// [`MemoryLayer::pack_keys`] in the given precision: `Int8` scores
    /// quantised keys and queries ([`crate::subkeys_i8`]).
    pub fn pack_keys_as(&mut self, precision: KeyPrecision) -> Result<()> {
        if self.keys.is_variable() || self.query.is_variable() {
            return Err(LmError::InvalidInput(
                "the sub-keys or query are being trained (a variable); pack a loaded model".into(),
            ));
        }
        let (halves, width, n) = self.keys.dims3()?;
        let keys = with_host_f32(&self.keys, |k| Packed::pack(k, halves, width, n, precision))??;
        let affine = match &self.query_norm {
            Some(norm) => Some(norm.eval_affine()?),
            None => None,
        };
        let (rows, dim) = self.query.dims2()?;
        let query = with_host_f32(&self.query, |w| QueryProjection::pack(w, rows, dim, affine))?;
        self.packed = Some(Arc::new(PackedLookup { keys, query }));
        Ok(())
    }

    /// Inference lookups that ran with a value page missing.
    pub fn degraded_lookups(&self) -> u64 {
        self.degraded.load(Ordering::Relaxed)
    }

    /// The lookup's configuration.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// Values in the table (`N`).
    pub fn num_values(&self) -> usize {
        self.config.num_values()
    }

    /// Trainable scalars, the value table included.
    pub fn num_parameters(&self) -> usize {
        self.config.layer_parameters(self.dim) + self.values.elem_count()
    }

    /// The saved, untrained tensors (batch-norm running statistics).
    pub(crate) fn buffers(&self, prefix: &str) -> Vec<(String, Tensor)> {
        match &self.query_norm {
            Some(norm) => {
                let (mean, var) = norm.running();
                vec![
                    (format!("{prefix}.query_norm.running_mean"), mean),
                    (format!("{prefix}.query_norm.running_var"), var),
                ]
            }
            None => Vec::new(),
        }
    }

    /// Inference: `x` of shape `(…, dim)` to the same shape, with running
    /// batch-norm statistics and no gradient graph through the lookup.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("memory", tokens = x.elem_count() / self.dim).entered();
        let x2 = self.rows(x)?;
        let picks = self.lookup_host(&x2)?;
        let mem = self.weighted_sum_host(&picks)?;
        self.output(&x2, mem)?
            .reshape(x.shape())
            .map_err(Into::into)
    }

    /// Training: differentiable in the query projection, the batch-norm
    /// affine, the sub-keys, the value rows read and the Memory+ gate;
    /// batch norm uses (and records) this batch's statistics.
    pub fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("memory_train").entered();
        let x2 = self.rows(x)?;
        let scores = self.subkey_scores(&x2, true)?; // (2H, T, n)
        let (halves, t, n) = scores.dims3()?;
        let picks = with_host_f32(&scores.detach(), |s| self.select(s, halves, t, n))?;
        let (h, k) = (self.config.heads, self.config.k);
        let t = picks.tokens;
        // Gather index (2H, T, k): row 2h holds each pick's i, 2h+1 its j.
        let mut gather = vec![0u32; 2 * h * t * k];
        for tok in 0..t {
            for head in 0..h {
                for p in 0..k {
                    let pick = picks.pick(tok, head, p);
                    gather[((2 * head) * t + tok) * k + p] = pick.i;
                    gather[((2 * head + 1) * t + tok) * k + p] = pick.j;
                }
            }
        }
        let gather = Tensor::from_vec(gather, (2 * h, t, k), x.device())?;
        let picked = scores
            .gather(&gather, 2)?
            .reshape((h, 2, t, k))?
            .sum(1)? // s1[i] + s2[j]
            .transpose(0, 1)?; // (T, H, k)
        let mem = self.weighted_sum_tensors(&picks, &picked)?;
        self.output(&x2, mem)?
            .reshape(x.shape())
            .map_err(Into::into)
    }

    /// The value ids and weights that [`MemoryLayer::forward`] reads for
    /// each token of `x` `(…, dim)`.
    pub fn lookup(&self, x: &Tensor) -> Result<Lookup> {
        let x2 = self.rows(x)?;
        let picks = self.lookup_host(&x2)?;
        let (h, k) = (self.config.heads, self.config.k);
        let mut weights = picks.scores.clone();
        for group in weights.chunks_mut(k) {
            softmax_in_place(group);
        }
        Ok(Lookup {
            tokens: picks.tokens,
            heads: h,
            k,
            indices: picks.value_ids(self.config.n_keys),
            weights,
            scores: picks.scores,
        })
    }

    /// `x` as `(T, dim)`.
    fn rows(&self, x: &Tensor) -> Result<Tensor> {
        if x.dims().last() != Some(&self.dim) {
            return Err(LmError::InvalidInput(format!(
                "memory input must be (…, {}), got {:?}",
                self.dim,
                x.dims()
            )));
        }
        Ok(x.reshape(((), self.dim))?)
    }

    /// `(2H, T, n)` scores of every token's query halves against their
    /// sub-keys: one batched matrix product, `H·n·d_k` multiply-adds per
    /// token.
    fn subkey_scores(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let q = self.queries(x, train)?;
        let t = q.dim(0)?;
        let halves = 2 * self.config.heads;
        let q = q
            .reshape((t, halves, self.config.key_dim / 2))?
            .transpose(0, 1)?
            .contiguous()?;
        Ok(q.matmul(&self.keys)?)
    }

    /// `(T, H·d_k)` queries: the projection of `x` `(T, dim)`, batch
    /// normalised with this batch's statistics (`train`) or the running ones.
    fn queries(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let q = linear(x, &self.query)?;
        Ok(match &self.query_norm {
            Some(norm) if train => norm.forward_train(&q)?,
            Some(norm) => norm.forward_eval(&q)?,
            None => q,
        })
    }

    /// Inference picks for `x` `(T, dim)`: sub-keys scored from the packed
    /// keys when [`MemoryLayer::pack_keys`] made them, else by `matmul`.
    fn lookup_host(&self, x: &Tensor) -> Result<Picks> {
        let Some(packed) = &self.packed else {
            let scores = self.subkey_scores(x, false)?;
            let (halves, t, n) = scores.dims3()?;
            return with_host_f32(&scores, |s| self.select(s, halves, t, n));
        };
        let (t, n) = (x.dim(0)?, packed.keys.n());
        // One head at a time: its two halves' scores (8 KB at n = 1024,
        // T = 1) are selected from while they are still in L1, where all
        // heads' scores at once overflowed it.
        let mut scores = vec![0f32; 2 * t * n];
        let mut selection = Selection::new(t, self.config.heads, self.config.k);
        let mut run = |q: &[f32]| {
            for head in 0..self.config.heads {
                packed
                    .keys
                    .score_halves(q, 2 * head..2 * head + 2, &mut scores);
                let (first, second) = scores.split_at(t * n);
                selection.head(head, first, second, n);
            }
        };
        let small = t <= query_proj::MAX_TOKENS;
        if let Some(query) = packed.query.as_ref().filter(|_| small) {
            run(&with_host_f32(x, |x| query.project(x))?);
        } else {
            // The projected queries are read in place, not copied.
            with_host_f32(&self.queries(x, false)?, run)?;
        }
        Ok(selection.finish())
    }

    /// The `k` best key pairs of every (token, head), from the sub-key
    /// scores `(2H, T, n)` row-major.
    fn select(&self, s: &[f32], halves: usize, t: usize, n: usize) -> Picks {
        let mut selection = Selection::new(t, self.config.heads, self.config.k);
        for head in 0..halves / 2 {
            let first = &s[2 * head * t * n..][..t * n];
            let second = &s[(2 * head + 1) * t * n..][..t * n];
            selection.head(head, first, second, n);
        }
        selection.finish()
    }

    /// Differentiable embedding-bag sum: the `H·k` rows of each token
    /// mixed by per-head softmax weights of `scores` `(T, H, k)`, summed
    /// over the heads ([`EmbeddingBag`]).
    fn weighted_sum_tensors(&self, picks: &Picks, scores: &Tensor) -> Result<Tensor> {
        let (t, hk) = (picks.tokens, picks.heads * picks.k);
        let weights = candle_nn::ops::softmax(scores, D::Minus1)?
            .reshape((t, hk))?
            .contiguous()?;
        let bag = EmbeddingBag::new(picks.value_ids(self.config.n_keys));
        Ok(self.values.contiguous()?.apply_op2(&weights, bag)?)
    }

    /// The same sum computed on the host from the table's own buffer, for
    /// inference: no gradient graph, no intermediate tensors.
    fn weighted_sum_host(&self, picks: &Picks) -> Result<Tensor> {
        let mut weights = picks.scores.clone();
        for group in weights.chunks_mut(picks.k) {
            softmax_in_place(group);
        }
        let ids = picks.value_ids(self.config.n_keys);
        let mut out = vec![0f32; picks.tokens * self.dim];
        if let Some(paged) = &self.paged {
            if paged.bag_sum(&ids, &weights, &mut out)?.missing > 0 {
                self.degraded.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            with_host_f32(&self.values, |table| {
                bag_sum(table, self.dim, &ids, &weights, &mut out)
            })?;
        }
        let shape = (picks.tokens, self.dim);
        Ok(Tensor::from_vec(out, shape, self.values.device())?)
    }

    /// `mem` for PKM, `W_o(mem ⊙ SiLU(W_g x))` for Memory+.
    fn output(&self, x: &Tensor, mem: Tensor) -> Result<Tensor> {
        match &self.gate {
            None => Ok(mem),
            Some(g) => linear(&(mem * linear(x, &g.gate)?.silu()?)?, &g.out),
        }
    }
}

/// Softmax of a short slice, in place.
fn softmax_in_place(xs: &mut [f32]) {
    let max = xs.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for x in xs.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in xs.iter_mut() {
        *x /= sum;
    }
}

#[cfg(test)]
#[path = "pkm_tests.rs"]
pub(crate) mod tests;
