//! When the memory switches from exact to graph search, and how the graph
//! is built and searched.

use mnemos_hnsw::{HnswParams, MAX_DIM};
use serde::{Deserialize, Serialize};

use crate::{Result, VisualError};

/// Search parameters of a [`crate::VisualMemory`].
///
/// The defaults were measured with `examples/visual_scale.rs` on 1280-d
/// synthetic image-like embeddings (1000 related classes, low-rank
/// within-class variation, small isotropic noise; see the example) on the
/// 2-core development machine. Figures below are p50 classify latency
/// (k = 10, RankVoting) and recall@10 against exact search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisualParams {
    /// Once this many items are stored the memory builds an HNSW graph and
    /// searches through it from then on; below it every query is an exact
    /// scan. `0` starts with a graph, `usize::MAX` never builds one.
    ///
    /// An exact scan reads every stored vector (5 kB each at 1280-d), so it
    /// costs about 0.2 µs per item: 1.7–2.3 ms at 10k items, 11 ms at 50k,
    /// 46 ms at 200k, 200 ms at 1M. The graph answered in 1–1.8 ms from
    /// 50k to 1M items (ef 64). At 10k the scan still meets a 2 ms budget
    /// with perfect recall;
    /// much beyond it, it does not. The upsert that reaches the threshold
    /// builds the graph from every stored vector in place (about 10 s at
    /// 10k items on two cores), holding that write.
    pub ann_above: usize,
    /// The graph's parameters (defaults: m = 32, ef_construction = 100,
    /// ef_search = 96).
    ///
    /// `m = 32`, not the dense index's 16: hnsw_rs prunes a full neighbour
    /// list by distance alone, so in a memory of many samples per class
    /// the links between classes are pushed out by ever nearer same-class
    /// ones, classes become islands, and a query that enters the wrong
    /// one stays there. With 1000 samples per class (100k items, 100
    /// classes) m = 16 fell to recall@10 0.76 at ef 64, and to 0.51 at 1M
    /// items; m = 32 leaves room for those links and gave 0.999 on the
    /// former, at the same build speed and memory.
    /// `ef_search = 96`: at 1M items (m = 32, ef_construction = 100; built
    /// in 17 min on two idle cores, 12.8 GB resident) it gave recall@10
    /// 0.973 at p50 1.86 ms (p99 4.2 ms), where ef 64 gave 0.939 at
    /// 1.52 ms (and 0.951 at 1.8 ms in an earlier build), too close to or
    /// under 0.95 (`visual_scale 1000000 --ef 64,96`). Requests may pass
    /// their own `ef`; small memories need less (0.999 at ef 64 at 20k).
    /// `ef_construction = 100` rather than 64: 64 built 2.4× faster but
    /// cost 0.02 recall at ef 64 already at 200k items.
    ///
    /// `hnsw.exact_below` still applies inside graph mode: a memory that
    /// shrinks below it after the graph was built is scanned exactly again
    /// (by the graph index, from its own copy of the vectors) without
    /// tearing the graph down. Keep it at or below `ann_above`.
    pub hnsw: HnswParams,
}

impl Default for VisualParams {
    fn default() -> Self {
        Self {
            ann_above: 10_000,
            hnsw: HnswParams {
                m: 32,
                ef_construction: 100,
                ef_search: 96,
                exact_below: 10_000,
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
