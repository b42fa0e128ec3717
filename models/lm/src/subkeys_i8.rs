//! Sub-key scoring in eight bits: keys and queries quantised to `i8`,
//! multiplied in 32-bit integers (AVX-512 VNNI where the CPU has it).
//!
//! Why: scoring every sub-key is the part of a lookup that grows with √N
//! (`H·d_k·n` multiply-adds per token). In f16 ([`crate::subkeys`]) it
//! runs at the core's f32 multiply-add rate, and at n = 1024 its 1 MB of
//! keys no longer stays in a 1 MB L2. Eight-bit keys are half the bytes
//! (512 KB at n = 1024), and `vpdpbusd` does 64 multiply-adds per
//! instruction, four times an f32 FMA's 16.
//!
//! What it costs: the scores are those of the quantised keys and query,
//! not the f16 ones, so near-ties among sub-keys may be picked in another
//! order. Keys are quantised per sub-key (`k ≈ s_j · k8`, `s_j` its
//! largest magnitude / 127), each query half per token (`q ≈ s_q · q8`),
//! both rounded to nearest: relative errors of about 0.4% per entry.
//! Opt-in ([`crate::KeyPrecision::Int8`]); the f16 path stays the exact
//! reference. The integer products are exact, and the portable loop does
//! the same integer and float operations as the vector kernel, so both
//! give bit-identical scores.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, so the query enters as
//! `q8 + 128` and each sub-key's `128 · Σ_d k8` is subtracted after.

use std::ops::Range;

use crate::error::{LmError, Result};

/// Sub-keys per block: one 512-bit vector of 32-bit sums.
const COLUMNS: usize = 16;
/// Key dimensions per 32-bit lane of `vpdpbusd`.
const DEPTH: usize = 4;
/// Blocks scored together by the vector kernel.
const WIDE: usize = 4;

/// The sub-keys of every query half in `i8`, blocked for
/// [`Int8Keys::score`].
#[derive(Debug)]
pub(crate) struct Int8Keys {
    /// `(halves, blocks, groups, COLUMNS, DEPTH)`: for each group of four
    /// key dimensions, the sixteen sub-keys' four bytes side by side (the
    /// operand layout of `vpdpbusd`). Padding (dimensions past `width`,
    /// sub-keys past `n`) is zero.
    data: Vec<i8>,
    /// `(halves, blocks · COLUMNS)`: each sub-key's scale.
    scale: Vec<f32>,
    /// `(halves, blocks · COLUMNS)`: `128 · Σ_d k8`.
    offset: Vec<i32>,
    halves: usize,
    width: usize,
    n: usize,
}

impl Int8Keys {
    /// Packs keys `(halves, width, n)` row-major. Non-finite keys are
    /// refused.
    pub fn pack(keys: &[f32], halves: usize, width: usize, n: usize) -> Result<Self> {
        if keys.len() != halves * width * n {
            return Err(LmError::InvalidInput(format!(
                "{} keys for {halves} x {width} x {n}",
                keys.len()
            )));
        }
        if let Some(bad) = keys.iter().find(|k| !k.is_finite()) {
            return Err(LmError::InvalidInput(format!(
                "sub-key {bad} is not finite"
            )));
        }
        let (blocks, groups) = (n.div_ceil(COLUMNS), width.div_ceil(DEPTH));
        let padded = blocks * COLUMNS;
        let mut data = vec![0i8; halves * blocks * groups * COLUMNS * DEPTH];
        let mut scale = vec![0f32; halves * padded];
        let mut offset = vec![0i32; halves * padded];
        for h in 0..halves {
            let key = |d: usize, j: usize| keys[(h * width + d) * n + j];
            for j in 0..n {
                let max = (0..width).fold(0f32, |m, d| m.max(key(d, j).abs()));
                let s = max / 127.0;
                scale[h * padded + j] = s;
                let (b, c) = (j / COLUMNS, j % COLUMNS);
                let mut sum = 0i32;
                for d in 0..width {
                    let k8 = if s > 0.0 {
                        (key(d, j) / s).round().clamp(-127.0, 127.0) as i8
                    } else {
                        0
                    };
                    sum += i32::from(k8);
                    let (g, lane) = (d / DEPTH, d % DEPTH);
                    let at = (((h * blocks + b) * groups + g) * COLUMNS + c) * DEPTH + lane;
                    data[at] = k8;
                }
                offset[h * padded + j] = 128 * sum;
            }
        }
        Ok(Self {
            data,
            scale,
            offset,
            halves,
            width,
            n,
        })
    }

    /// Sub-keys per half (`n`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// `scores[h, t, j] ≈ Σ_d queries[t, h, d] · key[h, d, j]` for queries
    /// `(T, halves·width)` into `scores` `(halves, T, n)`, row-major.
    #[cfg(test)]
    pub fn score(&self, queries: &[f32], scores: &mut [f32]) {
        self.score_halves(queries, 0..self.halves, scores);
    }

    /// [`Int8Keys::score`] for the query halves in `range` only, into
    /// `scores` `(range.len(), T, n)`.
    pub fn score_halves(&self, queries: &[f32], range: Range<usize>, scores: &mut [f32]) {
        self.score_with(queries, range, scores, vnni::available());
    }

    /// [`Int8Keys::score_halves`], by the vector kernel only when `fast`
    /// (and the CPU has it). Whole blocks are written in place; only a
    /// last partial block goes through a buffer.
    fn score_with(&self, queries: &[f32], range: Range<usize>, scores: &mut [f32], fast: bool) {
        let (halves, width, n) = (self.halves, self.width, self.n);
        let row = halves * width;
        if row == 0 || n == 0 {
            return;
        }
        let tokens = queries.len() / row;
        debug_assert_eq!(scores.len(), range.len() * tokens * n, "one score per key");
        let (blocks, groups) = (n.div_ceil(COLUMNS), width.div_ceil(DEPTH));
        let block_len = groups * COLUMNS * DEPTH;
        let padded = blocks * COLUMNS;
        let fast = fast && vnni::available();
        // One query half as `groups` words of four unsigned bytes.
        let mut words = vec![0u32; groups];
        let mut last = [0f32; COLUMNS];
        for (slot, h) in range.enumerate() {
            let packed = &self.data[h * blocks * block_len..][..blocks * block_len];
            let scale = &self.scale[h * padded..][..padded];
            let offset = &self.offset[h * padded..][..padded];
            for t in 0..tokens {
                let q = &queries[t * row + h * width..][..width];
                let sq = quantise(q, &mut words);
                let out = &mut scores[(slot * tokens + t) * n..][..n];
                let mut b = 0;
                while b < blocks {
                    let whole = (b + 1) * COLUMNS <= n;
                    let take = if fast && whole && (b + WIDE) * COLUMNS <= n {
                        WIDE
                    } else {
                        1
                    };
                    let cols = b * COLUMNS..(b + take) * COLUMNS;
                    let dest = if whole {
                        &mut out[cols.clone()]
                    } else {
                        &mut last[..]
                    };
                    let keys = &packed[b * block_len..];
                    let (scale, offset) = (&scale[cols.clone()], &offset[cols]);
                    if fast {
                        // SAFETY: `available` found AVX-512F and VNNI; the
                        // slices hold `take` blocks.
                        #[allow(unsafe_code)]
                        unsafe {
                            if take == WIDE {
                                vnni::blocks::<WIDE>(&words, keys, scale, offset, sq, dest)
                            } else {
                                vnni::blocks::<1>(&words, keys, scale, offset, sq, dest)
                            }
                        };
                    } else {
                        block_portable(&words, &keys[..block_len], scale, offset, sq, dest);
                    }
                    if !whole {
                        out[b * COLUMNS..].copy_from_slice(&last[..n - b * COLUMNS]);
                    }
                    b += take;
                }
            }
        }
    }
}

/// Quantises one query half into `words` (four `q8 + 128` bytes each,
/// zero-padded past the half: 128, which the zero key padding cancels)
/// and returns its scale.
fn quantise(q: &[f32], words: &mut [u32]) -> f32 {
    // `f32::max` skips NaN, so NaN is looked for apart: a query with NaN
    // or an infinity scores NaN everywhere (as on the f16 path), which
    // the top-k ranks last.
    let max = q.iter().fold(0f32, |m, v| m.max(v.abs()));
    let s = if max.is_finite() && !q.iter().any(|v| v.is_nan()) {
        max / 127.0
    } else {
        f32::NAN
    };
    // A scale too small to invert (a query below ~1e-37) counts as zero.
    let inv = if s.is_normal() { 1.0 / s } else { 0.0 };
    for (g, word) in words.iter_mut().enumerate() {
        let mut bytes = [128u8; DEPTH];
        for (lane, byte) in bytes.iter_mut().enumerate() {
            if let Some(&v) = q.get(g * DEPTH + lane) {
                // Round half away from zero by truncation: `f32::round`
                // is a libm call on baseline x86-64, 512 per token.
                let x = (v * inv).clamp(-127.0, 127.0);
                let q8 = (x + 0.5f32.copysign(x)) as i32;
                *byte = (q8 + 128) as u8;
            }
        }
        *word = u32::from_le_bytes(bytes);
    }
    s
}

/// The scores of one block, as [`vnni::blocks`] computes them.
fn block_portable(
    words: &[u32],
    block: &[i8],
    scale: &[f32],
    offset: &[i32],
    sq: f32,
    out: &mut [f32],
) {
    let mut acc = [0i32; COLUMNS];
    for (&word, keys) in words.iter().zip(block.chunks_exact(COLUMNS * DEPTH)) {
        let q = word.to_le_bytes();
        for (a, k) in acc.iter_mut().zip(keys.chunks_exact(DEPTH)) {
            *a += (0..DEPTH)
                .map(|l| i32::from(q[l]) * i32::from(k[l]))
                .sum::<i32>();
        }
    }
    for c in 0..COLUMNS {
        out[c] = ((acc[c] - offset[c]) as f32) * (sq * scale[c]);
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod vnni {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi32, _mm512_cvtepi32_ps, _mm512_dpbusd_epi32, _mm512_loadu_ps,
        _mm512_loadu_si512, _mm512_mul_ps, _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_si512,
        _mm512_storeu_ps, _mm512_sub_epi32,
    };

    use super::{COLUMNS, DEPTH};

    /// Whether this CPU runs [`block`] (std caches the answer).
    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni")
    }

    /// The scores of `B` consecutive blocks (`16·B` sub-keys). Each block
    /// has two accumulators taking alternate dimension groups, so `2B`
    /// independent `vpdpbusd` chains hide the instruction's latency.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX-512 VNNI ([`available`]);
    /// `blocks` holds `B` blocks of `words.len()` groups, `scale` and
    /// `offset` `16·B` entries, `out` `16·B` floats.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn blocks<const B: usize>(
        words: &[u32],
        blocks: &[i8],
        scale: &[f32],
        offset: &[i32],
        sq: f32,
        out: &mut [f32],
    ) {
        let step = COLUMNS * DEPTH;
        let block_len = words.len() * step;
        debug_assert!(blocks.len() >= B * block_len && out.len() >= B * COLUMNS);
        let mut even = [_mm512_setzero_si512(); B];
        let mut odd = [_mm512_setzero_si512(); B];
        // SAFETY (all loads and stores below): the offsets stay inside the
        // slices the caller sized; no alignment needed.
        let load = |b: usize, g: usize| unsafe {
            _mm512_loadu_si512(
                blocks
                    .as_ptr()
                    .add(b * block_len + g * step)
                    .cast::<__m512i>(),
            )
        };
        let mut g = 0;
        while g + 1 < words.len() {
            let (w0, w1) = (
                _mm512_set1_epi32(words[g] as i32),
                _mm512_set1_epi32(words[g + 1] as i32),
            );
            for (b, (e, o)) in even.iter_mut().zip(&mut odd).enumerate() {
                *e = _mm512_dpbusd_epi32(*e, w0, load(b, g));
                *o = _mm512_dpbusd_epi32(*o, w1, load(b, g + 1));
            }
            g += 2;
        }
        if g < words.len() {
            let w = _mm512_set1_epi32(words[g] as i32);
            for (b, acc) in even.iter_mut().enumerate() {
                *acc = _mm512_dpbusd_epi32(*acc, w, load(b, g));
            }
        }
        let q = _mm512_set1_ps(sq);
        for (b, (even, odd)) in even.into_iter().zip(odd).enumerate() {
            unsafe {
                let sum = _mm512_add_epi32(even, odd);
                let off = _mm512_loadu_si512(offset.as_ptr().add(b * COLUMNS).cast::<__m512i>());
                let s = _mm512_mul_ps(q, _mm512_loadu_ps(scale.as_ptr().add(b * COLUMNS)));
                let dot = _mm512_cvtepi32_ps(_mm512_sub_epi32(sum, off));
                _mm512_storeu_ps(out.as_mut_ptr().add(b * COLUMNS), _mm512_mul_ps(dot, s));
            }
        }
    }
}

/// Elsewhere the portable loop always runs.
#[cfg(not(target_arch = "x86_64"))]
#[allow(unsafe_code)]
mod vnni {
    pub fn available() -> bool {
        false
    }

    pub unsafe fn blocks<const B: usize>(
        _words: &[u32],
        _blocks: &[i8],
        _scale: &[f32],
        _offset: &[i32],
        _sq: f32,
        _out: &mut [f32],
    ) {
        unreachable!("never available off x86-64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        SplitMix64::new(seed).uniform_vec(len, 1.0)
    }

    /// Close to the f32 scores (within the quantisation error), for shapes
    /// with partial blocks and dimension groups.
    #[test]
    fn scores_are_close_to_the_f32_definition() -> Result<()> {
        for (tokens, halves, width, n) in [(1, 8, 64, 1024), (3, 2, 5, 70), (2, 1, 3, 17)] {
            let queries = random(tokens * halves * width, 1);
            let keys = random(halves * width * n, 2);
            let packed = Int8Keys::pack(&keys, halves, width, n)?;
            let mut got = vec![f32::NAN; halves * tokens * n];
            packed.score(&queries, &mut got);
            for h in 0..halves {
                for t in 0..tokens {
                    let q = &queries[t * halves * width + h * width..][..width];
                    for j in 0..n {
                        let want: f32 = (0..width)
                            .map(|d| q[d] * keys[(h * width + d) * n + j])
                            .sum();
                        let norm: f32 = (0..width).map(|d| q[d].abs()).sum();
                        let g = got[(h * tokens + t) * n + j];
                        // Each product is off by at most ~1/127 of its
                        // factors' ranges, here 1.
                        assert!((g - want).abs() <= 0.02 * norm.max(1.0), "{g} vs {want}");
                    }
                }
            }
        }
        Ok(())
    }

    /// The vector kernel and the portable loop give the same bits.
    #[test]
    fn vector_kernel_matches_the_portable_loop() -> Result<()> {
        if !vnni::available() {
            return Ok(());
        }
        for width in [64, 7, 1] {
            let n = 16;
            let keys = random(width * n, 3);
            let packed = Int8Keys::pack(&keys, 1, width, n)?;
            let mut words = vec![0u32; width.div_ceil(DEPTH)];
            let sq = quantise(&random(width, 4), &mut words);
            let (mut fast, mut slow) = ([0f32; COLUMNS], [0f32; COLUMNS]);
            // SAFETY: checked above.
            #[allow(unsafe_code)]
            unsafe {
                vnni::blocks::<1>(
                    &words,
                    &packed.data,
                    &packed.scale,
                    &packed.offset,
                    sq,
                    &mut fast,
                )
            };
            block_portable(
                &words,
                &packed.data,
                &packed.scale,
                &packed.offset,
                sq,
                &mut slow,
            );
            assert_eq!(
                fast.map(f32::to_bits),
                slow.map(f32::to_bits),
                "width {width}"
            );
        }
        Ok(())
    }

    /// The whole scoring, vector kernel against portable loop, where the
    /// kernel scores four blocks at once and then a last partial one.
    #[test]
    fn wide_and_portable_scores_are_identical() -> Result<()> {
        let (tokens, halves, width, n) = (3, 2, 64, 5 * COLUMNS + 3);
        let packed = Int8Keys::pack(&random(halves * width * n, 6), halves, width, n)?;
        let queries = random(tokens * halves * width, 7);
        let (mut fast, mut slow) = (
            vec![0f32; halves * tokens * n],
            vec![1f32; halves * tokens * n],
        );
        packed.score_with(&queries, 0..halves, &mut fast, true);
        packed.score_with(&queries, 0..halves, &mut slow, false);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&slow));
        Ok(())
    }

    #[test]
    fn bad_keys_and_queries() -> Result<()> {
        assert!(Int8Keys::pack(&[1.0, f32::INFINITY], 1, 1, 2).is_err());
        assert!(Int8Keys::pack(&[1.0], 1, 1, 2).is_err());
        // All-zero keys and query: scores 0, not NaN.
        let packed = Int8Keys::pack(&[0.0; 8], 1, 4, 2)?;
        let mut s = [f32::NAN; 2];
        packed.score(&[0.0; 4], &mut s);
        assert_eq!(s, [0.0, 0.0]);
        // A NaN in the query: NaN scores, as the f16 path gives.
        let packed = Int8Keys::pack(&[0.5; 8], 1, 4, 2)?;
        packed.score(&[1.0, f32::NAN, 0.0, 0.0], &mut s);
        assert!(s.iter().all(|v| v.is_nan()), "{s:?}");
        Ok(())
    }
}
