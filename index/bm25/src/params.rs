//! BM25 free parameters.

use crate::error::{Bm25Error, Result};

/// The two free parameters of Okapi BM25 (Robertson & Zaragoza, "The
/// Probabilistic Relevance Framework: BM25 and Beyond", 2009, §3.4).
///
/// The defaults are Anserini's (`k1 = 0.9`, `b = 0.4`), the setting behind
/// the BEIR paper's BM25 baselines, rather than tantivy's built-in
/// `1.2 / 0.75`: that is why this crate scores with its own scorer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25Params {
    /// Term-frequency saturation: 0 ignores how often a term occurs, large
    /// values make the score grow almost linearly with term frequency.
    pub k1: f32,
    /// Length normalisation, from 0 (none) to 1 (scores fully relative to the
    /// document's length over the average length).
    pub b: f32,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Self { k1: 0.9, b: 0.4 }
    }
}

impl Bm25Params {
    /// tantivy's and Lucene's classic setting, for comparisons.
    pub const LUCENE_CLASSIC: Self = Self { k1: 1.2, b: 0.75 };

    /// Checks `k1 >= 0` and `0 <= b <= 1` (and that both are finite); the
    /// formula is meaningless outside these ranges, and NaN would silently
    /// poison every score.
    pub fn validate(&self) -> Result<()> {
        if !self.k1.is_finite() || self.k1 < 0.0 {
            return Err(Bm25Error::InvalidParams(format!(
                "k1 must be a finite number >= 0, got {}",
                self.k1
            )));
        }
        if !self.b.is_finite() || !(0.0..=1.0).contains(&self.b) {
            return Err(Bm25Error::InvalidParams(format!(
                "b must be between 0 and 1, got {}",
                self.b
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_anserini_and_valid() {
        let p = Bm25Params::default();
        assert_eq!((p.k1, p.b), (0.9, 0.4));
        assert!(p.validate().is_ok());
        assert!(Bm25Params::LUCENE_CLASSIC.validate().is_ok());
    }

    #[test]
    fn out_of_range_is_rejected_with_the_offending_value() {
        for (k1, b) in [(-0.1, 0.4), (f32::NAN, 0.4), (0.9, 1.5), (0.9, -0.01)] {
            let err = Bm25Params { k1, b }.validate().unwrap_err().to_string();
            assert!(err.contains("invalid BM25 parameters"), "{err}");
        }
        let edge = Bm25Params { k1: 0.0, b: 1.0 };
        assert!(edge.validate().is_ok());
    }
}
