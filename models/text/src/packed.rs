//! Linear layers whose weights are packed once, at load, for the matrix
//! product kernel that reads them.
//!
//! candle's `Linear` hands gemm the weight `(out, in)` as a transposed
//! right-hand side, and gemm copies ("packs") the whole of it into panels
//! on every call. With a few hundred rows per call that copy is small next
//! to the product, but a search query is one text of ~10–40 tokens: for
//! MiniLM's 384×1536 feed-forward weight, the copy then costs as much as
//! the multiply-adds (a profile of batch-1 embedding put ~45% of the time
//! in packing).
//!
//! [`FastLinear`] packs the weight into panels of [`COLUMNS`] output
//! features, input-major, so a panel row is two AVX vectors. The kernel
//! keeps a tile of [`ROWS`] × [`COLUMNS`] outputs in twelve registers and
//! walks the input dimension once: per step two panel loads, six
//! broadcasts and twelve fused multiply-adds. CPUs without AVX2 and FMA
//! (and other architectures) keep candle's `Linear`, computing the same
//! values up to float rounding. One call uses rayon's threads for inputs of
//! many rows, like gemm did, and one thread otherwise.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Module, Result, Shape, Tensor};
use candle_nn::Linear;
use rayon::prelude::*;

/// Output features per panel: two 8-float vectors.
const COLUMNS: usize = 16;
/// Input rows per register tile.
const ROWS: usize = 6;
/// Input rows per pass over all the panels. Those rows stay in L2 while
/// every panel streams past them: 48 × 1536 floats is 295 KB.
const ROW_BLOCK: usize = 8 * ROWS;

/// `y = x·Wᵀ + b` over the last dimension of `x`.
pub(crate) struct FastLinear {
    kind: Kind,
}

enum Kind {
    Packed(Packed),
    Candle(Linear),
}

impl FastLinear {
    /// `weight` is `(out, in)` and `bias` `(out)`, as PyTorch stores them.
    pub fn new(weight: Tensor, bias: Tensor) -> Result<Self> {
        let (n, k) = weight.dims2()?;
        if bias.dims1()? != n {
            bail!("bias of {} for {n} outputs", bias.dims1()?);
        }
        if k == 0 {
            bail!("a linear layer needs at least one input");
        }
        let kind = if simd::available() {
            let w = weight.flatten_all()?.to_vec1::<f32>()?;
            let b = bias.to_vec1::<f32>()?;
            Kind::Packed(Packed::pack(&w, &b, n, k))
        } else {
            Kind::Candle(Linear::new(weight, Some(bias)))
        };
        Ok(Self { kind })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.kind {
            Kind::Packed(packed) => xs.contiguous()?.apply_op1_no_bwd(packed),
            Kind::Candle(linear) => linear.forward(xs),
        }
    }
}

/// A weight in panels, and its bias padded to whole panels.
struct Packed {
    /// `(panels, k, COLUMNS)`: panel `p`, input `d`, column `c` holds
    /// `W[p·COLUMNS + c, d]`; columns past `n` are zero.
    panels: Vec<f32>,
    bias: Vec<f32>,
    /// Outputs.
    n: usize,
    /// Inputs.
    k: usize,
}

impl Packed {
    fn pack(weight: &[f32], bias: &[f32], n: usize, k: usize) -> Self {
        let count = n.div_ceil(COLUMNS);
        let mut panels = vec![0f32; count * k * COLUMNS];
        for (j, row) in weight.chunks_exact(k).take(n).enumerate() {
            let panel = &mut panels[(j / COLUMNS) * k * COLUMNS..][..k * COLUMNS];
            for (d, &w) in row.iter().enumerate() {
                panel[d * COLUMNS + j % COLUMNS] = w;
            }
        }
        let mut padded = bias.to_vec();
        padded.resize(count * COLUMNS, 0.0);
        Self {
            panels,
            bias: padded,
            n,
            k,
        }
    }

    /// `out (m, n) = x (m, k)·Wᵀ + b`, row-major.
    fn apply(&self, x: &[f32], out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let m = x.len() / k;
        assert!(
            x.len() == m * k && out.len() == m * n,
            "shapes checked by the op"
        );
        // Rows are cut into tiles of near-equal height (20 rows: 5+5+5+5,
        // not 6+6+6+2): a short tile has too few independent multiply-add
        // chains to hide their latency.
        let tiles = m.div_ceil(ROWS);
        let bound = |t: usize| m * t / tiles;
        for first_tile in (0..tiles).step_by(ROW_BLOCK / ROWS) {
            let last_tile = (first_tile + ROW_BLOCK / ROWS).min(tiles);
            for (p, panel) in self.panels.chunks_exact(k * COLUMNS).enumerate() {
                let bias = &self.bias[p * COLUMNS..][..COLUMNS];
                let first = p * COLUMNS;
                let cols = COLUMNS.min(n - first);
                for t in first_tile..last_tile {
                    let (row, end) = (bound(t), bound(t + 1));
                    let tile = simd::tile(&x[row * k..end * k], k, panel, bias);
                    for (i, values) in tile.iter().take(end - row).enumerate() {
                        out[(row + i) * n + first..][..cols].copy_from_slice(&values[..cols]);
                    }
                }
            }
        }
    }
}

impl CustomOp1 for Packed {
    fn name(&self) -> &'static str {
        "mnemos-packed-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("packed linear: input must be contiguous");
        };
        let CpuStorage::F32(data) = storage else {
            bail!("packed linear: only f32 is supported");
        };
        let mut dims = layout.shape().dims().to_vec();
        match dims.last_mut() {
            Some(last) if *last == self.k => *last = self.n,
            _ => bail!(
                "packed linear: input {:?} does not end in {} features",
                layout.shape(),
                self.k
            ),
        }
        let x = &data[start..end];
        let mut out = vec![0f32; x.len() / self.k * self.n];
        let rows = x.len() / self.k;
        if rayon::current_num_threads() > 1 && rows >= 2 * ROW_BLOCK && self.n > 0 {
            // Rows are independent: with more than one thread (training
            // runs with every core; serving with one per worker), blocks
            // of rows go to rayon's pool, as gemm would have split them.
            out.par_chunks_mut(ROW_BLOCK * self.n)
                .zip(x.par_chunks(ROW_BLOCK * self.k))
                .for_each(|(out, x)| self.apply(x, out));
        } else {
            self.apply(x, &mut out);
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::{
        __m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_storeu_ps,
    };

    use super::{COLUMNS, ROWS};

    /// Whether this CPU runs the kernel below (std caches the answer).
    pub fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// One register tile: rows of `x` (`x.len() / k` of them, 1 to
    /// [`ROWS`]) against one panel, plus the bias. Rows past the input's
    /// come back as zeros.
    pub fn tile(x: &[f32], k: usize, panel: &[f32], bias: &[f32]) -> [[f32; COLUMNS]; ROWS] {
        assert!(available(), "FastLinear packs only where the kernel runs");
        assert!(panel.len() == k * COLUMNS && bias.len() == COLUMNS && k > 0);
        // SAFETY: the CPU has AVX2 and FMA (asserted); each arm passes at
        // least `R` rows of `k` inputs (`x.len() >= R·k`), a panel of `k`
        // rows of COLUMNS and COLUMNS biases (asserted), which is all that
        // `tile_rows` reads.
        unsafe {
            match x.len() / k {
                6 => tile_rows::<6>(x, k, panel, bias),
                5 => tile_rows::<5>(x, k, panel, bias),
                4 => tile_rows::<4>(x, k, panel, bias),
                3 => tile_rows::<3>(x, k, panel, bias),
                2 => tile_rows::<2>(x, k, panel, bias),
                1 => tile_rows::<1>(x, k, panel, bias),
                rows => unreachable!("{rows} rows in a tile"),
            }
        }
    }

    /// # Safety
    /// AVX2 and FMA; `x.len() >= R·k`, `panel.len() >= k·COLUMNS`,
    /// `bias.len() >= COLUMNS`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_rows<const R: usize>(
        x: &[f32],
        k: usize,
        panel: &[f32],
        bias: &[f32],
    ) -> [[f32; COLUMNS]; ROWS] {
        debug_assert!(x.len() >= R * k && panel.len() >= k * COLUMNS && bias.len() >= COLUMNS);
        let (xp, wp) = (x.as_ptr(), panel.as_ptr());
        // SAFETY (all pointer reads below): within the lengths above.
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_ps(bias.as_ptr()),
                _mm256_loadu_ps(bias.as_ptr().add(8)),
            )
        };
        let mut lo: [__m256; R] = [b0; R];
        let mut hi: [__m256; R] = [b1; R];
        for d in 0..k {
            let (w0, w1) = unsafe {
                (
                    _mm256_loadu_ps(wp.add(d * COLUMNS)),
                    _mm256_loadu_ps(wp.add(d * COLUMNS + 8)),
                )
            };
            for r in 0..R {
                let a = _mm256_set1_ps(unsafe { *xp.add(r * k + d) });
                lo[r] = _mm256_fmadd_ps(a, w0, lo[r]);
                hi[r] = _mm256_fmadd_ps(a, w1, hi[r]);
            }
        }
        let mut out = [[0f32; COLUMNS]; ROWS];
        for r in 0..R {
            let (left, right) = out[r].split_at_mut(8);
            // SAFETY: `left` and `right` are eight writable floats each.
            unsafe {
                _mm256_storeu_ps(left.as_mut_ptr(), lo[r]);
                _mm256_storeu_ps(right.as_mut_ptr(), hi[r]);
            }
        }
        out
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use super::{COLUMNS, ROWS};

    pub fn available() -> bool {
        false
    }

    pub fn tile(_: &[f32], _: usize, _: &[f32], _: &[f32]) -> [[f32; COLUMNS]; ROWS] {
        unreachable!("FastLinear packs only where the kernel runs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use mnemos_models_core::rng::SplitMix64;

    /// Uniform in (−1, 1), drawn from `seed`.
    fn random<S: Into<candle_core::Shape>>(shape: S, seed: u64, device: &Device) -> Result<Tensor> {
        SplitMix64::new(seed).uniform_tensor(shape, 1.0, device)
    }

    /// Against candle's `Linear`, for shapes that leave partial tiles,
    /// partial row blocks and a partial last panel.
    #[test]
    fn matches_candle_linear() -> Result<()> {
        let device = Device::Cpu;
        for (batch, seq, k, n) in [
            (1, 1, 384, 384),
            (1, 13, 384, 1536),
            (2, 29, 1536, 384),
            (3, 7, 5, 21),
            (1, 100, 64, 1152),
            (4, 1, 1, 1),
            (1, 2, 384, 40),
            (1, 3, 384, 40),
            (2, 3, 2, 0),
        ] {
            let w = random((n, k), 1, &device)?;
            let b = random(n, 2, &device)?;
            let x = random((batch, seq, k), 3, &device)?;
            let want = Linear::new(w.clone(), Some(b.clone())).forward(&x)?;
            let got = FastLinear::new(w, b)?.forward(&x)?;
            assert_eq!(got.dims(), want.dims());
            let worst = (got - want)?
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .fold(0f32, |m, d| m.max(d.abs()));
            assert!(
                worst < 1e-4 * (k as f32).sqrt(),
                "{batch}x{seq}x{k}->{n}: {worst}"
            );
        }
        Ok(())
    }

    /// Many rows on a pool of two threads: blocks of rows run in parallel.
    #[test]
    fn parallel_rows_match_candle_linear() -> Result<()> {
        let device = Device::Cpu;
        let (m, k, n) = (301, 64, 40);
        let w = random((n, k), 7, &device)?;
        let b = random(n, 8, &device)?;
        let x = random((m, k), 9, &device)?;
        let want = Linear::new(w.clone(), Some(b.clone())).forward(&x)?;
        let layer = FastLinear::new(w, b)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .map_err(candle_core::Error::wrap)?;
        let got = pool.install(|| layer.forward(&x))?;
        let worst = (got - want)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .fold(0f32, |m, d| m.max(d.abs()));
        assert!(worst < 1e-4, "{worst}");
        Ok(())
    }

    #[test]
    fn refuses_the_wrong_width() -> Result<()> {
        let device = Device::Cpu;
        let layer = FastLinear::new(
            Tensor::zeros((4, 3), candle_core::DType::F32, &device)?,
            Tensor::zeros(4, candle_core::DType::F32, &device)?,
        )?;
        let x = Tensor::zeros((2, 5), candle_core::DType::F32, &device)?;
        assert!(layer.forward(&x).is_err());
        Ok(())
    }

    #[test]
    fn strided_inputs_are_made_contiguous() -> Result<()> {
        let device = Device::Cpu;
        let w = random((8, 6), 4, &device)?;
        let b = random(8, 5, &device)?;
        let x = random((6, 9), 6, &device)?.t()?;
        let want = Linear::new(w.clone(), Some(b.clone())).forward(&x)?;
        let got = FastLinear::new(w, b)?.forward(&x)?;
        let worst = (got - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(worst < 1e-5, "{worst}");
        Ok(())
    }
}
