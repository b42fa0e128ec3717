//! Vector arithmetic and input checks that every vector index shares.

use crate::{IndexError, Result};

/// Dimensions above this are almost certainly a configuration mistake.
pub const MAX_DIM: usize = 65_536;

/// Dot product of two equal-length slices.
///
/// On x86-64 CPUs with AVX2 and FMA (detected once, then a cached flag)
/// this runs [`simd::dot`]: the workspace compiles for baseline x86-64,
/// where the portable loop below is 4 lanes wide with separate multiplies
/// and adds. At 384 dimensions every HNSW search computes thousands of
/// these, about a tenth of a dense search's CPU time at the gateway.
///
/// `#[inline]` makes every calling crate compile its own copy of the
/// dispatch and the portable loop at its own opt-level: `mnemos-hnsw` is
/// optimised even in dev builds (its graph code is hot), this crate is
/// not.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        // SAFETY: `available` found AVX2 and FMA on this CPU.
        #[allow(unsafe_code)]
        return unsafe { simd::dot(a, b) };
    }
    portable_dot(a, b)
}

/// The portable loop. Eight independent partial sums let the compiler keep
/// them in SIMD registers; a single running sum is a serial chain of float
/// additions that it may not reorder, and runs several times slower at 384
/// dimensions.
#[inline]
fn portable_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (xa, xb) in chunks_a.zip(chunks_b) {
        for ((lane, x), y) in lanes.iter_mut().zip(xa).zip(xb) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The dot product with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps,
        _mm256_loadu_ps, _mm256_setzero_ps, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps,
        _mm_shuffle_ps,
    };

    /// Whether this CPU has AVX2 and FMA (std caches the answer).
    #[inline]
    pub fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// `a · b` over the shorter length: four 8-lane accumulators (four
    /// multiply-add chains in flight), then one 8-lane step, then scalars.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let len = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        // SAFETY (all loads below): each reads 8 floats at an offset `i`
        // with `i + 8 <= len`, inside both slices; no alignment needed.
        let load = |i: usize| unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        let mut acc: [__m256; 4] = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= len {
            for (j, acc) in acc.iter_mut().enumerate() {
                let (x, y) = load(i + 8 * j);
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            i += 32;
        }
        while i + 8 <= len {
            let (x, y) = load(i);
            acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
        let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let one = _mm_add_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1));
        let tail: f32 = a[i..len].iter().zip(&b[i..len]).map(|(x, y)| x * y).sum();
        _mm_cvtss_f32(one) + tail
    }
}

/// Rejects a vector of the wrong length or with a NaN or infinite
/// component, either of which would poison every distance and score it
/// touches. Indexes add their own checks (zero vectors, overflow) on top.
pub fn check_vector(vector: &[f32], dim: usize) -> Result<()> {
    if vector.len() != dim {
        return Err(IndexError::InvalidArgument(format!(
            "vector has {} dimensions, index expects {dim}",
            vector.len()
        )));
    }
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(IndexError::InvalidArgument(
            "vector has a NaN or infinite component".into(),
        ));
    }
    Ok(())
}

/// Checks a vector dimension given to an index constructor.
pub fn validate_dim(dim: usize) -> Result<()> {
    if !(1..=MAX_DIM).contains(&dim) {
        return Err(IndexError::InvalidArgument(format!(
            "vector dimension must be in 1..={MAX_DIM}, got {dim}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_sum_for_every_tail_length() {
        for len in [0, 1, 7, 8, 9, 16, 19, 383, 384] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-4, "len {len}");
            assert!((portable_dot(&a, &b) - naive).abs() < 1e-4, "len {len}");
        }
    }

    #[test]
    fn bad_vectors_are_invalid_arguments() {
        check_vector(&[1.0, 2.0], 2).unwrap();
        for (vector, dim) in [
            (&[1.0][..], 2),
            (&[1.0, f32::NAN][..], 2),
            (&[f32::INFINITY, 0.0][..], 2),
        ] {
            assert!(matches!(
                check_vector(vector, dim),
                Err(IndexError::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn dim_must_be_positive_and_sane() {
        assert!(validate_dim(0).is_err());
        assert!(validate_dim(MAX_DIM + 1).is_err());
        validate_dim(1).unwrap();
        validate_dim(MAX_DIM).unwrap();
    }
}
