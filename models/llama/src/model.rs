//! The forward pass of a Llama-architecture decoder over quantized GGUF
//! weights: pre-norm blocks of grouped-query attention with rotary
//! positions and a SwiGLU network, a final RMSNorm and an output
//! projection (tied to the embeddings when the file has no `output`).
//!
//! Weights stay quantized: every projection is a candle `QMatMul` (for
//! SmolLM2's Q4_1, ~80 MB instead of 540 MB of f32, and a decoding step
//! reads ~7× fewer bytes), the embedding rows are dequantized per lookup.
//! GGUF files store Llama's query and key rows permuted for interleaved
//! rotary pairs (llama.cpp's convention), so positions use `rope_i`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use tokenizers::Tokenizer;

use mnemos_models_core::ModelError;

use crate::config::LlamaConfig;
use crate::error::{LlamaError, Result};
use crate::ops::{causal_mask, rotary_tables, BlockStep, Ops};
use crate::tokenizer::{self, SpecialTokens};
use crate::units::FfnUnits;

/// Positions for which rotary tables are precomputed at most; the usable
/// context is the smaller of this and the model's own.
pub const MAX_POSITIONS: usize = 8192;

struct Block {
    attn_norm: Tensor,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    ffn_norm: Tensor,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
}

/// Keys and values of the positions seen so far, per block.
#[derive(Debug, Clone, Default)]
pub struct LlamaCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl LlamaCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A loaded model with its tokenizer.
pub struct Llama {
    config: LlamaConfig,
    embeddings: Arc<QTensor>,
    blocks: Vec<Block>,
    norm: Tensor,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    tokenizer: Tokenizer,
    special: SpecialTokens,
    parameters: usize,
    format: WeightFormat,
    path: PathBuf,
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llama")
            .field("config", &self.config)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The GGUF file of `path`: the file itself, or the one `.gguf` file in a
/// model directory (the layout `scripts/install-models.sh` writes).
pub fn find_gguf(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let missing = || {
        LlamaError::File(ModelError::MissingFile {
            path: path.to_path_buf(),
            what: "a GGUF model file (or a directory holding one)",
        })
    };
    let entries = std::fs::read_dir(path).map_err(|_| missing())?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf") && p.is_file())
        .collect();
    found.sort();
    match found.len() {
        0 => Err(missing()),
        1 => Ok(found.remove(0)),
        _ => Err(LlamaError::Model {
            path: path.to_path_buf(),
            message: format!("{} .gguf files; keep one per model directory", found.len()),
        }),
    }
}

/// How the projection weights are held in memory.
///
/// Measured on SmolLM2-135M Q4_1, idle 2-core EPYC
/// (`examples/smollm_probe.rs`): f32 decodes 23.9 tokens/s and scores 301
/// tokens/s (WikiText, 512-token windows, ppl 18.71); Q8_0 decodes 67.2
/// and scores 99 (ppl 18.82); the file's own Q4_1, which has no SIMD
/// kernel in candle, decoded 3.0 and scored 15 (measured while other jobs
/// ran). f32 is the default: exact (the stored values, where the quantized
/// products also round the activations to 8 bits — with Q8_0 the greedy
/// answer to "What is the capital of France?" is no longer "Paris"),
/// fastest for scoring, and the only format memory units can be trained
/// through (quantized products have no backward).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// As stored in the file (least memory).
    Native,
    /// Re-quantized to 8-bit blocks (Q8_0) at load: ~1 byte per parameter.
    Q8_0,
    /// Dequantized to f32 (4 bytes per parameter, ~540 MB for SmolLM2).
    #[default]
    F32,
}

impl Llama {
    /// Loads a GGUF model (a file, or a directory holding one), with its
    /// projections in the default [`WeightFormat`].
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, WeightFormat::default())
    }

    /// Loads a GGUF model holding its projections in `format`.
    pub fn load_with(path: &Path, format: WeightFormat) -> Result<Self> {
        let path = find_gguf(path)?;
        let io = |source| {
            LlamaError::File(ModelError::Io {
                path: path.clone(),
                source,
            })
        };
        let bad = |message: String| LlamaError::Model {
            path: path.clone(),
            message,
        };
        let mut reader = BufReader::new(File::open(&path).map_err(io)?);
        let content = gguf_file::Content::read(&mut reader)
            .map_err(|e| bad(format!("not a readable GGUF file: {e}")))?;
        let config = LlamaConfig::from_gguf(&content.metadata, &path)?;
        let (tokenizer, special) = tokenizer::from_gguf(&content.metadata, &path)?;
        let dev = Device::Cpu;
        let mut parameters = 0usize;
        let mut tensor = |name: &str, shape: &[usize]| -> Result<QTensor> {
            let t = content
                .tensor(&mut reader, name, &dev)
                .map_err(|e| bad(format!("tensor {name}: {e}")))?;
            if t.shape().dims() != shape {
                return Err(bad(format!(
                    "tensor {name} has shape {:?}, expected {shape:?}",
                    t.shape().dims()
                )));
            }
            parameters += t.shape().elem_count();
            Ok(t)
        };
        let (d, kv) = (config.dim, config.kv_heads * config.head_dim());
        let vector = |t: QTensor| -> Result<Tensor> { Ok(t.dequantize(&dev)?) };
        let shared = |t: Arc<QTensor>| -> Result<QMatMul> {
            Ok(match format {
                WeightFormat::Native => QMatMul::from_arc(t)?,
                WeightFormat::Q8_0 if t.dtype() == GgmlDType::Q8_0 => QMatMul::from_arc(t)?,
                WeightFormat::Q8_0 => QMatMul::from_qtensor(QTensor::quantize(
                    &t.dequantize(&dev)?,
                    GgmlDType::Q8_0,
                )?)?,
                WeightFormat::F32 => QMatMul::Tensor(t.dequantize(&dev)?),
            })
        };
        let matmul = |t: QTensor| shared(Arc::new(t));

        let embeddings = Arc::new(tensor("token_embd.weight", &[config.vocab_size, d])?);
        let mut blocks = Vec::with_capacity(config.layers);
        for l in 0..config.layers {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            let f = config.ffn_hidden;
            blocks.push(Block {
                attn_norm: vector(tensor(&n("attn_norm"), &[d])?)?,
                wq: matmul(tensor(&n("attn_q"), &[d, d])?)?,
                wk: matmul(tensor(&n("attn_k"), &[kv, d])?)?,
                wv: matmul(tensor(&n("attn_v"), &[kv, d])?)?,
                wo: matmul(tensor(&n("attn_output"), &[d, d])?)?,
                ffn_norm: vector(tensor(&n("ffn_norm"), &[d])?)?,
                gate: matmul(tensor(&n("ffn_gate"), &[f, d])?)?,
                up: matmul(tensor(&n("ffn_up"), &[f, d])?)?,
                down: matmul(tensor(&n("ffn_down"), &[d, f])?)?,
            });
        }
        let norm = vector(tensor("output_norm.weight", &[d])?)?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            matmul(tensor("output.weight", &[config.vocab_size, d])?)?
        } else {
            shared(embeddings.clone())?
        };
        let (cos, sin) = rotary_tables(&config)?;
        tracing::info!(
            path = %path.display(),
            layers = config.layers,
            dim = config.dim,
            parameters,
            "loaded GGUF model"
        );
        Ok(Self {
            config,
            embeddings,
            blocks,
            norm,
            output,
            cos,
            sin,
            tokenizer,
            special,
            parameters,
            format,
            path,
        })
    }

    /// How the projections are held.
    pub fn weight_format(&self) -> WeightFormat {
        self.format
    }

    /// The model's shape.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Parameters in the weights file.
    pub fn num_parameters(&self) -> usize {
        self.parameters
    }

    /// Positions the model can attend over.
    pub fn max_positions(&self) -> usize {
        self.config.context_length.min(MAX_POSITIONS)
    }

    /// The tokenizer rebuilt from the file's metadata.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Special token ids from the metadata.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The GGUF file the model came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Token ids of `text` (no special tokens added; a BOS is prepended
    /// only if the file says the model wants one).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| LlamaError::Tokenizer(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.special.add_bos {
            ids.extend(self.special.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// The text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| LlamaError::Tokenizer(e.to_string()))
    }

    /// Runs `tokens` (the positions after those in `cache`) through the
    /// blocks, with `units` appended to the feed-forward networks they
    /// name, and returns the final normalised hidden states `[t, dim]`.
    /// The cache grows by `tokens.len()`.
    pub fn forward_hidden(
        &self,
        tokens: &[u32],
        cache: &mut LlamaCache,
        units: Option<&FfnUnits>,
    ) -> Result<Tensor> {
        let x = self.embed(tokens, cache.len)?;
        let t = tokens.len();
        let x = self.run_blocks(x, 0..self.blocks.len(), cache, units, Ops::Fused)?;
        cache.len += t;
        let x = Ops::Fused.rms_norm(&x, &self.norm, self.config.norm_eps)?;
        Ok(x.squeeze(0)?)
    }

    /// The residual stream `[1, t, dim]` entering block `first` for a
    /// sequence starting at position 0, without memory units: what stays
    /// fixed while units in blocks `first..` train, so it is computed once
    /// per training text.
    pub fn hidden_before(&self, tokens: &[u32], first: usize) -> Result<Tensor> {
        if first > self.blocks.len() {
            return Err(LlamaError::InvalidInput(format!(
                "block {first} does not exist (the model has {})",
                self.blocks.len()
            )));
        }
        let x = self.embed(tokens, 0)?;
        let mut cache = LlamaCache::new();
        self.run_blocks(x, 0..first, &mut cache, None, Ops::Fused)
    }

    /// Next-token logits `[t, vocab]` from the residual stream `x` entering
    /// block `first` (see [`Self::hidden_before`]), through blocks
    /// `first..` with `units`, in ops that carry gradients to the units.
    /// Needs f32 weights: candle's quantized products have no backward.
    pub fn train_logits(&self, x: &Tensor, first: usize, units: &FfnUnits) -> Result<Tensor> {
        if self.format != WeightFormat::F32 {
            return Err(LlamaError::InvalidInput(
                "training memory units needs the anchor loaded with f32 weights".into(),
            ));
        }
        if let Some(&l) = units.layers.keys().find(|&&l| l < first) {
            return Err(LlamaError::InvalidInput(format!(
                "units in block {l} lie below the first trained block {first}"
            )));
        }
        let mut cache = LlamaCache::new();
        let x = self.run_blocks(
            x.clone(),
            first..self.blocks.len(),
            &mut cache,
            Some(units),
            Ops::Differentiable,
        )?;
        let x = Ops::Differentiable.rms_norm(&x, &self.norm, self.config.norm_eps)?;
        self.logits(&x.squeeze(0)?)
    }

    /// Embeddings `[1, t, dim]` of `tokens`, checked against the vocabulary
    /// and the context left after `start` positions.
    fn embed(&self, tokens: &[u32], start: usize) -> Result<Tensor> {
        let t = tokens.len();
        if t == 0 {
            return Err(LlamaError::InvalidInput("no tokens to run".into()));
        }
        if start + t > self.max_positions() {
            return Err(LlamaError::InvalidInput(format!(
                "{} positions exceed the model's context of {}",
                start + t,
                self.max_positions()
            )));
        }
        if let Some(&bad) = tokens
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(LlamaError::InvalidInput(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab_size
            )));
        }
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        Ok(self.embeddings.embedding(&ids)?.unsqueeze(0)?)
    }

    /// Blocks `range` over `x: [1, t, dim]`, whose first position is
    /// `cache.len` (the cache is not advanced here).
    fn run_blocks(
        &self,
        mut x: Tensor,
        range: std::ops::Range<usize>,
        cache: &mut LlamaCache,
        units: Option<&FfnUnits>,
        ops: Ops,
    ) -> Result<Tensor> {
        let (start, t) = (cache.len, x.dim(1)?);
        if let Some(u) = units {
            u.check(self.config.layers, self.config.dim)?;
        }
        if cache.layers.len() != self.blocks.len() {
            cache.layers = vec![None; self.blocks.len()];
        }
        let cos = self.cos.narrow(0, start, t)?;
        let sin = self.sin.narrow(0, start, t)?;
        let mask = causal_mask(t, start, self.config.heads / self.config.kv_heads)?;
        for l in range {
            let extra = units.and_then(|u| u.layers.get(&l));
            let step = BlockStep {
                cos: &cos,
                sin: &sin,
                mask: mask.as_ref(),
                ops,
            };
            x = self.block_forward(&self.blocks[l], &x, &step, &mut cache.layers[l], extra)?;
        }
        Ok(x)
    }

    /// Next-token logits `[t, vocab]` of hidden states from
    /// [`Self::forward_hidden`].
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.output.forward(&hidden.contiguous()?)?)
    }

    fn block_forward(
        &self,
        b: &Block,
        x: &Tensor,
        step: &BlockStep,
        cache: &mut Option<(Tensor, Tensor)>,
        extra: Option<&crate::units::UnitWeights>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (hd, t) = (c.head_dim(), x.dim(1)?);
        let (ops, eps) = (step.ops, c.norm_eps);
        let h = ops.rms_norm(x, &b.attn_norm, eps)?;
        let heads = |p: &QMatMul, n: usize| -> Result<Tensor> {
            Ok(p.forward(&h)?
                .reshape((1, t, n, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = ops.rope(&heads(&b.wq, c.heads)?, step.cos, step.sin)?;
        let k = ops.rope(&heads(&b.wk, c.kv_heads)?, step.cos, step.sin)?;
        let v = heads(&b.wv, c.kv_heads)?;
        let (k, v) = match cache.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        *cache = Some((k.clone(), v.clone()));
        // Grouped-query attention without copying keys: the `rep` query
        // heads that share a key/value head become `rep·t` rows of it.
        let rep = c.heads / c.kv_heads;
        let q = q.reshape((1, c.kv_heads, rep * t, hd))?;
        let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
        let scores = match step.mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let att = ops.softmax(&scores)?;
        let y = att
            .matmul(&v)?
            .reshape((1, c.heads, t, hd))?
            .transpose(1, 2)?
            .reshape((1, t, c.dim))?;
        let x = (x + b.wo.forward(&y)?)?;

        let h = ops.rms_norm(&x, &b.ffn_norm, eps)?;
        let hidden = (candle_nn::ops::silu(&b.gate.forward(&h)?)? * b.up.forward(&h)?)?;
        let mut ffn = b.down.forward(&hidden)?;
        if let Some(u) = extra {
            ffn = (ffn + u.forward(&h)?)?;
        }
        Ok((x + ffn)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_resolve_to_their_one_gguf_file() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(find_gguf(dir.path()).is_err());
        std::fs::write(dir.path().join("m.gguf"), b"x").expect("write");
        std::fs::write(dir.path().join("config.json"), b"{}").expect("write");
        assert_eq!(
            find_gguf(dir.path()).expect("one"),
            dir.path().join("m.gguf")
        );
        std::fs::write(dir.path().join("n.gguf"), b"x").expect("write");
        assert!(find_gguf(dir.path())
            .unwrap_err()
            .to_string()
            .contains("2 .gguf"));
        // Not a GGUF file: a clear error, no panic.
        let err = Llama::load(&dir.path().join("m.gguf")).unwrap_err();
        assert!(err.to_string().contains("GGUF"), "{err}");
    }
}
