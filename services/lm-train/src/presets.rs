//! The four models of the experiment (SPECS §4): the paper's claim is that
//! a shallow model with a memory layer in place of one feed-forward
//! network matches a deeper dense model, and decodes faster. At our scale:
//!
//! | preset | blocks | block 1's feed-forward network |
//! |---|---|---|
//! | `tiny-2l` | 2 | SwiGLU |
//! | `tiny-4l` | 4 | SwiGLU |
//! | `tiny-2l-pkm` | 2 | product-key memory (Lample et al. 2019) |
//! | `tiny-2l-memplus` | 2 | Memory+ (Berges et al. 2024) |
//!
//! Everything else (width, heads, vocabulary, context, initialisation) is
//! shared, so that a difference in perplexity is the depth's or the
//! memory's.

use std::str::FromStr;

use mnemos_lm::{LmConfig, MemoryConfig, MemoryVariant};
use serde::Serialize;

use crate::LmTrainError;

/// One of the experiment's four models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "&'static str")]
pub enum Preset {
    /// Two dense blocks: the shallow baseline.
    Tiny2l,
    /// Four dense blocks: the deep baseline, which the memory models try
    /// to match with two.
    Tiny4l,
    /// Two blocks, the second with a product-key memory for its
    /// feed-forward network.
    Tiny2lPkm,
    /// The same with the Memory+ layer (gated output, shared values).
    Tiny2lMemPlus,
}

impl From<Preset> for &'static str {
    fn from(p: Preset) -> Self {
        p.name()
    }
}

impl Preset {
    /// In the order `all` trains them.
    pub const ALL: [Preset; 4] = [
        Preset::Tiny2l,
        Preset::Tiny4l,
        Preset::Tiny2lPkm,
        Preset::Tiny2lMemPlus,
    ];

    /// The name on the command line and of the model's directory.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny2l => "tiny-2l",
            Preset::Tiny4l => "tiny-4l",
            Preset::Tiny2lPkm => "tiny-2l-pkm",
            Preset::Tiny2lMemPlus => "tiny-2l-memplus",
        }
    }

    /// Transformer blocks.
    pub fn layers(self) -> usize {
        match self {
            Preset::Tiny4l => 4,
            _ => 2,
        }
    }

    /// The memory layer kind, if any.
    pub fn memory(self) -> Option<MemoryVariant> {
        match self {
            Preset::Tiny2lPkm => Some(MemoryVariant::Pkm),
            Preset::Tiny2lMemPlus => Some(MemoryVariant::MemoryPlus),
            _ => None,
        }
    }

    /// The model's configuration for a vocabulary and a context length.
    pub fn config(self, shape: &ModelShape, vocab_size: usize, max_seq_len: usize) -> LmConfig {
        LmConfig {
            vocab_size,
            dim: shape.dim,
            layers: self.layers(),
            heads: shape.heads,
            ffn_hidden: shape.ffn_hidden,
            max_seq_len,
            memory: self.memory().map(|variant| MemoryConfig {
                // The second block: with two blocks the first still builds
                // the features the memory's queries are made of.
                layers: vec![1],
                n_keys: shape.n_keys,
                k: shape.k,
                heads: shape.memory_heads,
                key_dim: shape.key_dim,
                query_batch_norm: true,
                variant,
            }),
            ..LmConfig::default()
        }
    }
}

impl FromStr for Preset {
    type Err = LmTrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Preset::ALL.iter().map(|p| p.name()).collect();
                LmTrainError::Invalid(format!(
                    "unknown model {s:?}; expected one of {} or all",
                    names.join(", ")
                ))
            })
    }
}

/// The widths every preset shares.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelShape {
    /// Residual width. 256: the 2-block dense model then trains at a few
    /// thousand tokens/s on two cores, so four models × 1M tokens fit in
    /// well under an hour; at 512 every step costs ~3-4× more, and at 128
    /// the dense blocks are so small that the output layer dominates.
    pub dim: usize,
    /// Attention heads (64 wide each).
    pub heads: usize,
    /// SwiGLU hidden width: 3 × dim, about the 8/3 × dim that keeps a
    /// SwiGLU's parameters equal to a 4 × dim GELU network's.
    pub ffn_hidden: usize,
    /// Memory `n`: `N = n²` = 36,864 values (9.4M parameters at dim 256).
    /// The value table takes a dense gradient and AdamW update every step
    /// on CPU, and the trained models are committed as f16 files, which
    /// must stay under 25 MB: with 192 keys the memory models are 11.8M
    /// parameters (23.7 MB); with the paper-like 256 (65,536 values) they
    /// would be 19.2M (38 MB). `mnemos train lm --memory-keys 256` trains
    /// the larger ones.
    pub n_keys: usize,
    /// Memory `k`, the paper's 32.
    pub k: usize,
    /// Memory heads `H`, the paper's 4.
    pub memory_heads: usize,
    /// Query width per memory head (mnemos-lm's default, half the paper's
    /// 256 for a model half as wide as its smallest).
    pub key_dim: usize,
}

impl Default for ModelShape {
    fn default() -> Self {
        let memory = MemoryConfig::default();
        Self {
            dim: 256,
            heads: 4,
            ffn_hidden: 768,
            n_keys: 192,
            k: memory.k,
            memory_heads: memory.heads,
            key_dim: memory.key_dim,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_differ_only_in_depth_and_memory() {
        let shape = ModelShape::default();
        let configs: Vec<LmConfig> = Preset::ALL
            .iter()
            .map(|p| p.config(&shape, 4096, 256))
            .collect();
        for c in &configs {
            c.validate().expect("valid");
            assert_eq!(
                (c.dim, c.heads, c.vocab_size, c.ffn_hidden),
                (256, 4, 4096, 768)
            );
            // Apart from depth and memory, identical to the 2-layer model.
            let stripped = LmConfig {
                layers: 2,
                memory: None,
                ..c.clone()
            };
            assert_eq!(stripped, configs[0]);
        }
        assert_eq!(
            configs.iter().map(|c| c.layers).collect::<Vec<_>>(),
            [2, 4, 2, 2]
        );
        assert!(configs[0].memory.is_none() && configs[1].memory.is_none());
        let pkm = configs[2].memory.as_ref().expect("pkm");
        let plus = configs[3].memory.as_ref().expect("memory+");
        assert_eq!(pkm.variant, MemoryVariant::Pkm);
        assert_eq!(plus.variant, MemoryVariant::MemoryPlus);
        assert_eq!(
            (pkm.layers.as_slice(), pkm.num_values(), pkm.k, pkm.heads),
            (&[1][..], 36_864, 32, 4)
        );
        assert_eq!(
            MemoryConfig {
                variant: MemoryVariant::Pkm,
                ..plus.clone()
            },
            *pkm
        );
        // Memory models hold far more parameters (the values) than the
        // deep model, which holds more than the shallow one.
        let params: Vec<usize> = configs.iter().map(LmConfig::num_parameters).collect();
        assert!(params[0] < params[1] && params[1] < params[2] && params[2] < params[3]);
    }

    #[test]
    fn names_round_trip() {
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>().expect("parse"), p);
            assert_eq!(
                serde_json::to_string(&p).expect("json"),
                format!("\"{}\"", p.name())
            );
        }
        assert!("tiny-3l".parse::<Preset>().is_err());
        assert_eq!(crate::presets_named("all").expect("all"), Preset::ALL);
        assert_eq!(
            crate::presets_named("tiny-4l").expect("one"),
            [Preset::Tiny4l]
        );
    }
}
