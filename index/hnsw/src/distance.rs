//! Similarity arithmetic: normalisation, and the distance the graph is built
//! with. The dot product itself is [`mnemos_index_core::vector::dot`].

use hnsw_rs::prelude::Distance;
use mnemos_index_core::vector::{check_vector, dot};
use mnemos_index_core::Result;

use crate::params::invalid;

/// How far from 1 a norm may be for a vector to count as normalised already.
const UNIT_TOLERANCE: f64 = 1e-5;

/// Copies `vector` scaled to unit length, so that the dot product is the
/// cosine similarity whatever the caller passed.
///
/// Rejects a wrong length, non-finite components and the zero vector: any of
/// them would put NaN into the graph, where hnsw_rs asserts on distances and
/// would panic.
pub fn normalised(vector: &[f32], dim: usize) -> Result<Vec<f32>> {
    check_vector(vector, dim)?;
    // f64 so that squares of large components cannot overflow to infinity.
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        return Err(invalid("vector is all zeros and has no direction".into()));
    }
    // Already unit length (as embedding models emit): keep the caller's
    // bits, so a vector read back with `get_vector` is exactly what was
    // written. The clamped distance absorbs the tiny excess over 1.
    if (norm - 1.0).abs() <= UNIT_TOLERANCE {
        return Ok(vector.to_vec());
    }
    Ok(vector
        .iter()
        .map(|&x| (f64::from(x) / norm) as f32)
        .collect())
}

/// `1 - dot`, clamped at zero, for unit vectors.
///
/// hnsw_rs's own `DistDot` asserts `1 - dot >= 0`, which float rounding
/// breaks for (near-)duplicate unit vectors, and the graph walk asserts
/// distances are non-negative. Clamping keeps both true; the order among
/// all other points is unchanged. `f32::max` also maps NaN to 0.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ClampedDot;

impl Distance<f32> for ClampedDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_has_unit_length() {
        let v = normalised(&[3.0, 4.0], 2).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let huge = normalised(&[3.0e38, 3.0e38], 2).unwrap();
        assert!((dot(&huge, &huge) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn unit_vectors_are_kept_bit_for_bit() {
        let raw: Vec<f32> = (0..384).map(|i| (i as f32 * 0.3).sin()).collect();
        let unit = normalised(&raw, 384).unwrap();
        assert_eq!(normalised(&unit, 384).unwrap(), unit);
    }

    #[test]
    fn normalised_rejects_unusable_vectors() {
        assert!(normalised(&[1.0, 0.0], 3).is_err());
        assert!(normalised(&[0.0, 0.0], 2).is_err());
        assert!(normalised(&[f32::NAN, 1.0], 2).is_err());
        assert!(normalised(&[f32::INFINITY, 1.0], 2).is_err());
    }

    #[test]
    fn distance_of_identical_unit_vectors_is_never_negative() {
        for seed in 0..200 {
            let raw: Vec<f32> = (0..384).map(|i| ((i * 7 + seed) as f32).sin()).collect();
            let v = normalised(&raw, 384).unwrap();
            let d = ClampedDot.eval(&v, &v);
            assert!((0.0..1e-5).contains(&d), "distance {d}");
        }
    }
}
