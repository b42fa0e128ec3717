//! When the memory switches from exact to graph search, and how the graph
//! is built and searched.

use mnemos_hnsw::{HnswParams, MAX_DIM};
use serde::{Deserialize, Serialize};

use crate::{Result, VisualError};

/// Search parameters of a [`crate::VisualMemory`].
///
/// The defaults were measured on 1280-d synthetic embeddings made like
/// image embeddings (1000 classes, low-rank within-class variation plus
/// isotropic noise: `examples/visual_scale.rs`) on the 2-core development
/// machine; see the field docs for the figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisualParams {
    /// Once this many items are stored the memory builds an HNSW graph and
    /// searches through it from then on; below it every query is an exact
    /// scan. `0` starts with a graph, `usize::MAX` never builds one.
    ///
    /// An exact scan reads every stored vector (5 kB each at 1280-d), so
    /// its cost grows linearly: PLACEHOLDER_EXACT. Graph search costs
    /// about the same from there on but barely grows with the memory.
    /// The upsert that reaches the threshold builds the graph in place
    /// (PLACEHOLDER_BUILD), holding that write.
    pub ann_above: usize,
    /// The graph's parameters. `hnsw.exact_below` still applies inside
    /// graph mode: a memory that shrinks below it after the graph was
    /// built is scanned exactly again (by the graph index, from its own
    /// copy of the vectors), without tearing the graph down. Keep it at
    /// or below `ann_above`.
    ///
    /// PLACEHOLDER_HNSW
    pub hnsw: HnswParams,
}

impl Default for VisualParams {
    fn default() -> Self {
        Self {
            ann_above: 20_000,
            hnsw: HnswParams {
                m: 16,
                ef_construction: 100,
                ef_search: 64,
                exact_below: 20_000,
                ..HnswParams::default()
            },
        }
    }
}

impl VisualParams {
    /// Checks the parameters for `dim`-dimensional embeddings, naming the
    /// first bad field.
    pub fn validate(&self, dim: usize) -> Result<()> {
        if !(1..=MAX_DIM).contains(&dim) {
            return Err(VisualError::InvalidInput(format!(
                "embedding dimension must be in 1..={MAX_DIM}, got {dim}"
            )));
        }
        self.hnsw
            .validate()
            .map_err(|e| VisualError::InvalidInput(format!("visual memory: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_fields_are_named() {
        VisualParams::default().validate(1280).unwrap();
        let err = VisualParams::default().validate(0).unwrap_err().to_string();
        assert!(err.contains("dimension"), "{err}");
        let bad = VisualParams {
            hnsw: HnswParams {
                m: 1000,
                ..HnswParams::default()
            },
            ..VisualParams::default()
        };
        let err = bad.validate(8).unwrap_err().to_string();
        assert!(err.contains("hnsw m"), "{err}");
    }

    #[test]
    fn params_read_from_partial_json() {
        let p: VisualParams = serde_json::from_str(r#"{"ann_above": 5}"#).unwrap();
        assert_eq!(p.ann_above, 5);
        assert_eq!(p.hnsw, VisualParams::default().hnsw);
    }
}
