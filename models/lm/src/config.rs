//! The language model's shape, stored as `config.json` next to the weights.

use serde::{Deserialize, Serialize};

use crate::error::{LmError, Result};

/// Shape of a decoder-only transformer (pre-norm RMSNorm, rotary
/// positions, SwiGLU feed-forward), optionally with product-key memory
/// layers in place of the feed-forward network of some blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmConfig {
    /// Token ids are `0..vocab_size`; at least the tokenizer's vocabulary.
    pub vocab_size: usize,
    /// Width of the residual stream, the embeddings and the memory values.
    pub dim: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads; `dim / heads` must be even for rotary positions.
    pub heads: usize,
    /// Hidden width of each SwiGLU feed-forward network.
    pub ffn_hidden: usize,
    /// Longest context, prompt plus generated tokens; the rotary tables
    /// and the KV cache are sized by it.
    pub max_seq_len: usize,
    /// Base of the rotary frequencies (RoFormer's 10,000).
    pub rope_theta: f64,
    /// Epsilon of every RMSNorm.
    pub norm_eps: f64,
    /// Whether the output projection is the token embedding matrix
    /// (Press & Wolf 2017). Default on: at our sizes (8k × 256) the matrix
    /// is a large share of a small model's parameters, and sharing it
    /// trains rare tokens' embeddings through the output side as well.
    pub tie_embeddings: bool,
    /// Standard deviation of the dense weights' normal initialisation
    /// (GPT-2's 0.02); output projections are further scaled by
    /// `1/√(2·layers)` so the residual stream does not grow with depth.
    pub init_std: f64,
    /// Product-key memory layers, if any.
    pub memory: Option<MemoryConfig>,
}

/// A product-key memory (Lample et al. 2019; SPECS §4) in place of the
/// feed-forward network of chosen blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Blocks (0-based) whose feed-forward network is a memory layer; the
    /// papers place one or two in the middle of the network.
    pub layers: Vec<usize>,
    /// `n`: sub-keys per half and head; the memory has `N = n²` values.
    pub n_keys: usize,
    /// `k`: candidates kept per half, and values read per head and token.
    pub k: usize,
    /// `H`: memory heads, each with its own query and sub-keys.
    pub heads: usize,
    /// `d_k`: query width per head; each sub-key has `d_k / 2` entries.
    pub key_dim: usize,
    /// Batch-normalise the queries (the paper's choice, which it found to
    /// spread lookups over more keys): batch statistics in training,
    /// running statistics at inference.
    pub query_batch_norm: bool,
    /// Plain product-key memory or the Memory+ layer.
    pub variant: MemoryVariant,
}

/// Which memory layer to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryVariant {
    /// Lample et al. 2019: the layer outputs the weighted sum of values;
    /// every memory layer has its own value table.
    #[default]
    Pkm,
    /// Memory+ (Berges et al., "Memory Layers at Scale", 2024): output
    /// `W_o(mem(x) ⊙ SiLU(W_g x))`, and one value table shared by all
    /// memory layers, each keeping its own keys and query projection.
    MemoryPlus,
}

impl Default for LmConfig {
    fn default() -> Self {
        Self {
            vocab_size: 8192,
            dim: 256,
            layers: 4,
            heads: 4,
            ffn_hidden: 768,
            max_seq_len: 256,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
            tie_embeddings: true,
            init_std: 0.02,
            memory: None,
        }
    }
}

impl Default for MemoryConfig {
    /// The paper's k = 32, H = 4, with `n = 256` (N = 65,536) rather than
    /// its 512: on CPU the value table takes a dense gradient and AdamW
    /// update every step, which a quarter-size table keeps affordable;
    /// `d_k = 128` rather than 256 halves the key work of a 256-wide model.
    fn default() -> Self {
        Self {
            layers: vec![1],
            n_keys: 256,
            k: 32,
            heads: 4,
            key_dim: 128,
            query_batch_norm: true,
            variant: MemoryVariant::Pkm,
        }
    }
}

impl MemoryConfig {
    /// `N = n²`, the values in one table.
    pub fn num_values(&self) -> usize {
        self.n_keys * self.n_keys
    }

    /// Trainable scalars of one memory layer without its value table: the
    /// query projection, the batch-norm affine, the sub-keys and, for
    /// Memory+, the gate and output projections.
    pub fn layer_parameters(&self, dim: usize) -> usize {
        let q = self.heads * self.key_dim;
        let norm = if self.query_batch_norm { 2 * q } else { 0 };
        let gate = match self.variant {
            MemoryVariant::Pkm => 0,
            MemoryVariant::MemoryPlus => 2 * dim * dim,
        };
        q * dim + norm + self.heads * self.n_keys * self.key_dim + gate
    }

    /// Value tables in the model: one per layer, or one shared.
    pub fn value_tables(&self) -> usize {
        match self.variant {
            MemoryVariant::Pkm => self.layers.len(),
            MemoryVariant::MemoryPlus => 1,
        }
    }
}

impl MemoryConfig {
    /// Checks the lookup's own fields (not `layers`, which only the model
    /// can judge); the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let range = |name: &str, value: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err(LmError::Config(format!(
                    "memory.{name} must be in {lo}..={hi}, got {value}"
                )))
            }
        };
        // Value ids are u32 (`i·n + j`), so N = n² must fit.
        range("n_keys", self.n_keys, 2, 65_535)?;
        range("k", self.k, 1, self.n_keys.min(1024))?;
        range("heads", self.heads, 1, 64)?;
        range("key_dim", self.key_dim, 2, 4096)?;
        if !self.key_dim.is_multiple_of(2) {
            return Err(LmError::Config(format!(
                "memory.key_dim must be even (two halves), got {}",
                self.key_dim
            )));
        }
        Ok(())
    }
}

impl LmConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads.max(1)
    }

    /// Whether block `layer` has a memory instead of a feed-forward network.
    pub fn is_memory_layer(&self, layer: usize) -> bool {
        self.memory
            .as_ref()
            .is_some_and(|m| m.layers.contains(&layer))
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(LmError::Config(msg));
        let range = |name: &str, value: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                bad(format!("{name} must be in {lo}..={hi}, got {value}"))
            }
        };
        range("vocab_size", self.vocab_size, 1, 1 << 24)?;
        range("dim", self.dim, 2, 16_384)?;
        range("layers", self.layers, 1, 256)?;
        range("heads", self.heads, 1, self.dim)?;
        if !self.dim.is_multiple_of(self.heads) || !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "heads must divide dim into even head widths (rotary positions rotate pairs), \
                 got dim {} and heads {}",
                self.dim, self.heads
            ));
        }
        range("ffn_hidden", self.ffn_hidden, 1, 1 << 20)?;
        range("max_seq_len", self.max_seq_len, 1, 1 << 20)?;
        for (name, value) in [("rope_theta", self.rope_theta), ("norm_eps", self.norm_eps)] {
            if !(value.is_finite() && value > 0.0) {
                return bad(format!("{name} must be positive and finite, got {value}"));
            }
        }
        if !(self.init_std.is_finite() && self.init_std >= 0.0) {
            return bad(format!(
                "init_std must be finite and >= 0, got {}",
                self.init_std
            ));
        }
        let Some(memory) = &self.memory else {
            return Ok(());
        };
        if memory.layers.is_empty() {
            return bad("memory.layers must name at least one block".into());
        }
        for (i, &layer) in memory.layers.iter().enumerate() {
            if layer >= self.layers {
                return bad(format!(
                    "memory.layers: block {layer} does not exist ({} layers)",
                    self.layers
                ));
            }
            if memory.layers[..i].contains(&layer) {
                return bad(format!("memory.layers lists block {layer} twice"));
            }
        }
        memory.validate()
    }

    /// Trainable scalars (batch-norm running statistics are not counted).
    pub fn num_parameters(&self) -> usize {
        let d = self.dim;
        let attention = 4 * d * d + 2 * d; // qkv, output, the two norms
        let ffn = 3 * d * self.ffn_hidden;
        let mut total = self.vocab_size * d + d; // embeddings, final norm
        if !self.tie_embeddings {
            total += self.vocab_size * d;
        }
        for layer in 0..self.layers {
            total += attention;
            total += match &self.memory {
                Some(m) if m.layers.contains(&layer) => m.layer_parameters(d),
                _ => ffn,
            };
        }
        if let Some(m) = &self.memory {
            total += m.value_tables() * m.num_values() * d;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let cfg = LmConfig {
            memory: Some(MemoryConfig::default()),
            ..LmConfig::default()
        };
        cfg.validate().expect("valid");
        let json = serde_json::to_string(&cfg).expect("serialise");
        let back: LmConfig = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, cfg);
        let partial: LmConfig =
            serde_json::from_str(r#"{"dim": 128, "memory": {"variant": "memory_plus"}}"#)
                .expect("parse");
        assert_eq!(partial.dim, 128);
        assert_eq!(partial.memory.expect("memory").n_keys, 256);
        assert!(serde_json::from_str::<LmConfig>(r#"{"hidden": 6}"#).is_err());
        assert!(serde_json::from_str::<LmConfig>(r#"{"memory": {"n": 6}}"#).is_err());
    }

    #[test]
    fn bad_values_name_the_field() {
        let memory = |f: fn(&mut MemoryConfig)| {
            let mut m = MemoryConfig::default();
            f(&mut m);
            LmConfig {
                memory: Some(m),
                ..LmConfig::default()
            }
        };
        for (cfg, field) in [
            (
                LmConfig {
                    dim: 0,
                    ..LmConfig::default()
                },
                "dim",
            ),
            (
                LmConfig {
                    heads: 3,
                    ..LmConfig::default()
                },
                "heads",
            ),
            (
                LmConfig {
                    heads: 512,
                    ..LmConfig::default()
                },
                "heads",
            ),
            (
                LmConfig {
                    vocab_size: 0,
                    ..LmConfig::default()
                },
                "vocab_size",
            ),
            (
                LmConfig {
                    rope_theta: f64::NAN,
                    ..LmConfig::default()
                },
                "rope_theta",
            ),
            (
                LmConfig {
                    norm_eps: 0.0,
                    ..LmConfig::default()
                },
                "norm_eps",
            ),
            (memory(|m| m.layers = vec![4]), "memory.layers"),
            (memory(|m| m.layers = vec![1, 1]), "memory.layers"),
            (memory(|m| m.layers.clear()), "memory.layers"),
            (memory(|m| m.n_keys = 70_000), "memory.n_keys"),
            (memory(|m| m.k = 300), "memory.k"),
            (memory(|m| m.key_dim = 7), "memory.key_dim"),
            (memory(|m| m.heads = 0), "memory.heads"),
        ] {
            let err = cfg.validate().expect_err("invalid");
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn parameter_count_by_hand() {
        let d = 8;
        let cfg = LmConfig {
            vocab_size: 10,
            dim: d,
            layers: 2,
            heads: 2,
            ffn_hidden: 12,
            tie_embeddings: false,
            memory: Some(MemoryConfig {
                layers: vec![1],
                n_keys: 4,
                k: 2,
                heads: 2,
                key_dim: 6,
                query_batch_norm: true,
                variant: MemoryVariant::MemoryPlus,
            }),
            ..LmConfig::default()
        };
        let block = 4 * d * d + 2 * d;
        let memory = 12 * d + 24 + 2 * 4 * 6 + 2 * d * d;
        let expected = 2 * 10 * d + d + 2 * block + 3 * d * 12 + memory + 16 * d;
        assert_eq!(cfg.num_parameters(), expected);
    }
}
