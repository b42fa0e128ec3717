//! Sub-key scoring for inference from a packed f16 copy of the keys.
//!
//! Scoring the query halves against the sub-keys is the part of a lookup
//! that grows with √N (`H·d_k·n` multiply-adds per token, and every key
//! read once per token while decoding), so it decides how the layer
//! scales. Measured per token at n = 1024, one thread (2.45 GHz EPYC,
//! AVX2), for the scoring alone:
//! - candle's batched `matmul` on the `(2H, d_k/2, n)` key tensor: with
//!   one row per batch gemm first packs the whole right-hand side, a copy
//!   of all 2 MB of keys, on every call;
//! - a host loop over that tensor in place: 55 µs. A block of columns
//!   walks rows `4n` bytes apart, which share cache sets;
//! - f32 keys packed in blocks of [`COLUMNS`] sub-keys with their rows
//!   contiguous: 41 µs, bound by streaming 2 MB from L3;
//! - the same blocks in f16, widened by F16C as they load: 22 µs.
//!
//! So [`PackedKeys`] holds f16 keys, copied once for frozen weights. That
//! loses nothing for a model saved in f16, as `mnemos train lm` saves them
//! (an f32 or bf16 checkpoint's keys are rounded to f16); the scores
//! accumulate in f32. CPUs without AVX2, FMA and F16C get a portable loop
//! with the same scores up to rounding (~1e-6).

use std::ops::Range;

use crate::error::{LmError, Result};
use crate::subkeys_i8::Int8Keys;

/// The precision sub-keys are scored in at inference
/// ([`crate::MemoryLayer::pack_keys_as`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyPrecision {
    /// f16 keys, f32 queries and sums: the scores of an f16 checkpoint,
    /// exactly.
    #[default]
    F16,
    /// Keys and queries quantised to eight bits, integer sums
    /// ([`crate::subkeys_i8`]): half the bytes and a quarter of the
    /// instructions, at ~0.4% error per entry.
    Int8,
}

/// A packed copy of a layer's sub-keys, in either precision.
#[derive(Debug)]
pub(crate) enum Packed {
    F16(PackedKeys),
    Int8(Int8Keys),
}

impl Packed {
    /// Packs keys `(halves, width, n)` row-major.
    pub fn pack(
        keys: &[f32],
        halves: usize,
        width: usize,
        n: usize,
        precision: KeyPrecision,
    ) -> Result<Self> {
        Ok(match precision {
            KeyPrecision::F16 => Self::F16(PackedKeys::pack(keys, halves, width, n)?),
            KeyPrecision::Int8 => Self::Int8(Int8Keys::pack(keys, halves, width, n)?),
        })
    }

    /// Sub-keys per half.
    pub fn n(&self) -> usize {
        match self {
            Self::F16(k) => k.n(),
            Self::Int8(k) => k.n(),
        }
    }

    /// Scores `(range.len(), T, n)` of queries `(T, halves·width)` for the
    /// halves in `range`.
    pub fn score_halves(&self, queries: &[f32], range: Range<usize>, scores: &mut [f32]) {
        match self {
            Self::F16(k) => k.score_halves(queries, range, scores),
            Self::Int8(k) => k.score_halves(queries, range, scores),
        }
    }
}

/// Sub-keys per packed block: four 8-float vectors per token.
const COLUMNS: usize = 32;

/// The sub-keys of every query half in f16, blocked for
/// [`PackedKeys::score`].
#[derive(Debug)]
pub(crate) struct PackedKeys {
    /// `(halves, blocks, width, COLUMNS)` f16 bit patterns; columns past
    /// `n` in the last block are zero.
    data: Vec<u16>,
    halves: usize,
    width: usize,
    n: usize,
}

impl PackedKeys {
    /// Packs keys `(halves, width, n)` row-major, rounded to f16. Keys
    /// outside f16's finite range are refused.
    pub fn pack(keys: &[f32], halves: usize, width: usize, n: usize) -> Result<Self> {
        if keys.len() != halves * width * n {
            return Err(LmError::InvalidInput(format!(
                "{} keys for {halves} x {width} x {n}",
                keys.len()
            )));
        }
        let max = f32::from(half::f16::MAX);
        if let Some(bad) = keys.iter().find(|k| k.is_nan() || k.abs() > max) {
            return Err(LmError::InvalidInput(format!(
                "sub-key {bad} is outside the f16 range"
            )));
        }
        let blocks = n.div_ceil(COLUMNS);
        let mut data = vec![0u16; halves * blocks * width * COLUMNS];
        for h in 0..halves {
            for d in 0..width {
                let row = &keys[(h * width + d) * n..][..n];
                for (j, &k) in row.iter().enumerate() {
                    let at = ((h * blocks + j / COLUMNS) * width + d) * COLUMNS + j % COLUMNS;
                    data[at] = half::f16::from_f32(k).to_bits();
                }
            }
        }
        Ok(Self {
            data,
            halves,
            width,
            n,
        })
    }

    /// Sub-keys per half (`n`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// `scores[h, t, j] = Σ_d queries[t, h, d] · key[h, d, j]` for queries
    /// `(T, halves·width)` into `scores` `(halves, T, n)`, row-major.
    pub fn score(&self, queries: &[f32], scores: &mut [f32]) {
        self.score_halves(queries, 0..self.halves, scores);
    }

    /// [`PackedKeys::score`] for the query halves in `range` only, into
    /// `scores` `(range.len(), T, n)`.
    pub fn score_halves(&self, queries: &[f32], range: Range<usize>, scores: &mut [f32]) {
        let (halves, width, n) = (self.halves, self.width, self.n);
        let row = halves * width;
        if row == 0 || n == 0 {
            return;
        }
        let tokens = queries.len() / row;
        debug_assert_eq!(queries.len(), tokens * row, "whole query rows");
        debug_assert_eq!(scores.len(), range.len() * tokens * n, "one score per key");
        let block_len = width * COLUMNS;
        let blocks = n.div_ceil(COLUMNS);
        let fast = simd::available();
        for (slot, h) in range.enumerate() {
            let packed = &self.data[h * blocks * block_len..(h + 1) * blocks * block_len];
            let out = &mut scores[slot * tokens * n..(slot + 1) * tokens * n];
            let query = |t: usize| &queries[t * row + h * width..][..width];
            let mut first = 0;
            while first < tokens {
                // Two tokens share each key vector loaded. (Three, with 12
                // accumulators, spilled registers: 27 against 62 GFLOP/s.)
                let group = if fast { (tokens - first).min(2) } else { 1 };
                let q = |g: usize| query(first + g);
                let out = &mut out[first * n..];
                for (b, block) in packed.chunks_exact(block_len).enumerate() {
                    let (at, cols) = (b * COLUMNS, COLUMNS.min(n - b * COLUMNS));
                    let none = [0f32; COLUMNS];
                    // SAFETY: the vector kernels run only where `available`
                    // found AVX2, FMA and F16C (`fast`).
                    #[allow(unsafe_code)]
                    let acc = match (fast, group) {
                        (true, 2) => {
                            let (a0, a1) = unsafe { simd::dot_two(q(0), q(1), block) };
                            [a0, a1]
                        }
                        (true, _) => [unsafe { simd::dot_one(q(0), block) }, none],
                        (false, _) => [dot(q(0), block), none],
                    };
                    for (g, a) in acc.iter().take(group).enumerate() {
                        out[g * n + at..g * n + at + cols].copy_from_slice(&a[..cols]);
                    }
                }
                first += group;
            }
        }
    }
}

/// One query's scores against one block's [`COLUMNS`] sub-keys: the
/// portable loop.
fn dot(q: &[f32], block: &[u16]) -> [f32; COLUMNS] {
    let mut acc = [0f32; COLUMNS];
    for (keys, &x) in block.chunks_exact(COLUMNS).zip(q) {
        for (a, &k) in acc.iter_mut().zip(keys) {
            *a += x * f32::from(half::f16::from_bits(k));
        }
    }
    acc
}

/// The block products with AVX2, FMA and F16C: each row of eight f16 keys
/// is widened by one instruction as it loads.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::{
        __m128i, __m256, _mm256_add_ps, _mm256_cvtph_ps, _mm256_fmadd_ps, _mm256_set1_ps,
        _mm256_setzero_ps, _mm256_storeu_ps, _mm_loadu_si128,
    };

    use super::COLUMNS;

    /// Vectors of eight per block row.
    const VECTORS: usize = COLUMNS / 8;

    /// Whether this CPU runs the kernels below (std caches the answer).
    pub fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    /// The eight keys of `row` from `v * 8`, widened to f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn load(row: &[u16], v: usize) -> __m256 {
        let eight = &row[v * 8..v * 8 + 8];
        // SAFETY: `eight` holds exactly the 16 bytes read; the load has no
        // alignment requirement.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(eight.as_ptr().cast::<__m128i>()) })
    }

    /// The accumulators as floats.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn store(acc: [__m256; VECTORS]) -> [f32; COLUMNS] {
        let mut out = [0f32; COLUMNS];
        for (chunk, v) in out.chunks_exact_mut(8).zip(acc) {
            // SAFETY: `chunk` is eight writable floats; no alignment needed.
            unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), v) }
        }
        out
    }

    /// One query's scores against one block. Even and odd rows go to
    /// separate accumulators: eight multiply-add chains in flight rather
    /// than four each waiting on its last.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C ([`available`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_one(q: &[f32], block: &[u16]) -> [f32; COLUMNS] {
        let mut even = [_mm256_setzero_ps(); VECTORS];
        let mut odd = [_mm256_setzero_ps(); VECTORS];
        let mut rows = block.chunks_exact(2 * COLUMNS).zip(q.chunks_exact(2));
        for (keys, x) in &mut rows {
            let (x0, x1) = (_mm256_set1_ps(x[0]), _mm256_set1_ps(x[1]));
            let (k0, k1) = keys.split_at(COLUMNS);
            for v in 0..VECTORS {
                even[v] = _mm256_fmadd_ps(x0, load(k0, v), even[v]);
                odd[v] = _mm256_fmadd_ps(x1, load(k1, v), odd[v]);
            }
        }
        let width = block.len() / COLUMNS;
        if width % 2 == 1 {
            let keys = &block[(width - 1) * COLUMNS..];
            let x = _mm256_set1_ps(q[width - 1]);
            for (v, acc) in even.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(x, load(keys, v), *acc);
            }
        }
        store(std::array::from_fn(|v| _mm256_add_ps(even[v], odd[v])))
    }

    /// Two queries' scores against one block, each key vector loaded once.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C ([`available`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_two(
        q0: &[f32],
        q1: &[f32],
        block: &[u16],
    ) -> ([f32; COLUMNS], [f32; COLUMNS]) {
        let mut a0 = [_mm256_setzero_ps(); VECTORS];
        let mut a1 = [_mm256_setzero_ps(); VECTORS];
        for ((keys, &x0), &x1) in block.chunks_exact(COLUMNS).zip(q0).zip(q1) {
            let (x0, x1) = (_mm256_set1_ps(x0), _mm256_set1_ps(x1));
            for v in 0..VECTORS {
                let k = load(keys, v);
                a0[v] = _mm256_fmadd_ps(x0, k, a0[v]);
                a1[v] = _mm256_fmadd_ps(x1, k, a1[v]);
            }
        }
        (store(a0), store(a1))
    }
}

/// Elsewhere the portable loop always runs (`unsafe` only to match the
/// x86 signatures).
#[cfg(not(target_arch = "x86_64"))]
#[allow(unsafe_code)]
mod simd {
    pub fn available() -> bool {
        false
    }

    pub unsafe fn dot_one(q: &[f32], block: &[u16]) -> [f32; super::COLUMNS] {
        super::dot(q, block)
    }

    pub unsafe fn dot_two(
        q0: &[f32],
        q1: &[f32],
        block: &[u16],
    ) -> ([f32; super::COLUMNS], [f32; super::COLUMNS]) {
        (super::dot(q0, block), super::dot(q1, block))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        SplitMix64::new(seed).uniform_vec(len, 1.0)
    }

    /// Against the textbook triple loop over the f16-rounded keys, for
    /// shapes that leave partial token groups and a partial last block.
    #[test]
    fn scores_match_the_definition() -> Result<()> {
        for (tokens, halves, width, n) in [
            (1, 8, 64, 1024),
            (11, 2, 5, 70),
            (3, 1, 1, 1),
            (2, 1, 3, 33),
        ] {
            let queries = random(tokens * halves * width, 1);
            let keys = random(halves * width * n, 2);
            let packed = PackedKeys::pack(&keys, halves, width, n)?;
            let mut fast = vec![f32::NAN; halves * tokens * n];
            packed.score(&queries, &mut fast);
            let rounded = |x: f32| f32::from(half::f16::from_f32(x));
            for h in 0..halves {
                for t in 0..tokens {
                    for j in 0..n {
                        let want: f32 = (0..width)
                            .map(|d| {
                                queries[t * halves * width + h * width + d]
                                    * rounded(keys[(h * width + d) * n + j])
                            })
                            .sum();
                        let got = fast[(h * tokens + t) * n + j];
                        assert!((got - want).abs() < 1e-4, "{h} {t} {j}: {got} vs {want}");
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn keys_outside_the_f16_range_or_of_the_wrong_length_are_refused() {
        assert!(PackedKeys::pack(&[1.0, 7e4], 1, 1, 2).is_err());
        assert!(PackedKeys::pack(&[1.0, f32::NAN], 1, 1, 2).is_err());
        assert!(PackedKeys::pack(&[1.0], 1, 1, 2).is_err());
    }

    /// The vector kernels and the portable loop agree (where the CPU runs
    /// the former; elsewhere only the portable loop exists).
    #[test]
    fn vector_kernels_match_the_portable_loop() {
        if !simd::available() {
            return;
        }
        for width in [64, 5] {
            let block: Vec<u16> = random(width * COLUMNS, 3)
                .into_iter()
                .map(|k| half::f16::from_f32(k).to_bits())
                .collect();
            let q = [random(width, 4), random(width, 5)];
            let want = q.each_ref().map(|q| dot(q, &block));
            // SAFETY: checked above.
            #[allow(unsafe_code)]
            let (one, two) = unsafe {
                (
                    simd::dot_one(&q[0], &block),
                    simd::dot_two(&q[0], &q[1], &block),
                )
            };
            for (got, query) in [(one, 0), (two.0, 0), (two.1, 1)] {
                for (c, (g, w)) in got.iter().zip(&want[query]).enumerate() {
                    assert!(
                        (g - w).abs() < 1e-4,
                        "width {width}, query {query}, {c}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
