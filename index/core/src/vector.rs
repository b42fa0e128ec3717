//! Vector arithmetic and input checks that every vector index shares.

use crate::{IndexError, Result};

/// Dimensions above this are almost certainly a configuration mistake.
pub const MAX_DIM: usize = 65_536;

/// Dot product of two equal-length slices.
///
/// Eight independent partial sums let the compiler keep them in one SIMD
/// register; a single running sum is a serial chain of float additions that
/// it may not reorder, and runs several times slower at 384 dimensions.
///
/// `#[inline]` makes every calling crate compile its own copy at its own
/// opt-level: `mnemos-hnsw` is optimised even in dev builds (its graph code
/// is hot), this crate is not, and an unoptimised copy here would slow every
/// graph build and exact scan that calls it.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
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
