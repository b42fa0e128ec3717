//! The decoder: token embeddings, pre-norm transformer blocks (attention,
//! then a SwiGLU network or a memory layer), a final RMSNorm and the output
//! projection; saving and loading in the hub layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::attention::{Attention, KvCache};
use crate::config::{LmConfig, MemoryVariant};
use crate::error::{LmError, Result};
use crate::ffn::SwiGlu;
use crate::ops::linear;
use crate::params::{Init, ParamSource};
use crate::pkm::MemoryLayer;
use crate::rmsnorm::RmsNorm;
use crate::rope::Rope;
use crate::subkeys::KeyPrecision;

pub use mnemos_models_core::hub::{CONFIG_FILE, WEIGHTS_FILE};
/// See [`CONFIG_FILE`]; written by [`crate::LmTokenizer::save`].
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Name of the value table shared by Memory+ layers.
pub(crate) const SHARED_VALUES: &str = "memory.values";

/// What follows attention in a block.
#[derive(Debug, Clone)]
enum Mixer {
    Ffn(SwiGlu),
    Memory(MemoryLayer),
}

#[derive(Debug, Clone)]
struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    mixer_norm: RmsNorm,
    mixer: Mixer,
}

/// A decoder-only transformer language model, optionally with
/// product-key memory layers (SPECS §4).
#[derive(Debug, Clone)]
pub struct Lm {
    config: LmConfig,
    /// `(vocab, dim)`; also the output projection when tied.
    embed: Tensor,
    blocks: Vec<Block>,
    norm: RmsNorm,
    /// `(vocab, dim)` when the embeddings are not tied.
    head: Option<Tensor>,
    rope: Rope,
    /// Every trainable tensor with its name in `model.safetensors`.
    params: Vec<(String, Tensor)>,
}

impl Lm {
    /// A new, untrained model; the same `seed` gives the same weights.
    pub fn new(config: LmConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut src = ParamSource::random(seed, &Device::Cpu);
        Self::build(config, &mut src)?.finish(src)
    }

    fn build(config: LmConfig, src: &mut ParamSource) -> Result<Self> {
        let (d, v) = (config.dim, config.vocab_size);
        let std = config.init_std;
        let out_std = std / (2.0 * config.layers as f64).sqrt();
        let eps = config.norm_eps;
        let embed = src.param("embed.weight", (v, d), Init::Normal(std))?;
        let shared = match &config.memory {
            Some(m) if m.variant == MemoryVariant::MemoryPlus => Some(src.param(
                SHARED_VALUES,
                (m.num_values(), d),
                Init::Normal(1.0 / (d as f64).sqrt()),
            )?),
            _ => None,
        };
        let mut blocks = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let p = format!("layers.{i}");
            let attn_norm = RmsNorm::build(src, &format!("{p}.attn_norm.weight"), d, eps)?;
            let attn = Attention::build(src, &format!("{p}.attn"), d, config.heads, std, out_std)?;
            let mixer_norm = RmsNorm::build(src, &format!("{p}.mixer_norm.weight"), d, eps)?;
            let mixer = match &config.memory {
                Some(m) if m.layers.contains(&i) => Mixer::Memory(MemoryLayer::build(
                    src,
                    &format!("{p}.memory"),
                    m,
                    d,
                    std,
                    out_std,
                    shared.as_ref(),
                )?),
                _ => Mixer::Ffn(SwiGlu::build(
                    src,
                    &format!("{p}.ffn"),
                    d,
                    config.ffn_hidden,
                    std,
                    out_std,
                )?),
            };
            blocks.push(Block {
                attn_norm,
                attn,
                mixer_norm,
                mixer,
            });
        }
        let norm = RmsNorm::build(src, "norm.weight", d, eps)?;
        let head = if config.tie_embeddings {
            None
        } else {
            Some(src.param("lm_head.weight", (v, d), Init::Normal(std))?)
        };
        let rope = Rope::new(
            config.head_dim(),
            config.max_seq_len,
            config.rope_theta,
            &Device::Cpu,
        )?;
        Ok(Self {
            config,
            embed,
            blocks,
            norm,
            head,
            rope,
            params: Vec::new(),
        })
    }

    fn finish(mut self, src: ParamSource) -> Result<Self> {
        self.params = src.finish()?;
        Ok(self)
    }

    /// The same model built from `tensors` (named as in
    /// [`Lm::named_tensors`]): how the trainer swaps in its variables.
    pub(crate) fn rebuild(&self, tensors: HashMap<String, Tensor>) -> Result<Self> {
        let mut src = ParamSource::stored(tensors, PathBuf::from("<in memory>"), &Device::Cpu);
        Self::build(self.config.clone(), &mut src)?.finish(src)
    }

    /// The configuration.
    pub fn config(&self) -> &LmConfig {
        &self.config
    }

    /// Trainable scalars; equals [`LmConfig::num_parameters`].
    pub fn num_parameters(&self) -> usize {
        self.params.iter().map(|(_, t)| t.elem_count()).sum()
    }

    /// The trainable tensors by name.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Every tensor of `model.safetensors`: the trainable ones, then the
    /// memory layers' batch-norm running statistics.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = self.params.clone();
        for (i, layer) in self.memory_layers() {
            out.extend(layer.buffers(&format!("layers.{i}.memory")));
        }
        out
    }

    /// The memory layers with their block index.
    pub fn memory_layers(&self) -> Vec<(usize, &MemoryLayer)> {
        self.blocks
            .iter()
            .enumerate()
            .filter_map(|(i, b)| match &b.mixer {
                Mixer::Memory(m) => Some((i, m)),
                Mixer::Ffn(_) => None,
            })
            .collect()
    }

    /// Packs every memory layer's sub-keys for inference
    /// ([`MemoryLayer::pack_keys`]); for a model that is served, not
    /// trained further. Returns the layers packed.
    pub fn pack_memory_keys(&mut self) -> Result<usize> {
        self.pack_memory_keys_as(KeyPrecision::F16)
    }

    /// [`Lm::pack_memory_keys`] in the given precision
    /// ([`MemoryLayer::pack_keys_as`]).
    pub fn pack_memory_keys_as(&mut self, precision: KeyPrecision) -> Result<usize> {
        let mut packed = 0;
        for block in &mut self.blocks {
            if let Mixer::Memory(layer) = &mut block.mixer {
                layer.pack_keys_as(precision)?;
                packed += 1;
            }
        }
        Ok(packed)
    }

    /// Serves the memory layers' value tables in pages of `rows_per_page`
    /// rows through `tiers` (written under `{prefix}/layer-{i}/` in the warm
    /// directory, and published when the tiers have a cold store); a
    /// Memory+ model's shared table is paged once. Returns the pages
    /// written. Inference only: training reads the in-memory tables.
    pub fn page_memory_values(
        &mut self,
        tiers: &mnemos_tiers::Tiers,
        rows_per_page: usize,
        prefix: &str,
        publish: bool,
    ) -> Result<usize> {
        let mut shared: Option<std::sync::Arc<crate::PagedValues>> = None;
        let mut pages = 0;
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let Mixer::Memory(layer) = &mut block.mixer else {
                continue;
            };
            let is_shared = layer.config().variant == crate::MemoryVariant::MemoryPlus;
            let paged = match (&shared, is_shared) {
                (Some(p), true) => std::sync::Arc::clone(p),
                _ => {
                    let name = if is_shared {
                        "shared".to_string()
                    } else {
                        format!("layer-{i}")
                    };
                    let p = std::sync::Arc::new(crate::PagedValues::export(
                        &layer.value_table()?,
                        self.config.dim,
                        rows_per_page,
                        tiers.clone(),
                        &format!("{prefix}/{name}"),
                        publish,
                    )?);
                    pages += p.pages().len();
                    if is_shared {
                        shared = Some(std::sync::Arc::clone(&p));
                    }
                    p
                }
            };
            layer.set_paged_values(Some(paged))?;
        }
        Ok(pages)
    }

    /// Next-token logits `(B, S, vocab)` for token ids `(B, S)` (u32),
    /// for inference: memory lookups take their fast path and batch norm
    /// its running statistics.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.run(ids, None, false)
    }

    /// The same, differentiably and with batch-norm statistics of this
    /// batch (which also move the running statistics): for training.
    pub fn forward_train(&self, ids: &Tensor) -> Result<Tensor> {
        self.run(ids, None, true)
    }

    /// Inference on tokens that follow those already in `cache`, which is
    /// extended with them: prefill a prompt in one call, then pass one
    /// token per call. Logits are `(B, S, vocab)` for the new tokens only.
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        if cache.layers.is_empty() {
            cache.layers = vec![None; self.blocks.len()];
        } else if cache.layers.len() != self.blocks.len() {
            return Err(LmError::InvalidInput(format!(
                "the KV cache holds {} blocks, the model has {}",
                cache.layers.len(),
                self.blocks.len()
            )));
        }
        let logits = self.run(ids, Some(cache), false)?;
        cache.len += ids.dim(1)?;
        Ok(logits)
    }

    fn run(&self, ids: &Tensor, mut cache: Option<&mut KvCache>, train: bool) -> Result<Tensor> {
        let ids = self.check_ids(ids, cache.as_ref().map_or(0, |c| c.len))?;
        let (b, s) = ids.dims2()?;
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let d = self.config.dim;
        let mut x = self
            .embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, s, d))?;
        for (i, block) in self.blocks.iter().enumerate() {
            let _span = tracing::trace_span!("block", i).entered();
            let slot = cache.as_mut().map(|c| &mut c.layers[i]);
            let h = block.attn_norm.forward(&x, train)?;
            x = (x + block.attn.forward(&h, &self.rope, offset, slot, train)?)?;
            let h = block.mixer_norm.forward(&x, train)?;
            let y = match (&block.mixer, train) {
                (Mixer::Ffn(ffn), _) => ffn.forward(&h)?,
                (Mixer::Memory(m), true) => m.forward_train(&h)?,
                (Mixer::Memory(m), false) => m.forward(&h)?,
            };
            x = (x + y)?;
        }
        let x = self.norm.forward(&x, train)?;
        linear(&x, self.head.as_ref().unwrap_or(&self.embed))
    }

    /// `ids` as `(B, S)` u32 ids inside the vocabulary and the context.
    fn check_ids(&self, ids: &Tensor, offset: usize) -> Result<Tensor> {
        let bad = |msg: String| Err(LmError::InvalidInput(msg));
        let Ok((b, s)) = ids.dims2() else {
            return bad(format!(
                "token ids must be (batch, seq), got {:?}",
                ids.dims()
            ));
        };
        if b == 0 || s == 0 {
            return bad(format!("token ids must not be empty, got {:?}", ids.dims()));
        }
        if offset + s > self.config.max_seq_len {
            return bad(format!(
                "{} tokens exceed the context of {} (max_seq_len)",
                offset + s,
                self.config.max_seq_len
            ));
        }
        let ids = match ids.dtype() {
            DType::U32 => ids.clone(),
            DType::U8 | DType::I64 => ids.to_dtype(DType::U32)?,
            other => return bad(format!("token ids must be u32, got {other:?}")),
        };
        let max = ids.max_all()?.to_scalar::<u32>()? as usize;
        if max >= self.config.vocab_size {
            return bad(format!(
                "token id {max} is outside the vocabulary of {}",
                self.config.vocab_size
            ));
        }
        Ok(ids)
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if
    /// absent), the weights as `dtype` (`F16`/`BF16` halve the file; `F32`
    /// keeps outputs bit-identical after loading).
    pub fn save(&self, dir: &Path, dtype: DType) -> Result<()> {
        let config = serde_json::to_string_pretty(&self.config)
            .map_err(|err| LmError::Config(err.to_string()))?;
        mnemos_models_core::hub::save_hub_dir(dir, &config, self.named_tensors(), dtype).map_err(
            |e| match e {
                mnemos_models_core::ModelError::InvalidInput(m) => LmError::InvalidInput(m),
                mnemos_models_core::ModelError::Io { path, source } => LmError::Io { path, source },
                other => LmError::Config(other.to_string()),
            },
        )
    }

    /// Loads a model saved by [`Lm::save`] (or any directory with a
    /// matching `config.json` and `model.safetensors`). Weights of any
    /// float dtype load as f32. Every tensor must be present with the
    /// shape the configuration implies, and no other may be present.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str, what: &'static str| -> Result<Vec<u8>> {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(LmError::MissingFile { path, what });
            }
            std::fs::read(&path).map_err(|source| LmError::Io { path, source })
        };
        let config_path = dir.join(CONFIG_FILE);
        let bad_config = |message: String| LmError::Model {
            path: config_path.clone(),
            message,
        };
        let config: LmConfig = serde_json::from_slice(&read(CONFIG_FILE, "model configuration")?)
            .map_err(|err| bad_config(err.to_string()))?;
        config
            .validate()
            .map_err(|err| bad_config(err.to_string()))?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = read(WEIGHTS_FILE, "model weights")?;
        let tensors =
            candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|err| {
                LmError::Model {
                    path: weights_path.clone(),
                    message: err.to_string(),
                }
            })?;
        let mut src = ParamSource::stored(tensors, weights_path, &Device::Cpu);
        Self::build(config, &mut src)?.finish(src)
    }
}
