//! L2 arithmetic for the neighbour graph, and input checks. The dot
//! product itself is [`mnemos_index_core::vector::dot`].
//!
//! Distances are squared L2, `|a|² + |b|² − 2·a·b`: the matrix products of
//! the graph build give `a·b` for many pairs at once, and the squared norms
//! are kept per slot. Nothing assumes unit vectors (MiniLM's are, but the
//! index takes any finite vectors), and squaring keeps the order of true L2
//! distances while saving a square root per pair.

use mnemos_index_core::vector::dot;
use mnemos_index_core::Result;

use crate::params::invalid;

pub(crate) fn squared_norm(v: &[f32]) -> f32 {
    dot(v, v)
}

/// Squared L2 distance from a dot product and the two squared norms,
/// clamped at 0: rounding puts (near-)duplicates a hair below.
pub(crate) fn from_dot(sq_norm_a: f32, sq_norm_b: f32, dot: f32) -> f32 {
    (sq_norm_a + sq_norm_b - 2.0 * dot).max(0.0)
}

/// Rejects a vector of the wrong length or with a NaN or infinite component
/// (which would poison every distance and score it touches). Vectors are
/// stored as given, not normalised: the q-nets were trained on the
/// encoder's vectors exactly as it emits them.
pub(crate) fn check_vector(vector: &[f32], dim: usize) -> Result<()> {
    mnemos_index_core::vector::check_vector(vector, dim)?;
    // Squares of huge components overflow to infinity, and so would every
    // distance to them.
    if !squared_norm(vector).is_finite() {
        return Err(invalid(
            "vector is too large: its squared norm overflows".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_from_dot_is_squared_l2() {
        let a = [3.0, 0.0];
        let b = [0.0, 4.0];
        let d = from_dot(squared_norm(&a), squared_norm(&b), dot(&a, &b));
        assert_eq!(d, 25.0);
        assert_eq!(from_dot(1.0, 1.0, 1.000_001), 0.0);
    }

    #[test]
    fn bad_vectors_are_rejected() {
        assert!(check_vector(&[1.0, 2.0], 2).is_ok());
        assert!(check_vector(&[1.0], 2).is_err());
        assert!(check_vector(&[1.0, f32::NAN], 2).is_err());
        assert!(check_vector(&[f32::INFINITY, 0.0], 2).is_err());
        assert!(check_vector(&[3e19, 3e19], 2).is_err());
    }
}
