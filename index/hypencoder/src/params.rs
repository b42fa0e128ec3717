//! Parameters of the index (fixed when it is opened) and of a graph search
//! (per request), with validation that names the offending field.

use mnemos_index_core::{IndexError, Result};
use serde::{Deserialize, Serialize};

/// Neighbour lists longer than this are almost certainly a typo: memory is
/// `8 × neighbors` bytes per document and every insert and removal does
/// `O(neighbors)` work per touched list.
pub const MAX_NEIGHBORS: usize = 1024;
/// Bounds on the per-request graph search knobs: far beyond any useful
/// setting, low enough that a typo cannot make one request scan a huge
/// index many times over.
const MAX_ENTRY_POINTS: usize = 10_000_000;
const MAX_CANDIDATES: usize = 100_000;
const MAX_ROUNDS: usize = 1_000;

/// Parameters of a [`crate::HypencoderIndex`], fixed when it is opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphParams {
    /// Length of every document's neighbour list: its nearest other
    /// documents by L2 distance between document vectors. The paper uses
    /// 100 (SPECS §2). Memory is 8 bytes per entry (slot and distance), so
    /// 80 MB per 100k documents at 100.
    pub neighbors: usize,
}

impl Default for GraphParams {
    fn default() -> Self {
        Self { neighbors: 100 }
    }
}

impl GraphParams {
    /// Checks every field, naming the first one that is out of range.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_NEIGHBORS).contains(&self.neighbors) {
            return Err(invalid(format!(
                "hypencoder graph neighbors must be in 1..={MAX_NEIGHBORS}, got {}",
                self.neighbors
            )));
        }
        Ok(())
    }
}

/// Knobs of one graph search (SPECS §2: `C`, `nCand`, `maxIter`).
///
/// The defaults score ~2.5k documents per query at 100k, about 40× less
/// work than exhaustive scoring. Measured with `examples/graph_scale.rs`
/// (2-core AMD EPYC, one query thread, other jobs running, so latencies are
/// noisy): 100k documents (SciFact's 5,183 MiniLM vectors and draws around
/// them), a Hypencoder trained for one epoch on SciFact, its 101 held-out
/// queries' real token states, k = 10. Two runs (exhaustive: 1.52 s and
/// 1.97 s per query); docs scored, top-10 overlap with exhaustive scoring,
/// and speed-up:
///
/// | C | nCand | maxIter | docs scored | overlap | speed-up |
/// |---|---|---|---|---|---|
/// | 256 | 8 | 16 | 1,770–1,830 | 0.945–0.947 | 50–54× |
/// | 256 | 12 | 16 | 2,375–2,416 | 0.953 | 39–42× |
/// | **512** | **12** | **16** | 2,449–2,452 | 0.955–0.962 | 36–41× |
/// | 256 | 16 | 16 | 2,971–3,043 | 0.967–0.982 | 29–31× |
/// | 1024 | 32 | 16 | 5,099 | 0.997 | 17× |
///
/// Searches stopped early after ~4.5 rounds on average, so `maxIter`
/// rarely binds; `nCand` is the main quality/cost knob. A randomly
/// initialised (untrained) model's q-nets are far rougher functions of the
/// document vector, and the walk finds much less of their top 10: treat
/// these figures as valid for trained models only, and re-measure when the
/// model changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphSearch {
    /// `C`: random live documents scored in the first round. When `C` is at
    /// least the number of live documents, the search is exhaustive.
    pub entry_points: usize,
    /// `nCand`: how many of a round's best-scoring candidates have their
    /// unvisited neighbours become the next round's candidates.
    pub candidates: usize,
    /// `maxIter`: the most rounds of scoring (the entry round included).
    /// The paper's quality plateaus at about 12.
    pub max_rounds: usize,
    /// Seeds the choice of entry points, so a search is reproducible. Query
    /// `i` of a batch draws from `seed` mixed with `i`.
    pub seed: u64,
}

impl Default for GraphSearch {
    fn default() -> Self {
        Self {
            entry_points: 512,
            candidates: 12,
            max_rounds: 16,
            seed: 0x6879_7065_6e63_6f64,
        }
    }
}

impl GraphSearch {
    /// Checks every field, naming the first one that is out of range.
    pub fn validate(&self) -> Result<()> {
        let fields = [
            ("entry_points", self.entry_points, MAX_ENTRY_POINTS),
            ("candidates", self.candidates, MAX_CANDIDATES),
            ("max_rounds", self.max_rounds, MAX_ROUNDS),
        ];
        for (name, value, max) in fields {
            if !(1..=max).contains(&value) {
                return Err(invalid(format!(
                    "hypencoder graph search {name} must be in 1..={max}, got {value}"
                )));
            }
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

    fn message(result: Result<()>) -> String {
        match result {
            Err(IndexError::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        GraphParams::default().validate().unwrap();
        GraphSearch::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        let bad = GraphParams { neighbors: 0 };
        assert!(message(bad.validate()).contains("neighbors"));
        for (field, search) in [
            (
                "entry_points",
                GraphSearch {
                    entry_points: 0,
                    ..GraphSearch::default()
                },
            ),
            (
                "candidates",
                GraphSearch {
                    candidates: 0,
                    ..GraphSearch::default()
                },
            ),
            (
                "max_rounds",
                GraphSearch {
                    max_rounds: MAX_ROUNDS + 1,
                    ..GraphSearch::default()
                },
            ),
        ] {
            assert!(message(search.validate()).contains(field), "{field}");
        }
    }
}
