//! The Hypencoder's shape and initialisation, stored as `config.json` next
//! to the weights.

use serde::{Deserialize, Serialize};

use crate::error::{HypencoderError, Result};

/// Width of all-MiniLM-L6-v2's token states, the encoder we build on.
pub const MINILM_HIDDEN_SIZE: usize = 384;

/// Shape of the hyperheads and of the q-nets they generate.
///
/// Every q-net layer is `hidden_size` wide, the width of the encoder's token
/// states and of the document vectors, so the residual connection needs no
/// projection (SPECS §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HypencoderConfig {
    /// `h`: width of the query token states, the document vectors and every
    /// q-net hidden layer.
    pub hidden_size: usize,
    /// Hidden layers of each q-net (each `h×h` plus a bias), followed by
    /// one `h×1` output layer without bias.
    ///
    /// Default 4. The paper finds 4 or more hidden layers best and 8 worse
    /// (SPECS §2); exhaustive scoring costs `2·L·h²` flops per document, so
    /// 4 layers score ~1.5× faster than the paper's 6, train ~1.5× faster
    /// on CPU, and keep the parameter count (5.2M, ~10 MB in f16) suited to
    /// SciFact's ~800 training queries.
    pub num_hidden_layers: usize,
    /// Add the layer input to its output on every hidden layer but the last
    /// (SPECS §2); off only for ablations.
    pub residual: bool,
    /// Epsilon of the affine-free layer norms, PyTorch's default.
    pub layer_norm_eps: f64,
    /// Standard deviations of the random initialisation.
    pub init: InitScale,
    /// Where training starts from; loading a trained model ignores it.
    pub start: Start,
}

/// The function a new model's q-nets compute before any training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// The paper's initialisation: every generated weight starts at a
    /// random base, so a new q-net is a random, query-independent network.
    #[default]
    Random,
    /// The q-net starts as the dense dual encoder it is built on: its score
    /// is (a fixed multiple of) the Pearson correlation between the
    /// document vector and the query's mean-pooled token states, which
    /// ranks documents almost exactly like the encoder's cosine (see
    /// `warm_start.rs`). Training then only has to learn what improves on
    /// the dense backend, which matters with SciFact's ~800 training
    /// queries: from a random start the q-net must first learn text
    /// matching itself.
    Dense,
}

/// Standard deviations of the normal distributions that initialise a new
/// model; a trained model's weights replace them, so loading ignores these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InitScale {
    /// The base matrices (and the output column): He initialisation,
    /// `√(2/h)`, so a fresh q-net is a well-scaled random ReLU network.
    pub base_std: f64,
    /// The learned attention queries `Q`. Large (10, as in the paper's
    /// code) so each weight row starts attending to a few tokens rather
    /// than averaging the whole query, which would make all rows alike.
    pub query_std: f64,
    /// The linear layer that produces `Ĥ`: near zero (`1/h²`), so every
    /// generated weight starts at its base (SPECS §2) and training begins
    /// from a stable, query-independent q-net.
    pub delta_std: f64,
    /// The key and value projections: `1/√(3h)`, the standard deviation of
    /// PyTorch's default `Linear` initialisation.
    pub projection_std: f64,
}

impl InitScale {
    /// The defaults above for width `h`.
    pub fn for_width(h: usize) -> Self {
        let h = h.max(1) as f64;
        Self {
            base_std: (2.0 / h).sqrt(),
            query_std: 10.0,
            delta_std: 1.0 / (h * h),
            projection_std: 1.0 / (3.0 * h).sqrt(),
        }
    }
}

impl Default for InitScale {
    fn default() -> Self {
        Self::for_width(MINILM_HIDDEN_SIZE)
    }
}

impl Default for HypencoderConfig {
    fn default() -> Self {
        Self {
            hidden_size: MINILM_HIDDEN_SIZE,
            num_hidden_layers: 4,
            residual: true,
            layer_norm_eps: 1e-5,
            init: InitScale::default(),
            start: Start::Random,
        }
    }
}

impl HypencoderConfig {
    /// A configuration of width `h` with `layers` hidden layers and the
    /// initialisation scaled for that width.
    pub fn new(h: usize, layers: usize) -> Self {
        Self {
            hidden_size: h,
            num_hidden_layers: layers,
            init: InitScale::for_width(h),
            ..Self::default()
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(HypencoderError::Config(msg));
        if !(1..=4096).contains(&self.hidden_size) {
            return bad(format!(
                "hidden_size must be in 1..=4096, got {}",
                self.hidden_size
            ));
        }
        if !(1..=16).contains(&self.num_hidden_layers) {
            return bad(format!(
                "num_hidden_layers must be in 1..=16, got {}",
                self.num_hidden_layers
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(format!(
                "layer_norm_eps must be positive and finite, got {}",
                self.layer_norm_eps
            ));
        }
        let init = &self.init;
        for (name, value) in [
            ("init.base_std", init.base_std),
            ("init.query_std", init.query_std),
            ("init.delta_std", init.delta_std),
            ("init.projection_std", init.projection_std),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return bad(format!("{name} must be finite and >= 0, got {value}"));
            }
        }
        Ok(())
    }

    /// Trainable scalars: per generated matrix (the `L` hidden weights, and
    /// the `L` biases plus the output column) a key projection (`h×h`, no
    /// bias), a value projection (`h×h` + `h`), the `Ĥ` linear layer
    /// (`h×h` + `h`), a query and a base (`out×h` each, `out` = `h` for
    /// weights, 1 for vectors).
    pub fn num_parameters(&self) -> usize {
        let h = self.hidden_size;
        let l = self.num_hidden_layers;
        let per_head = |out: usize| h * h + (h * h + h) + (h * h + h) + 2 * out * h;
        l * per_head(h) + (l + 1) * per_head(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips() {
        let cfg = HypencoderConfig::default();
        cfg.validate().expect("valid");
        let json = serde_json::to_string(&cfg).expect("serialise");
        let back: HypencoderConfig = serde_json::from_str(&json).expect("parse");
        // serde_json reads floats back to within an ulp, not always exactly.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-15 * a.abs().max(1.0);
        assert!(close(back.init.projection_std, cfg.init.projection_std));
        assert_eq!(
            HypencoderConfig {
                init: cfg.init.clone(),
                ..back
            },
            cfg
        );
        // 5.2M parameters: ~10 MB as f16, well under the 25 MB budget.
        assert_eq!(cfg.num_parameters(), 5_171_712);
    }

    #[test]
    fn partial_json_takes_defaults_and_typos_are_refused() {
        let cfg: HypencoderConfig =
            serde_json::from_str(r#"{"num_hidden_layers": 6}"#).expect("parse");
        assert_eq!(cfg.num_hidden_layers, 6);
        assert_eq!(cfg.hidden_size, 384);
        assert!(serde_json::from_str::<HypencoderConfig>(r#"{"layers": 6}"#).is_err());
    }

    #[test]
    fn bad_values_name_the_field() {
        for (cfg, field) in [
            (HypencoderConfig::new(0, 4), "hidden_size"),
            (HypencoderConfig::new(8, 0), "num_hidden_layers"),
            (HypencoderConfig::new(8, 17), "num_hidden_layers"),
            (
                HypencoderConfig {
                    layer_norm_eps: 0.0,
                    ..HypencoderConfig::default()
                },
                "layer_norm_eps",
            ),
            (
                HypencoderConfig {
                    init: InitScale {
                        query_std: f64::NAN,
                        ..InitScale::default()
                    },
                    ..HypencoderConfig::default()
                },
                "init.query_std",
            ),
        ] {
            let err = cfg.validate().expect_err("invalid");
            assert!(err.to_string().contains(field), "{err}");
        }
    }
}
