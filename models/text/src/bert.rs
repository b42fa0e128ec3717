//! The BERT encoder (Devlin et al. 2019, "BERT: Pre-training of Deep
//! Bidirectional Transformers for Language Understanding",
//! arXiv:1810.04805), inference only, on candle.
//!
//! Written for speed on one CPU thread rather than taken from
//! candle-transformers, whose BERT we measured at 0.85× PyTorch
//! (`PITFALLS.md`). A profile of that version on all-MiniLM-L6-v2 showed
//! three avoidable costs, removed here (end to end ~1.25× faster on one
//! thread, same outputs to cosine 1.000000):
//! - GELU through scalar libm `erff` (~18% of the time): see [`crate::gelu`];
//! - softmax composed of five tensor ops after a separate mask addition:
//!   one in-place masked softmax with a vectorised exp, see
//!   [`crate::softmax`] (at 256 tokens scalar `expf` alone was ~10%);
//! - separate query, key and value products and a separate `1/√d` scaling:
//!   one fused projection whose query rows are pre-scaled at load time.
//!
//! Later profiles of serving removed more:
//! - gemm re-packing each weight on every call, which dominated short
//!   inputs such as search queries: the linear layers multiply by weights
//!   packed once at load ([`crate::packed`]);
//! - layer norms handed to rayon's pool one call at a time (candle-nn's
//!   runs its rows through `par_iter`): our own, on the calling thread,
//!   with the residual addition in the same pass ([`crate::norm`]);
//! - padding: a batch runs its texts end to end as one `(tokens, hidden)`
//!   matrix, padded only inside attention ([`crate::ragged`]), so the
//!   linear layers never compute padding rows.
//!
//! The layer norms and the in-place softmax and GELU have no gradient:
//! do not fine-tune through this module.
//!
//! Tensor names follow Hugging Face's `BertModel` (an optional `bert.`
//! prefix is accepted), so any BERT checkpoint in safetensors loads.

use candle_core::{bail, Result, Tensor};
use candle_nn::{embedding, Embedding, Module, VarBuilder};
use serde::Deserialize;
use tracing::Span;

use crate::gelu::gelu_in_place;
use crate::norm::LayerNorm;
use crate::packed::FastLinear;
use crate::ragged::Ragged;
use crate::softmax::masked_softmax_in_place;

/// The parts of Hugging Face's `config.json` for BERT that inference uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: HiddenAct,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    #[serde(default)]
    pub model_type: Option<String>,
}

/// The feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HiddenAct {
    /// Exact GELU, with erf: what BERT and MiniLM use.
    Gelu,
    /// GELU's tanh approximation.
    #[serde(alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluNew,
    Relu,
}

impl BertConfig {
    /// Refuses configurations that would load but compute something else,
    /// e.g. RoBERTa, whose position ids start after the padding id.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self.model_type.as_deref() {
            None | Some("bert") => {}
            Some(other) => {
                return Err(format!(
                    "model_type {other:?} is not supported, only \"bert\""
                ))
            }
        }
        match self.position_embedding_type.as_deref() {
            None | Some("absolute") => {}
            Some(other) => {
                return Err(format!(
                    "position_embedding_type {other:?} is not supported"
                ))
            }
        }
        if self.hidden_size.checked_rem(self.num_attention_heads) != Some(0) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        Ok(())
    }
}

/// A BERT encoder: embeddings, then `num_hidden_layers` transformer layers.
pub(crate) struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    span: Span,
}

impl Bert {
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let embeddings = Embeddings::load(vb.pp("embeddings"), cfg)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), cfg, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            span: tracing::trace_span!("bert"),
        })
    }

    /// Token vectors `(tokens, hidden)` for a batch of texts laid end to
    /// end ([`Ragged`]): `ids` and `type_ids` are `(tokens)` u32, in the
    /// order of `batch`'s lengths.
    pub fn forward(&self, ids: &Tensor, type_ids: &Tensor, batch: &Ragged) -> Result<Tensor> {
        let _entered = self.span.enter();
        let positions = batch.positions(ids.device())?;
        let mut xs = self
            .embeddings
            .forward(ids, type_ids, &positions, batch.longest())?;
        for layer in &self.layers {
            xs = layer.forward(&xs, batch)?;
        }
        Ok(xs)
    }
}

struct Embeddings {
    word: Embedding,
    /// `(max_position_embeddings, hidden)`.
    position: Tensor,
    token_type: Embedding,
    norm: LayerNorm,
    span: Span,
}

impl Embeddings {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let hidden = cfg.hidden_size;
        Ok(Self {
            word: embedding(cfg.vocab_size, hidden, vb.pp("word_embeddings"))?,
            position: vb.get(
                (cfg.max_position_embeddings, hidden),
                "position_embeddings.weight",
            )?,
            token_type: embedding(cfg.type_vocab_size, hidden, vb.pp("token_type_embeddings"))?,
            norm: LayerNorm::load(hidden, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
            span: tracing::trace_span!("embeddings"),
        })
    }

    /// `(tokens, hidden)`; `longest` is the longest text's length, which
    /// must fit the position table.
    fn forward(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        positions: &Tensor,
        longest: usize,
    ) -> Result<Tensor> {
        let _entered = self.span.enter();
        if longest > self.position.dim(0)? {
            bail!(
                "{longest} tokens exceed the {} positions",
                self.position.dim(0)?
            );
        }
        let xs = ((self.word.forward(ids)? + self.token_type.forward(type_ids)?)?
            + self.position.index_select(positions, 0)?)?;
        // `xs` is the fresh sum above, shared with nothing.
        self.norm.forward_in_place(&xs)?;
        Ok(xs)
    }
}

/// One transformer layer: self-attention then feed-forward, each followed
/// by a residual connection and layer normalisation (post-LN, §3.1 of
/// Devlin et al., after Vaswani et al. 2017).
struct Layer {
    /// Query, key and value projections stacked: `(3·hidden, hidden)`.
    qkv: FastLinear,
    attn_out: FastLinear,
    attn_norm: LayerNorm,
    ffn_in: FastLinear,
    ffn_out: FastLinear,
    ffn_norm: LayerNorm,
    act: HiddenAct,
    heads: usize,
    head_dim: usize,
    span: Span,
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &BertConfig, index: usize) -> Result<Self> {
        let hidden = cfg.hidden_size;
        let heads = cfg.num_attention_heads;
        let head_dim = hidden / heads;
        let attn = vb.pp("attention");
        let proj = |name: &str| -> Result<(Tensor, Tensor)> {
            let p = attn.pp("self").pp(name);
            Ok((p.get((hidden, hidden), "weight")?, p.get(hidden, "bias")?))
        };
        let (qw, qb) = proj("query")?;
        let (kw, kb) = proj("key")?;
        let (vw, vb_) = proj("value")?;
        // Scaled dot-product attention divides scores by √d (Vaswani et al.
        // 2017, eq. 1); scaling the query projection once does the same.
        let scale = 1.0 / (head_dim as f64).sqrt();
        let qkv = FastLinear::new(
            Tensor::cat(&[&(qw * scale)?, &kw, &vw], 0)?,
            Tensor::cat(&[&(qb * scale)?, &kb, &vb_], 0)?,
        )?;
        let linear = |vb: VarBuilder, inputs: usize, outputs: usize| -> Result<FastLinear> {
            FastLinear::new(
                vb.get((outputs, inputs), "weight")?,
                vb.get(outputs, "bias")?,
            )
        };
        Ok(Self {
            qkv,
            attn_out: linear(attn.pp("output.dense"), hidden, hidden)?,
            attn_norm: LayerNorm::load(hidden, cfg.layer_norm_eps, attn.pp("output.LayerNorm"))?,
            ffn_in: linear(vb.pp("intermediate.dense"), hidden, cfg.intermediate_size)?,
            ffn_out: linear(vb.pp("output.dense"), cfg.intermediate_size, hidden)?,
            ffn_norm: LayerNorm::load(hidden, cfg.layer_norm_eps, vb.pp("output.LayerNorm"))?,
            act: cfg.hidden_act,
            heads,
            head_dim,
            span: tracing::trace_span!("bert_layer", index),
        })
    }

    /// `xs` `(tokens, hidden)`, the texts of `batch` end to end.
    fn forward(&self, xs: &Tensor, batch: &Ragged) -> Result<Tensor> {
        let _entered = self.span.enter();
        let hidden = xs.dim(1)?;
        let (texts, seq) = (batch.lengths().len(), batch.longest());

        // Attention alone needs the texts apart: (tokens, 3·hidden) ->
        // (texts, seq, 3, heads, head_dim) -> (3, texts, heads, seq, head_dim)
        let qkv = batch
            .pad(&self.qkv.forward(xs)?)?
            .reshape((texts, seq, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        // `probs` is this fresh product, turned into weights in place.
        let probs = q.matmul(&k.t()?)?;
        masked_softmax_in_place(&probs, batch.mask())?;
        let context = batch.unpad(
            &probs
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((texts, seq, hidden))?,
        )?;
        // Each projection's output is fresh: normalised in place, with the
        // residual added in the same pass.
        let attended = self.attn_out.forward(&context)?;
        self.attn_norm.add_forward_in_place(&attended, xs)?;
        let xs = attended;

        let inner = self.ffn_in.forward(&xs)?;
        let inner = match self.act {
            HiddenAct::Gelu => {
                // `inner` is this layer's fresh output, shared with nothing.
                gelu_in_place(&inner)?;
                inner
            }
            HiddenAct::GeluNew => inner.gelu()?,
            HiddenAct::Relu => inner.relu()?,
        };
        let out = self.ffn_out.forward(&inner)?;
        self.ffn_norm.add_forward_in_place(&out, &xs)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> BertConfig {
        serde_json::from_str(json).expect("valid config")
    }

    const MINILM: &str = r#"{"vocab_size": 30522, "hidden_size": 384,
        "num_hidden_layers": 6, "num_attention_heads": 12,
        "intermediate_size": 1536, "hidden_act": "gelu",
        "max_position_embeddings": 512, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "pad_token_id": 0,
        "position_embedding_type": "absolute", "model_type": "bert"}"#;

    #[test]
    fn minilm_config_is_valid() {
        let cfg = config(MINILM);
        assert_eq!(cfg.hidden_act, HiddenAct::Gelu);
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn other_architectures_are_refused() {
        let roberta = config(&MINILM.replace("\"bert\"", "\"roberta\""));
        assert!(roberta.validate().is_err());
        let relative = config(&MINILM.replace("\"absolute\"", "\"relative_key\""));
        assert!(relative.validate().is_err());
        let heads =
            config(&MINILM.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 7"));
        assert!(heads.validate().is_err());
        let zero =
            config(&MINILM.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 0"));
        assert!(zero.validate().is_err());
    }
}
