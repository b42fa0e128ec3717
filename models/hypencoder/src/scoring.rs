//! Fast inference scoring: every document of a matrix, or a chosen subset of
//! its rows, under each q-net of a batch.
//!
//! Per hidden layer the work is one `(n×h)·(h×h)` matrix product over a
//! block of documents, `2·h²` flops per document and layer, and that is
//! where the time goes: at h = 384, L = 4 one thread scored ~70,000
//! documents/s at ~83 GFLOP/s (AVX2 FMA), 1.45 s per query for 100,000.
//! Everything else, bias, ReLU, the affine-free layer norm and the
//! residual, is one in-place pass over the product's fresh output
//! (`Epilogue`) instead of seven allocating tensor ops; with mimalloc
//! that saved only ~6% over the differentiable form, with glibc's
//! allocator ~40%.
//!
//! Documents are scored in blocks of [`BLOCK_ROWS`], all queries per block,
//! so one block's activations stay in cache while every q-net reads it, and
//! memory stays at a few blocks whatever the number of documents (the
//! differentiable form holds several `N×h` activations). The q-nets are
//! detached first: inference never records a gradient graph.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, DType, InplaceOp3, Layout, Tensor};

use crate::error::{HypencoderError, Result};
use crate::qnet::QNets;

/// Documents per block. 256–1024 measured within 3% of each other at
/// h = 384 (`examples/score_throughput.rs`), 4096 ~5% slower: a 512 × 384
/// block is 768 KiB per activation, about one core's L2 cache.
pub const BLOCK_ROWS: usize = 512;

/// One query's q-net, as views into the batch's tensors.
struct QueryNet {
    /// `L` × `(h, h)`.
    weights: Vec<Tensor>,
    /// `L` × `(h,)`.
    biases: Vec<Tensor>,
    /// `(h, 1)`.
    output: Tensor,
}

impl QNets {
    /// Scores of all `N` documents in `docs` (`(N, h)` f32) under each
    /// q-net: one `Vec` of `N` scores per query, in document order.
    pub fn score(&self, docs: &Tensor) -> Result<Vec<Vec<f32>>> {
        self.score_blocked(docs, BLOCK_ROWS)
    }

    /// [`QNets::score`] with `block_rows` documents per block instead of
    /// [`BLOCK_ROWS`], to tune the block size on another machine.
    pub fn score_blocked(&self, docs: &Tensor, block_rows: usize) -> Result<Vec<Vec<f32>>> {
        let n = self.check_docs(docs)?;
        let docs = docs.detach();
        self.score_each_block(n, block_rows, |start, len| Ok(docs.narrow(0, start, len)?))
    }

    /// Scores of the documents at `rows` of `docs` (`(N, h)` f32) under each
    /// q-net, in the order of `rows`: what graph search needs to score one
    /// round of candidates in a batch.
    pub fn score_rows(&self, docs: &Tensor, rows: &[u32]) -> Result<Vec<Vec<f32>>> {
        let n = self.check_docs(docs)?;
        if let Some(&bad) = rows.iter().find(|&&r| r as usize >= n) {
            return Err(HypencoderError::InvalidInput(format!(
                "row {bad} out of {n} documents"
            )));
        }
        if rows.is_empty() {
            return Ok(vec![Vec::new(); self.len()]);
        }
        let index = Tensor::from_slice(rows, rows.len(), docs.device())?;
        self.score(&docs.detach().index_select(&index, 0)?)
    }

    /// [`QNets::score`] over documents held in a plain row-major slice
    /// (`n × h` f32, `rows.len()` a multiple of `h`), as an index keeps them:
    /// each block of at most [`BLOCK_ROWS`] rows is copied into a tensor of
    /// its own, so the caller never builds one `n × h` tensor (a second copy
    /// of its whole matrix). The copy is ~0.1% of a block's work.
    pub fn score_slice(&self, rows: &[f32]) -> Result<Vec<Vec<f32>>> {
        let n = self.check_slice(rows)?;
        let h = self.width();
        let device = self.output.device().clone();
        self.score_each_block(n, BLOCK_ROWS, |start, len| {
            Ok(Tensor::from_slice(
                &rows[start * h..(start + len) * h],
                (len, h),
                &device,
            )?)
        })
    }

    /// Scores of the rows `which` of `rows` (row-major `n × h` f32) under
    /// each q-net, in the order of `which`: [`QNets::score_rows`] for a plain
    /// slice. The chosen rows are packed block by block, so memory stays at
    /// one block whatever `which` holds. This is what graph search calls once
    /// per round with that round's candidates.
    pub fn score_gathered(&self, rows: &[f32], which: &[u32]) -> Result<Vec<Vec<f32>>> {
        let n = self.check_slice(rows)?;
        if let Some(&bad) = which.iter().find(|&&r| r as usize >= n) {
            return Err(HypencoderError::InvalidInput(format!(
                "row {bad} out of {n} documents"
            )));
        }
        let h = self.width();
        let device = self.output.device().clone();
        self.score_each_block(which.len(), BLOCK_ROWS, |start, len| {
            let mut block = Vec::with_capacity(len * h);
            for &r in &which[start..start + len] {
                let r = r as usize;
                block.extend_from_slice(&rows[r * h..(r + 1) * h]);
            }
            Ok(Tensor::from_vec(block, (len, h), &device)?)
        })
    }

    /// Runs every q-net over `n` documents, `block_rows` at a time, where
    /// `block(start, len)` yields documents `start..start + len` as a
    /// `(len, h)` tensor.
    fn score_each_block(
        &self,
        n: usize,
        block_rows: usize,
        mut block: impl FnMut(usize, usize) -> Result<Tensor>,
    ) -> Result<Vec<Vec<f32>>> {
        let block_rows = block_rows.max(1);
        let nets = self.per_query()?;
        let _span = tracing::debug_span!("qnet_score", queries = nets.len(), docs = n).entered();
        let mut scores: Vec<Vec<f32>> = vec![Vec::with_capacity(n); nets.len()];
        let mut start = 0;
        while start < n {
            let len = block_rows.min(n - start);
            let docs = block(start, len)?;
            for (net, out) in nets.iter().zip(&mut scores) {
                out.extend(self.score_block(net, &docs)?);
            }
            start += len;
        }
        Ok(scores)
    }

    /// The number of `h`-wide rows in `rows`.
    fn check_slice(&self, rows: &[f32]) -> Result<usize> {
        let h = self.width();
        if h == 0 || !rows.len().is_multiple_of(h) {
            return Err(HypencoderError::InvalidInput(format!(
                "document slice of {} floats is not a whole number of {h}-wide rows",
                rows.len()
            )));
        }
        Ok(rows.len() / h)
    }

    fn check_docs(&self, docs: &Tensor) -> Result<usize> {
        let h = self.width();
        match docs.dims() {
            [n, w] if *w == h && docs.dtype() == DType::F32 => Ok(*n),
            dims => Err(HypencoderError::InvalidInput(format!(
                "documents must be (N, {h}) f32, got {dims:?} {:?}",
                docs.dtype()
            ))),
        }
    }

    /// Detached, contiguous per-query views.
    fn per_query(&self) -> Result<Vec<QueryNet>> {
        let h = self.width();
        (0..self.len())
            .map(|q| {
                Ok(QueryNet {
                    weights: self
                        .weights
                        .iter()
                        .map(|w| w.detach().get(q)?.contiguous())
                        .collect::<candle_core::Result<_>>()?,
                    biases: self
                        .biases
                        .iter()
                        .map(|b| b.detach().get(q)?.contiguous())
                        .collect::<candle_core::Result<_>>()?,
                    output: self.output.detach().get(q)?.reshape((h, 1))?,
                })
            })
            .collect()
    }

    /// One q-net over one block of documents `(n, h)`.
    fn score_block(&self, net: &QueryNet, block: &Tensor) -> Result<Vec<f32>> {
        let last = net.weights.len() - 1;
        let mut x = block.clone();
        for (j, (w, b)) in net.weights.iter().zip(&net.biases).enumerate() {
            // `y` is the product's fresh output, shared with nothing.
            let y = x.matmul(w)?;
            let epilogue = Epilogue {
                eps: self.eps as f32,
                residual: self.residual && j < last,
            };
            y.inplace_op3(b, &x, &epilogue)?;
            x = y;
        }
        Ok(x.matmul(&net.output)?.flatten_all()?.to_vec1()?)
    }
}

/// `y ← LayerNorm(ReLU(y + b)) (+ x)`, row by row, in place on `y`.
struct Epilogue {
    eps: f32,
    residual: bool,
}

/// The contiguous f32 slice of a tensor's storage.
fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("qnet epilogue: input must be contiguous");
    };
    match storage {
        CpuStorage::F32(data) => Ok(&data[start..end]),
        other => bail!("qnet epilogue: only f32, got {:?}", other.dtype()),
    }
}

impl InplaceOp3 for Epilogue {
    fn name(&self) -> &'static str {
        "mnemos-qnet-epilogue"
    }

    fn cpu_fwd(
        &self,
        y: &mut CpuStorage,
        y_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
        x: &CpuStorage,
        x_layout: &Layout,
    ) -> candle_core::Result<()> {
        let bias = f32_slice(bias, bias_layout)?;
        let x = f32_slice(x, x_layout)?;
        let Some((start, end)) = y_layout.contiguous_offsets() else {
            bail!("qnet epilogue: output must be contiguous");
        };
        let CpuStorage::F32(y) = y else {
            bail!("qnet epilogue: only f32, got {:?}", y.dtype());
        };
        let y = &mut y[start..end];
        let h = bias.len();
        if h == 0 || y.len() != x.len() || y.len() % h != 0 {
            bail!("qnet epilogue: shapes do not match");
        }
        let inv_h = 1.0 / h as f32;
        for (row, x_row) in y.chunks_exact_mut(h).zip(x.chunks_exact(h)) {
            let mut sum = 0f32;
            for (v, b) in row.iter_mut().zip(bias) {
                *v = (*v + b).max(0.0);
                sum += *v;
            }
            let mean = sum * inv_h;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() * inv_h;
            let scale = 1.0 / (var + self.eps).sqrt();
            if self.residual {
                for (v, xv) in row.iter_mut().zip(x_row) {
                    *v = (*v - mean) * scale + xv;
                }
            } else {
                for v in row.iter_mut() {
                    *v = (*v - mean) * scale;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use crate::{Hypencoder, HypencoderConfig, QNets, QueryStates};

    const H: usize = 16;

    /// Three q-nets and `n` documents, more than two blocks' worth.
    fn setup(n: usize) -> (QNets, Vec<f32>, Tensor) {
        let model = Hypencoder::new(HypencoderConfig::new(H, 2), 3).unwrap();
        let dev = Device::Cpu;
        let mut rng = mnemos_models_core::rng::SplitMix64::new(6);
        let states = rng.normal_tensor((3, 4, H), 0.5, &dev).unwrap();
        let mask = Tensor::ones((3, 4), DType::F32, &dev).unwrap();
        let qnets = model
            .generate(&QueryStates::new(states, mask).unwrap())
            .unwrap();
        let docs = rng.normal_tensor((n, H), 0.3, &dev).unwrap();
        let flat = docs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (qnets, flat, docs)
    }

    fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.len(), y.len());
            for (u, v) in x.iter().zip(y) {
                assert!((u - v).abs() <= 1e-4 * (1.0 + v.abs()), "{u} vs {v}");
            }
        }
    }

    #[test]
    fn score_slice_matches_score() {
        let n = 2 * super::BLOCK_ROWS + 77;
        let (qnets, flat, docs) = setup(n);
        assert_close(
            &qnets.score_slice(&flat).unwrap(),
            &qnets.score(&docs).unwrap(),
        );
    }

    #[test]
    fn score_gathered_matches_score_in_the_order_given() {
        let n = 2 * super::BLOCK_ROWS + 77;
        let (qnets, flat, docs) = setup(n);
        let all = qnets.score(&docs).unwrap();
        // More rows than one block, repeats and any order.
        let which: Vec<u32> = (0..1300u32).map(|i| (i * 7919) % n as u32).collect();
        let expected: Vec<Vec<f32>> = all
            .iter()
            .map(|q| which.iter().map(|&r| q[r as usize]).collect())
            .collect();
        assert_close(&qnets.score_gathered(&flat, &which).unwrap(), &expected);
        let empty = qnets.score_gathered(&flat, &[]).unwrap();
        assert!(empty.len() == 3 && empty.iter().all(Vec::is_empty));
    }

    #[test]
    fn slices_of_the_wrong_shape_are_rejected() {
        let (qnets, flat, _) = setup(10);
        assert!(qnets.score_slice(&flat[..H + 1]).is_err());
        assert!(qnets.score_gathered(&flat, &[10]).is_err());
        assert!(qnets.score_gathered(&flat[..3], &[0]).is_err());
    }
}
