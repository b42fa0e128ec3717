//! Host-side top-k selection for product-key lookups (SPECS §4).
//!
//! candle has no `topk`; `arg_sort` would sort all `n` scores of every
//! half when only the best `k` are wanted. The lookup instead reads the
//! (detached) sub-key scores on the host, picks the best `k` of each half
//! in linear time, and the best `k` of their `k²` pair sums from the
//! `~k·ln k` pairs that can qualify; the differentiable scores are then
//! `gather`ed at the chosen indices (see `pkm.rs`). The result is the
//! exact top-k over all `n²` keys: a pair outside both halves' top-k is
//! beaten by at least `k` pairs that are inside.

use mnemos_models_core::simd::{vectorized, Kernel};

use crate::topk_wide;

/// A sort key for `(score, index)`: ascending keys are descending scores
/// (in IEEE total order; NaN counts as −∞, so selection never panics on
/// bad input), ties broken by the lower index. Plain `u64` comparisons keep
/// the selections and sorts below branch-light and fast.
#[inline]
fn key(score: f32, index: u32) -> u64 {
    // NaN ranks with −∞, last: a broken score should never be read first.
    let score = if score.is_nan() {
        f32::NEG_INFINITY
    } else {
        score
    };
    key_of_number(score, index)
}

/// [`key`] for a score known not to be NaN.
#[inline(always)]
pub(crate) fn key_of_number(score: f32, index: u32) -> u64 {
    let bits = score.to_bits();
    // Map the float's total order onto unsigned order, then reverse it.
    let ordered = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    (u64::from(!ordered) << 32) | u64::from(index)
}

#[inline]
fn key_index(key: u64) -> u32 {
    key as u32
}

/// The `k` largest entries of `row` as sort keys (see [`key`]), best
/// first, into `out` (fewer when `row` is shorter); `maxima` is scratch.
///
/// No per-element sorting: a threshold keeps a few more than `k` scores,
/// then a linear-time selection and a sort of the `k` winners finish.
///
/// The threshold comes from the maxima of `G = 2k` groups of the row. The
/// groups are strided (group `j` holds the indices `≡ j (mod G)`), so
/// their maxima are one running element-wise maximum over rows of `G`
/// scores, with no per-group reduction.
/// - The smallest maximum is a *bound*: the `G ≥ k` maxima are distinct
///   elements at or above it, so at least `k` scores pass.
/// - The mean of the maxima is an *estimate* of their k-th largest (their
///   median), which is a far tighter bound but costs a selection. Filtered
///   by the estimate, a row whose survivors number at least `k` is
///   answered exactly from them; one with fewer (about 2% of Gaussian
///   rows) is filtered again by the bound.
///
/// Measured for Gaussian rows, `k = 32`: about 40 survivors, where the
/// smallest of `k` block maxima (the previous bound) let about 100
/// (`n = 256`) and 120 (`n = 1024`) through; selecting and sorting those
/// survivors was most of the time. Per token of a PKM layer (k = 32, H = 4,
/// d_k = 128, one thread, Zen 4; three interleaved runs of
/// `examples/pkm_lookup.rs`): 33.4 against 35.5 µs at n = 256, 52.5
/// against 54.6 µs at n = 1024.
fn top_k_keys(row: &[f32], k: usize, maxima: &mut Vec<f32>, out: &mut Vec<u64>) {
    vectorized(TopK {
        row,
        k,
        maxima,
        out,
    });
}

/// Groups per selected key in [`top_k_keys`]'s threshold.
const GROUPS_PER_K: usize = 2;

/// [`top_k_keys`] compiled for the widest vectors the CPU has
/// ([`vectorized`]): the group maxima and the filter's comparisons run 8
/// or 16 lanes wide instead of baseline SSE2's 4.
struct TopK<'a> {
    row: &'a [f32],
    k: usize,
    maxima: &'a mut Vec<f32>,
    out: &'a mut Vec<u64>,
}

impl Kernel for TopK<'_> {
    #[inline(always)]
    fn run(self) {
        let (row, out) = (self.row, self.out);
        out.clear();
        let k = self.k.min(row.len());
        if k == 0 {
            return;
        }
        let (estimate, bound) = thresholds(row, k, self.maxima);
        keep_at_least(row, estimate, out);
        if out.len() < k {
            out.clear();
            keep_at_least(row, bound, out);
        }
        if out.len() < k {
            // Only NaN scores (never `>=` anything) can be missing: rank
            // everything instead.
            out.clear();
            out.extend((0u32..).zip(row).map(|(i, &v)| key(v, i)));
        }
        if out.len() > k {
            out.select_nth_unstable(k - 1);
            out.truncate(k);
        }
        out.sort_unstable();
    }
}

/// The estimate and the bound of [`top_k_keys`] for a row of at least
/// `k ≥ 1` scores; both −∞ when the row is too short to split.
#[inline(always)]
fn thresholds(row: &[f32], k: usize, maxima: &mut Vec<f32>) -> (f32, f32) {
    let groups = GROUPS_PER_K * k;
    if row.len() < groups {
        return (f32::NEG_INFINITY, f32::NEG_INFINITY);
    }
    maxima.clear();
    maxima.resize(groups, f32::NEG_INFINITY);
    // NaN never wins a comparison, so it is never a maximum: a group of
    // NaN only has the maximum −∞, which makes the thresholds −∞ and lets
    // every other score pass.
    if !topk_wide::group_maxima(row, maxima) {
        for chunk in row.chunks(groups) {
            for (m, &v) in maxima.iter_mut().zip(chunk) {
                *m = if v > *m { v } else { *m };
            }
        }
    }
    let (mut sum, mut min) = ([0f32; 8], [f32::INFINITY; 8]);
    let mut eights = maxima.chunks_exact(8);
    for eight in &mut eights {
        for ((s, m), &v) in sum.iter_mut().zip(&mut min).zip(eight) {
            *s += v;
            *m = if v < *m { v } else { *m };
        }
    }
    let mut sum: f32 = sum.iter().sum();
    let mut min = min.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    for &v in eights.remainder() {
        sum += v;
        min = min.min(v);
    }
    (sum / groups as f32, min)
}

/// Appends the scores of `row` at or above `threshold` to `out` as sort
/// keys. The comparisons run sixteen at a time into a bit mask (they
/// vectorise), and only the set bits are visited: a branch per score would
/// mispredict often. NaN never passes `>=`.
#[inline(always)]
fn keep_at_least(row: &[f32], threshold: f32, out: &mut Vec<u64>) {
    if topk_wide::keep_at_least(row, threshold, out) {
        return;
    }
    let mut chunks = row.chunks_exact(16);
    let mut base = 0u32;
    for chunk in &mut chunks {
        let mut mask = 0u32;
        for (i, &v) in chunk.iter().enumerate() {
            mask |= u32::from(v >= threshold) << i;
        }
        while mask != 0 {
            let i = mask.trailing_zeros();
            out.push(key_of_number(chunk[i as usize], base + i));
            mask &= mask - 1;
        }
        base += 16;
    }
    for (i, &v) in (base..).zip(chunks.remainder()) {
        if v >= threshold {
            out.push(key_of_number(v, i));
        }
    }
}

/// The score a key was made from.
#[inline]
fn f32_of_key(key: u64) -> f32 {
    let ordered = !((key >> 32) as u32);
    let bits = if ordered >> 31 == 1 {
        ordered & 0x7FFF_FFFF
    } else {
        !ordered
    };
    f32::from_bits(bits)
}

/// The `k` largest entries of `row` as `(score, index)`, best first.
#[cfg(test)]
pub(crate) fn top_k(row: &[f32], k: usize) -> Vec<(f32, u32)> {
    let mut keys = Vec::new();
    top_k_keys(row, k, &mut Vec::new(), &mut keys);
    keys.iter()
        .map(|&k| (f32_of_key(k), key_index(k)))
        .collect()
}

/// One chosen key pair: sub-key `i` of the first half, `j` of the second,
/// and their summed score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pick {
    pub i: u32,
    pub j: u32,
    pub score: f32,
}

/// Reusable buffers for product-key selection, one per thread of work.
#[derive(Debug, Default)]
pub(crate) struct ProductTopK {
    first: Vec<u64>,
    second: Vec<u64>,
    pairs: Vec<u64>,
    maxima: Vec<f32>,
}

impl ProductTopK {
    /// The best `k` pairs `(i, j)` by `first[i] + second[j]`, best first,
    /// into `out`. Both slices have `n >= k` entries.
    ///
    /// With both halves' top-k sorted, the pair of ranks `(a, b)` is beaten
    /// or tied by every pair `(a' ≤ a, b' ≤ b)`: `(a+1)(b+1) − 1` others. So
    /// only pairs with `(a+1)(b+1) ≤ k` can be among the best `k` — about
    /// `k·ln k` of the `k²` (119 of 1,024 for k = 32) — and those are
    /// summed and selected.
    pub fn select(&mut self, first: &[f32], second: &[f32], k: usize, out: &mut Vec<Pick>) {
        top_k_keys(first, k, &mut self.maxima, &mut self.first);
        top_k_keys(second, k, &mut self.maxima, &mut self.second);
        out.clear();
        self.pairs.clear();
        let (a, b) = (&self.first, &self.second);
        let width = b.len().max(1);
        for (ra, &ka) in a.iter().enumerate() {
            let sa = f32_of_key(ka);
            let limit = (k / (ra + 1)).min(b.len());
            for (rb, &kb) in b[..limit].iter().enumerate() {
                self.pairs
                    .push(key(sa + f32_of_key(kb), (ra * width + rb) as u32));
            }
        }
        let k = k.min(self.pairs.len());
        if k == 0 {
            return;
        }
        if self.pairs.len() > k {
            self.pairs.select_nth_unstable(k - 1);
            self.pairs.truncate(k);
        }
        self.pairs.sort_unstable();
        out.extend(self.pairs.iter().map(|&pair| {
            let rank = key_index(pair) as usize;
            Pick {
                i: key_index(a[rank / width]),
                j: key_index(b[rank % width]),
                score: f32_of_key(pair),
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        SplitMix64::new(seed).uniform_vec(len, 0.5)
    }

    #[test]
    fn top_k_matches_a_full_sort() {
        for (len, k) in [(1000, 32), (40, 40), (5, 8), (300, 1), (17, 16)] {
            let row = random(len, len as u64);
            let out = top_k(&row, k);
            let mut all: Vec<(f32, u32)> = row
                .iter()
                .enumerate()
                .map(|(i, &v)| (v, i as u32))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0));
            all.truncate(k);
            assert_eq!(out, all, "len {len} k {k}");
        }
    }

    /// Rows where the estimate fails (a few huge scores lift the mean of
    /// the group maxima above all but one score) or meets NaN, −∞ and
    /// ties: still the exact top k, NaN last.
    #[test]
    fn top_k_is_exact_when_the_estimate_fails_or_scores_are_bad() {
        let rank = |row: &[f32], k: usize| {
            let mut all: Vec<(f32, u32)> = (0u32..).zip(row).map(|(i, &v)| (v, i)).collect();
            let of = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
            all.sort_by(|a, b| of(b.0).total_cmp(&of(a.0)).then(a.1.cmp(&b.1)));
            all.truncate(k);
            all
        };
        let same = |got: Vec<(f32, u32)>, want: Vec<(f32, u32)>, what: &str| {
            let ids = |v: &[(f32, u32)]| v.iter().map(|p| p.1).collect::<Vec<_>>();
            assert_eq!(ids(&got), ids(&want), "{what}");
        };
        let mut spiky = random(1024, 3);
        spiky[17] = 1e6;
        same(top_k(&spiky, 32), rank(&spiky, 32), "one huge score");
        let mut bad = random(1000, 4);
        for i in (0..1000).step_by(7) {
            bad[i] = f32::NAN;
        }
        bad[1] = f32::NEG_INFINITY;
        same(top_k(&bad, 32), rank(&bad, 32), "NaN and -inf");
        let mut ties = vec![0.25f32; 512];
        ties[300] = 0.5;
        same(top_k(&ties, 32), rank(&ties, 32), "ties to the lower index");
        let nan = vec![f32::NAN; 256];
        assert_eq!(top_k(&nan, 32).len(), 32, "all NaN still fills k");
    }

    #[test]
    fn bad_scores_do_not_panic_and_still_fill_k() {
        let mut row = vec![f32::NAN; 10];
        row[3] = 1.0;
        row[7] = f32::NEG_INFINITY;
        let out = top_k(&row, 4);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].1, 3, "NaN ranks last here, not first");
    }

    #[test]
    fn pair_sums_match_brute_force() {
        for (n, k, seed) in [
            (64, 16, 1),
            (300, 32, 3),
            (40, 40, 5),
            (8, 1, 7),
            (50, 7, 9),
        ] {
            pair_sums_case(n, k, seed);
        }
    }

    fn pair_sums_case(n: usize, k: usize, seed: u64) {
        let (s1, s2) = (random(n, seed), random(n, seed + 1));
        let mut picks = Vec::new();
        ProductTopK::default().select(&s1, &s2, k, &mut picks);
        let mut all: Vec<(f32, u32)> = (0..n * n)
            .map(|id| (s1[id / n] + s2[id % n], id as u32))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        let got: Vec<u32> = picks.iter().map(|p| p.i * n as u32 + p.j).collect();
        let want: Vec<u32> = all[..k].iter().map(|&(_, id)| id).collect();
        assert_eq!(got, want, "n {n} k {k}");
        for (p, &(s, _)) in picks.iter().zip(&all) {
            assert!((p.score - s).abs() < 1e-6);
        }
    }

    #[test]
    fn keys_order_scores_and_give_them_back() {
        let scores = [-f32::INFINITY, -2.5, -0.0, 0.0, 1e-30, 3.0, f32::INFINITY];
        for w in scores.windows(2) {
            assert!(key(w[0], 0) > key(w[1], 0), "{w:?}");
        }
        for &s in &scores {
            assert_eq!(f32_of_key(key(s, 9)).to_bits(), s.to_bits());
        }
        assert!(key(1.0, 1) < key(1.0, 2), "ties to the lower index");
    }
}
