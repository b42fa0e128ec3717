//! The two passes over a row of sub-key scores that the top-k filter
//! makes ([`crate::topk`]), in AVX-512 where the CPU has it.
//!
//! Written as plain loops, the compiler kept the running group maxima in
//! memory, updated by masked stores that the next row's loads then
//! waited on, and built the `>=` bit masks half in scalar code. Together
//! the two passes cost about 4 µs of a 52 µs token at n = 1024 (perf,
//! Zen 4). Here the maxima stay in a register down the whole row and each
//! comparison of sixteen scores is one instruction into a mask register.
//! Both passes give exactly the portable loops' results (NaN never wins a
//! maximum and never passes `>=`), so callers fall back to those loops
//! when [`group_maxima`] or [`keep_at_least`] returns `false`.

/// Scores per vector.
const LANES: usize = 16;

/// Writes the maxima of `maxima.len()` strided groups of `row` (group `j`
/// holds the indices `≡ j (mod maxima.len())`; −∞ for an empty group)
/// and returns `true`, or returns `false` and writes nothing where this
/// CPU or group count is not served here.
pub(crate) fn group_maxima(row: &[f32], maxima: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() && maxima.len().is_multiple_of(LANES) && !maxima.is_empty() {
        // SAFETY: `available` found AVX-512F on this CPU.
        #[allow(unsafe_code)]
        unsafe {
            avx512::group_maxima(row, maxima)
        };
        return true;
    }
    let _ = (row, maxima);
    false
}

/// Pushes `key_of_number(v, i)` ([`crate::topk`]'s sort key) for every
/// score `v = row[i] >= threshold` onto `out`, in index order, and returns
/// `true`; or returns `false` and pushes nothing where this CPU is not
/// served here.
pub(crate) fn keep_at_least(row: &[f32], threshold: f32, out: &mut Vec<u64>) -> bool {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: `available` found AVX-512F on this CPU.
        #[allow(unsafe_code)]
        unsafe {
            avx512::keep_at_least(row, threshold, out)
        };
        return true;
    }
    let _ = (row, threshold, out);
    false
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::arch::x86_64::{
        __m512, _mm512_loadu_ps, _mm512_mask_loadu_ps, _mm512_max_ps, _mm512_set1_ps,
        _mm512_storeu_ps, _CMP_GE_OQ,
    };

    use super::LANES;

    /// Whether this CPU runs the kernels below (std caches the answer).
    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// The up to sixteen floats of `row` from `at` (−∞ in lanes past its
    /// end), and how many there were.
    ///
    /// # Safety
    /// AVX-512F; `at < row.len()`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load(row: &[f32], at: usize) -> (__m512, usize) {
        debug_assert!(at < row.len());
        let len = (row.len() - at).min(LANES);
        let ptr = row[at..].as_ptr();
        // SAFETY: the first `len` floats from `ptr` are in bounds; a
        // masked load does not read the lanes masked off.
        let v = unsafe {
            if len == LANES {
                _mm512_loadu_ps(ptr)
            } else {
                let mask = ((1u32 << len) - 1) as u16;
                _mm512_mask_loadu_ps(_mm512_set1_ps(f32::NEG_INFINITY), mask, ptr)
            }
        };
        (v, len)
    }

    /// See [`super::group_maxima`]; `maxima.len()` a non-zero multiple of
    /// 16.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn group_maxima(row: &[f32], maxima: &mut [f32]) {
        let groups = maxima.len();
        for (tile, out) in maxima.chunks_exact_mut(LANES).enumerate() {
            let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
            let mut at = tile * LANES;
            while at < row.len() {
                // SAFETY: `at < row.len()`.
                let (v, _) = unsafe { load(row, at) };
                // `max(v, m)` returns `m` where `v` is NaN: NaN never wins.
                m = _mm512_max_ps(v, m);
                at += groups;
            }
            // SAFETY: `out` is sixteen writable floats.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), m) };
        }
    }

    /// See [`super::keep_at_least`].
    ///
    /// Branch-free: a branch per surviving score (about 40 of 1,024, at
    /// random places) mispredicted on most of them. Each sixteen scores
    /// become sixteen sort keys in two vectors of eight, and a compress
    /// packs the survivors to the front of each, stored at the end of
    /// `out`'s spare room; what lies past the survivors is overwritten by
    /// the next store or cut off by the final length.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn keep_at_least(row: &[f32], threshold: f32, out: &mut Vec<u64>) {
        use std::arch::x86_64::{
            __m256i, _mm512_add_epi32, _mm512_castps_si512, _mm512_castsi512_si256,
            _mm512_cmp_ps_mask, _mm512_cvtepu32_epi64, _mm512_extracti64x4_epi64,
            _mm512_maskz_compress_epi64, _mm512_or_si512, _mm512_set1_epi32, _mm512_setr_epi32,
            _mm512_slli_epi64, _mm512_srai_epi32, _mm512_storeu_si512, _mm512_xor_si512,
        };
        let t = _mm512_set1_ps(threshold);
        // Room for every score plus one vector of spill past the last.
        out.reserve(row.len() + 8);
        let base = out.len();
        let mut kept = 0;
        let mut index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let sixteen = _mm512_set1_epi32(LANES as i32);
        let (top, ones) = (_mm512_set1_epi32(i32::MIN), _mm512_set1_epi32(-1));
        let mut at = 0;
        while at < row.len() {
            // SAFETY: `at < row.len()`. The −∞ filling lanes past the row
            // passes a −∞ threshold, so those lanes are masked off below.
            let (v, len) = unsafe { load(row, at) };
            let live = if len == LANES {
                u16::MAX
            } else {
                ((1u32 << len) - 1) as u16
            };
            // Ordered `>=`: false for NaN.
            let mask = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, t) & live;
            // `key_of_number`: the float's bits mapped onto unsigned order
            // (negative: all bits flipped; positive: the sign bit set),
            // then reversed, in the high half; the index in the low.
            let bits = _mm512_castps_si512(v);
            let flip = _mm512_or_si512(_mm512_srai_epi32::<31>(bits), top);
            let high = _mm512_xor_si512(_mm512_xor_si512(bits, flip), ones);
            for half in 0..2 {
                let (h, i): (__m256i, __m256i) = if half == 0 {
                    (_mm512_castsi512_si256(high), _mm512_castsi512_si256(index))
                } else {
                    (
                        _mm512_extracti64x4_epi64::<1>(high),
                        _mm512_extracti64x4_epi64::<1>(index),
                    )
                };
                let keys = _mm512_or_si512(
                    _mm512_slli_epi64::<32>(_mm512_cvtepu32_epi64(h)),
                    _mm512_cvtepu32_epi64(i),
                );
                let m = (mask >> (8 * half)) as u8;
                // SAFETY: `kept + 8 <= row.len() + 8` entries of spare room
                // were reserved; only initialised entries are kept below.
                unsafe {
                    let dst = out.as_mut_ptr().add(base + kept);
                    _mm512_storeu_si512(dst.cast(), _mm512_maskz_compress_epi64(m, keys));
                }
                kept += m.count_ones() as usize;
            }
            index = _mm512_add_epi32(index, sixteen);
            at += LANES;
        }
        // SAFETY: the first `kept` entries past `base` were written above.
        unsafe { out.set_len(base + kept) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// The portable definitions both kernels must match bit for bit.
    fn maxima_by_loop(row: &[f32], groups: usize) -> Vec<f32> {
        let mut m = vec![f32::NEG_INFINITY; groups];
        for (i, &v) in row.iter().enumerate() {
            if v > m[i % groups] {
                m[i % groups] = v;
            }
        }
        m
    }

    use crate::topk::key_of_number as key;

    #[test]
    fn wide_passes_match_the_loops_on_awkward_rows() {
        for (len, groups) in [
            (1024, 64),
            (1000, 64),
            (256, 64),
            (70, 64),
            (5, 16),
            (0, 32),
        ] {
            let mut row = SplitMix64::new(len as u64).uniform_vec(len, 1.0);
            for i in (3..len).step_by(11) {
                row[i] = f32::NAN;
            }
            if len > 1 {
                row[1] = f32::NEG_INFINITY;
            }
            let mut m = vec![0f32; groups];
            if !group_maxima(&row, &mut m) {
                return; // no AVX-512 here: the loops run instead
            }
            let want = maxima_by_loop(&row, groups);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&m), bits(&want), "maxima, len {len}");
            for threshold in [0.25, -0.9, f32::NEG_INFINITY, 2.0] {
                let mut got = Vec::new();
                assert!(keep_at_least(&row, threshold, &mut got));
                let want: Vec<u64> = (0u32..)
                    .zip(&row)
                    .filter(|(_, &v)| v >= threshold)
                    .map(|(i, &v)| key(v, i))
                    .collect();
                assert_eq!(got, want, "kept, len {len}, threshold {threshold}");
            }
        }
    }
}
