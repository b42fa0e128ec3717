//! Tuning knobs of the vector index and their validation.
//!
//! hnsw_rs does not return errors for bad parameters: `max_nb_connection >
//! 256` calls `process::exit(1)`. Every value is therefore checked here,
//! before any graph is built, so a bad configuration becomes an
//! [`IndexError::InvalidArgument`] instead of a dead server.

use mnemos_index_core::{IndexError, Result};
use serde::{Deserialize, Serialize};

/// hnsw_rs stores neighbour counts in a `u8` and exits the process above this.
const MAX_CONNECTIONS: usize = 256;
/// Far beyond any useful setting; rejects typos such as an extra zero or two
/// that would make every insert or query scan most of the graph.
const MAX_EF: usize = 100_000;

/// Parameters of a [`crate::VectorIndex`].
///
/// The defaults come from measuring recall@10 against exact search on
/// synthetic clustered 384-d unit vectors (the crate tests' `Embeddings`).
/// At 100k vectors with m = 16, ef_search 128 gave 0.980 and 160 gave 0.988
/// (0.989 with 10% of points dead); at 20k, 128 already gives 0.997, so 160
/// leaves a margin as collections grow. m = 24 gained little at 20k for
/// 1.3–2× the build time; ef_construction 100 builds ~30% faster than 200
/// for about 0.001 less recall at 20k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HnswParams {
    /// Maximum links per point and layer (hnsw_rs `max_nb_connection`; the
    /// bottom layer keeps twice as many). Higher raises recall and memory.
    pub m: usize,
    /// Candidate list size while inserting. Higher builds a better graph,
    /// more slowly.
    pub ef_construction: usize,
    /// Candidate list size while searching (raised to `k` when `k` is
    /// larger). The main recall/latency trade-off at query time.
    pub ef_search: usize,
    /// Collections with fewer live vectors than this are searched exactly:
    /// perfect recall, and faster than the graph at this size. Measured at
    /// 384 dimensions, k = 10 (`MNEMOS_HNSW_BENCH_N=… cargo bench -p
    /// mnemos-hnsw`, one 2-core Zen 4 VM): 5k vectors, exact 140 µs against
    /// 675 µs for the graph at ef 128; 20k vectors, 0.95 against 1.67 ms.
    /// 10k leaves a margin for two searches sharing memory bandwidth.
    pub exact_below: usize,
    /// Rebuild the graph once superseded or removed points exceed this
    /// fraction of all points in it. Dead points cost memory, and searches
    /// fetch proportionally more candidates to skip them. `1.0` disables
    /// compaction.
    pub compact_ratio: f32,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 200,
            ef_search: 160,
            exact_below: 10_000,
            compact_ratio: 0.2,
        }
    }
}

impl HnswParams {
    /// Checks every field, naming the first one that is out of range.
    pub fn validate(&self) -> Result<()> {
        if !(2..=MAX_CONNECTIONS).contains(&self.m) {
            return Err(invalid(format!(
                "hnsw m must be in 2..={MAX_CONNECTIONS}, got {}",
                self.m
            )));
        }
        if !(1..=MAX_EF).contains(&self.ef_construction) {
            return Err(invalid(format!(
                "hnsw ef_construction must be in 1..={MAX_EF}, got {}",
                self.ef_construction
            )));
        }
        if !(1..=MAX_EF).contains(&self.ef_search) {
            return Err(invalid(format!(
                "hnsw ef_search must be in 1..={MAX_EF}, got {}",
                self.ef_search
            )));
        }
        // Written so that NaN fails too.
        if !(self.compact_ratio > 0.0 && self.compact_ratio <= 1.0) {
            return Err(invalid(format!(
                "hnsw compact_ratio must be in (0, 1], got {}",
                self.compact_ratio
            )));
        }
        Ok(())
    }
}

pub(crate) fn invalid(message: String) -> IndexError {
    IndexError::InvalidArgument(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejects(params: HnswParams, field: &str) {
        match params.validate() {
            Err(IndexError::InvalidArgument(message)) => {
                assert!(message.contains(field), "{message} should name {field}")
            }
            other => panic!("expected InvalidArgument naming {field}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        HnswParams::default().validate().unwrap();
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let base = HnswParams::default();
        rejects(
            HnswParams {
                m: 1,
                ..base.clone()
            },
            "m ",
        );
        rejects(
            HnswParams {
                m: 257,
                ..base.clone()
            },
            "m ",
        );
        rejects(
            HnswParams {
                ef_construction: 0,
                ..base.clone()
            },
            "ef_construction",
        );
        rejects(
            HnswParams {
                ef_search: 0,
                ..base.clone()
            },
            "ef_search",
        );
        for ratio in [0.0, -0.1, 1.5, f32::NAN] {
            rejects(
                HnswParams {
                    compact_ratio: ratio,
                    ..base.clone()
                },
                "compact_ratio",
            );
        }
        HnswParams { m: 256, ..base }.validate().unwrap();
    }
}
