//! The shape of a Llama-architecture model, read from its GGUF metadata.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde::Serialize;

use crate::error::{LlamaError, Result};

/// What the forward pass needs to know about a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlamaConfig {
    /// Tokens in the vocabulary (rows of the embedding table).
    pub vocab_size: usize,
    /// Residual width.
    pub dim: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention: `heads` is a multiple).
    pub kv_heads: usize,
    /// SwiGLU hidden units of each block's feed-forward network.
    pub ffn_hidden: usize,
    /// Rotary frequency base.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
    /// The context the model was trained for.
    pub context_length: usize,
}

impl LlamaConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }

    /// Reads the `<arch>.*` keys of a GGUF file's metadata. Only the Llama
    /// architecture is accepted: others differ in ways (biases, norms,
    /// rotary layout) that this forward pass does not implement.
    pub fn from_gguf(metadata: &HashMap<String, Value>, path: &Path) -> Result<Self> {
        let bad = |message: String| LlamaError::Model {
            path: path.to_path_buf(),
            message,
        };
        let arch = metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| bad("no general.architecture in the metadata".into()))?;
        if arch != "llama" {
            return Err(bad(format!(
                "architecture {arch:?} is not supported (only llama)"
            )));
        }
        let int = |key: &str| -> Result<usize> {
            let full = format!("llama.{key}");
            let v = metadata
                .get(&full)
                .ok_or_else(|| bad(format!("metadata key {full} is missing")))?;
            v.to_u64()
                .or_else(|_| v.to_u32().map(u64::from))
                .map(|n| n as usize)
                .map_err(|e| bad(format!("{full}: {e}")))
        };
        let float = |key: &str, default: f64| -> Result<f64> {
            let full = format!("llama.{key}");
            match metadata.get(&full) {
                None => Ok(default),
                Some(v) => v
                    .to_f32()
                    .map(f64::from)
                    .or_else(|_| v.to_f64())
                    .map_err(|e| bad(format!("{full}: {e}"))),
            }
        };
        let heads = int("attention.head_count")?;
        let config = LlamaConfig {
            vocab_size: match int("vocab_size") {
                Ok(n) => n,
                Err(_) => metadata
                    .get("tokenizer.ggml.tokens")
                    .and_then(|v| v.to_vec().ok())
                    .map(|t| t.len())
                    .ok_or_else(|| bad("no vocabulary size in the metadata".into()))?,
            },
            dim: int("embedding_length")?,
            layers: int("block_count")?,
            heads,
            kv_heads: int("attention.head_count_kv").unwrap_or(heads),
            ffn_hidden: int("feed_forward_length")?,
            rope_theta: float("rope.freq_base", 10_000.0)? as f32,
            norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5)?,
            context_length: int("context_length").unwrap_or(2048),
        };
        config.validate().map_err(bad)?;
        Ok(config)
    }

    /// Checks that the shapes fit together; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("dim", self.dim),
            ("layers", self.layers),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("ffn_hidden", self.ffn_hidden),
            ("context_length", self.context_length),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if !self.dim.is_multiple_of(self.heads) || !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "dim {} must split into {} heads of even width",
                self.dim, self.heads
            ));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "heads {} must be a multiple of kv_heads {}",
                self.heads, self.kv_heads
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(format!(
                "rope_theta must be positive, got {}",
                self.rope_theta
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(format!("norm_eps must be positive, got {}", self.norm_eps));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(arch: &str) -> HashMap<String, Value> {
        let mut m = HashMap::new();
        m.insert("general.architecture".into(), Value::String(arch.into()));
        for (k, v) in [
            ("vocab_size", 100u32),
            ("embedding_length", 64),
            ("block_count", 2),
            ("attention.head_count", 4),
            ("attention.head_count_kv", 2),
            ("feed_forward_length", 96),
            ("context_length", 512),
        ] {
            m.insert(format!("llama.{k}"), Value::U32(v));
        }
        m.insert("llama.rope.freq_base".into(), Value::F32(1e5));
        m
    }

    #[test]
    fn reads_llama_metadata_and_rejects_other_architectures() {
        let p = Path::new("x.gguf");
        let c = LlamaConfig::from_gguf(&metadata("llama"), p).expect("config");
        assert_eq!((c.dim, c.heads, c.kv_heads, c.head_dim()), (64, 4, 2, 16));
        assert_eq!((c.rope_theta, c.norm_eps), (1e5, 1e-5));
        let err = LlamaConfig::from_gguf(&metadata("gpt2"), p).unwrap_err();
        assert!(err.to_string().contains("gpt2"), "{err}");
        let mut odd = metadata("llama");
        odd.insert("llama.attention.head_count_kv".into(), Value::U32(3));
        let err = LlamaConfig::from_gguf(&odd, p).unwrap_err();
        assert!(err.to_string().contains("kv_heads"), "{err}");
        let mut missing = metadata("llama");
        missing.remove("llama.block_count");
        let err = LlamaConfig::from_gguf(&missing, p).unwrap_err();
        assert!(err.to_string().contains("block_count"), "{err}");
    }
}
