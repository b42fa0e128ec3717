//! The embedding bag of a memory lookup: `out[t] = Σ_p w[t,p] · V[id[t,p]]`
//! over each token's `H·k` picks, forward and backward, touching only the
//! rows read.
//!
//! candle has no EmbeddingBag. Written with its ops (`index_select` of the
//! rows, then a batched product with the weights) a training batch of
//! `T = 1024` tokens materialises `T·H·k = 131k` rows — a 134 MB tensor at
//! dim 256 — and its gradient of the same size. [`EmbeddingBag`] is a
//! custom op that reads the rows in place instead; its backward writes
//! the value gradient straight into the (dense, PITFALLS) `(N, dim)`
//! gradient and the weight gradient as one dot product per pick.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use mnemos_models_core::simd::{vectorized, Kernel};

use crate::error::Result;
use crate::ops::with_host_f32;

/// `out (T, dim) = Σ_p w · table[id]` on the host; `ids` and `weights`
/// are `(T, P)` row-major, every id a row of `table` (`(N, dim)`).
pub(crate) fn bag_sum(table: &[f32], dim: usize, ids: &[u32], weights: &[f32], out: &mut [f32]) {
    vectorized(BagSum {
        table,
        dim,
        ids,
        weights,
        out,
    });
}

/// See [`bag_sum`].
///
/// The loop runs over blocks of 64 columns, and within a block over all
/// the token's rows, accumulating in registers. The rows are scattered
/// over a table far larger than the caches, so each is a cache miss; in
/// this order consecutive loads hit different rows and are independent,
/// letting the CPU keep many misses in flight, where a row-by-row loop
/// waits for each row in turn. Measured for 128 random rows of a 1M × 256
/// table: 13–24 µs per token blocked, 21–98 µs row by row (a loaded
/// 2-core EPYC; the spread is other jobs).
struct BagSum<'a> {
    table: &'a [f32],
    dim: usize,
    ids: &'a [u32],
    weights: &'a [f32],
    out: &'a mut [f32],
}

const BLOCK: usize = 64;

impl Kernel for BagSum<'_> {
    #[inline(always)]
    fn run(self) {
        let dim = self.dim;
        let per_token = self.ids.len() / (self.out.len() / dim).max(1);
        // Each pick's row and weight; an id outside the table (never made
        // by the selection) reads nothing rather than panicking.
        let mut rows: Vec<(&[f32], f32)> = Vec::with_capacity(per_token);
        for ((out, ids), weights) in self
            .out
            .chunks_exact_mut(dim)
            .zip(self.ids.chunks_exact(per_token))
            .zip(self.weights.chunks_exact(per_token))
        {
            rows.clear();
            rows.extend(ids.iter().zip(weights).filter_map(|(&id, &w)| {
                let id = id as usize;
                Some((self.table.get(id * dim..(id + 1) * dim)?, w))
            }));
            let blocks = dim / BLOCK;
            for (b, out) in out.chunks_exact_mut(BLOCK).enumerate() {
                let mut acc = [0f32; BLOCK];
                for &(row, w) in &rows {
                    if let Ok(src) = <&[f32; BLOCK]>::try_from(&row[b * BLOCK..(b + 1) * BLOCK]) {
                        for (a, &v) in acc.iter_mut().zip(src) {
                            *a += w * v;
                        }
                    }
                }
                out.copy_from_slice(&acc);
            }
            let tail = blocks * BLOCK;
            for o in &mut out[tail..] {
                *o = 0.0;
            }
            for &(row, w) in &rows {
                for (o, &v) in out[tail..].iter_mut().zip(&row[tail..]) {
                    *o += w * v;
                }
            }
        }
    }
}

/// The backward pass: `d_table[id] += w · d_out[t]` (when wanted) and
/// `d_w[t,p] = ⟨d_out[t], table[id]⟩`.
struct BagBackward<'a> {
    table: &'a [f32],
    dim: usize,
    ids: &'a [u32],
    weights: &'a [f32],
    d_out: &'a [f32],
    d_table: Option<&'a mut [f32]>,
    d_weights: &'a mut [f32],
}

impl Kernel for BagBackward<'_> {
    #[inline(always)]
    fn run(self) {
        let dim = self.dim;
        let per_token = self.ids.len() / (self.d_out.len() / dim).max(1);
        let mut d_table = self.d_table;
        for (t, d_out) in self.d_out.chunks_exact(dim).enumerate() {
            let picks = t * per_token..(t + 1) * per_token;
            for ((&id, &w), d_w) in self.ids[picks.clone()]
                .iter()
                .zip(&self.weights[picks.clone()])
                .zip(&mut self.d_weights[picks])
            {
                let rows = id as usize * dim..(id as usize + 1) * dim;
                let Some(row) = self.table.get(rows.clone()) else {
                    continue;
                };
                // Sixteen partial sums so the dot product vectorises.
                let mut lanes = [0f32; 16];
                let mut chunks = row.chunks_exact(16).zip(d_out.chunks_exact(16));
                for (r, g) in &mut chunks {
                    for ((l, &a), &b) in lanes.iter_mut().zip(r).zip(g) {
                        *l += a * b;
                    }
                }
                let tail: f32 = row[dim / 16 * 16..]
                    .iter()
                    .zip(&d_out[dim / 16 * 16..])
                    .map(|(a, b)| a * b)
                    .sum();
                *d_w = lanes.iter().sum::<f32>() + tail;
                if let Some(grad) = d_table.as_deref_mut().and_then(|d| d.get_mut(rows)) {
                    for (g, &d) in grad.iter_mut().zip(d_out) {
                        *g += w * d;
                    }
                }
            }
        }
    }
}

/// The differentiable embedding bag: `table (N, dim)` and `weights (T, P)`
/// to `(T, dim)`, with the `(T, P)` value ids fixed in the op (they come
/// from the non-differentiable top-k selection).
pub(crate) struct EmbeddingBag {
    ids: Arc<[u32]>,
}

impl EmbeddingBag {
    /// An op reading rows `ids` (`T·P`, row-major `(T, P)`).
    pub fn new(ids: Vec<u32>) -> Self {
        Self { ids: ids.into() }
    }

    fn check(&self, rows: usize, weights: &[usize]) -> candle_core::Result<()> {
        let (t, p) = match weights {
            &[t, p] => (t, p),
            other => candle_core::bail!("embedding bag weights must be (T, P), got {other:?}"),
        };
        if t * p != self.ids.len() {
            candle_core::bail!(
                "embedding bag: {} ids for ({t}, {p}) weights",
                self.ids.len()
            );
        }
        if let Some(&bad) = self.ids.iter().find(|&&id| id as usize >= rows) {
            candle_core::bail!("embedding bag: id {bad} outside a table of {rows} rows");
        }
        Ok(())
    }
}

/// A contiguous f32 view of a CPU storage.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("embedding bag: {what} must be a contiguous f32 tensor"),
    }
}

impl CustomOp2 for EmbeddingBag {
    fn name(&self) -> &'static str {
        "embedding-bag"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, dim) = l1.shape().dims2()?;
        self.check(rows, l2.dims())?;
        let table = f32_slice(s1, l1, "the table")?;
        let weights = f32_slice(s2, l2, "the weights")?;
        let tokens = l2.dims()[0];
        let mut out = vec![0f32; tokens * dim];
        bag_sum(table, dim, &self.ids, weights, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((tokens, dim))))
    }

    fn bwd(
        &self,
        table: &Tensor,
        weights: &Tensor,
        _out: &Tensor,
        d_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, dim) = table.dims2()?;
        let to_candle = |e: crate::LmError| candle_core::Error::Msg(e.to_string());
        let w = weights.flatten_all()?.to_vec1::<f32>()?;
        let d_out_host = d_out.flatten_all()?.to_vec1::<f32>()?;
        // The table's gradient is dense in candle (PITFALLS); skip it when
        // the table is a constant.
        let mut d_table = table.track_op().then(|| vec![0f32; rows * dim]);
        let mut d_w = vec![0f32; w.len()];
        let read: Result<()> = with_host_f32(table, |table| {
            vectorized(BagBackward {
                table,
                dim,
                ids: &self.ids,
                weights: &w,
                d_out: &d_out_host,
                d_table: d_table.as_deref_mut(),
                d_weights: &mut d_w,
            })
        });
        read.map_err(to_candle)?;
        let d_table = d_table
            .map(|d| Tensor::from_vec(d, (rows, dim), table.device()))
            .transpose()?;
        let d_w = Tensor::from_vec(d_w, weights.shape(), weights.device())?;
        Ok((d_table, Some(d_w)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// The op against the same sum written with candle ops (`index_select`
    /// and a batched product), values and gradients, with repeated ids.
    #[test]
    fn matches_index_select_forward_and_backward() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (rows, dim, tokens, per) = (10, 70, 3, 4); // 70: a 64-block and a tail
        let mut rng = crate::rng::SplitMix64::new(9);
        let table = Var::from_tensor(&rng.normal_tensor((rows, dim), 1.0, &dev)?)?;
        let weights = Var::from_tensor(&rng.normal_tensor((tokens, per), 1.0, &dev)?)?;
        let ids: Vec<u32> = vec![1, 4, 4, 9, 0, 2, 3, 1, 7, 7, 7, 5];
        let probe = rng.normal_tensor((tokens, dim), 1.0, &dev)?;

        let ours = table
            .as_tensor()
            .apply_op2(weights.as_tensor(), EmbeddingBag::new(ids.clone()))?;
        let index = Tensor::new(ids.as_slice(), &dev)?;
        let reference = weights.as_tensor().reshape((tokens, 1, per))?.matmul(
            &table
                .as_tensor()
                .index_select(&index, 0)?
                .reshape((tokens, per, dim))?,
        )?;
        let reference = reference.reshape((tokens, dim))?;
        let close = |a: &Tensor, b: &Tensor| -> candle_core::Result<f32> {
            (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
        };
        assert!(close(&ours, &reference)? < 1e-5);

        let g1 = (&ours * &probe)?.sum_all()?.backward()?;
        let g2 = (&reference * &probe)?.sum_all()?.backward()?;
        for var in [&table, &weights] {
            let (a, b) = (g1.get(var.as_tensor()), g2.get(var.as_tensor()));
            let (Some(a), Some(b)) = (a, b) else {
                panic!("missing gradient");
            };
            assert!(close(a, b)? < 1e-4, "gradient differs");
        }
        // An id outside the table is refused, not read.
        let bad = EmbeddingBag::new(vec![10; tokens * per]);
        assert!(table
            .as_tensor()
            .apply_op2(weights.as_tensor(), bad)
            .is_err());
        Ok(())
    }
}
