//! The language models `/v1/lm/*` serves, behind one interface: the small
//! models trained by `mnemos train lm` (safetensors, `mnemos-lm`) and the
//! pretrained anchor read from a GGUF file (`mnemos-llama`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use mnemos_api::LmModelInfo;
use mnemos_config::LmSettings;
use mnemos_llama::{FfnUnits, Llama, WeightFormat};
use mnemos_lm::{GenerateOptions, Lm, LmTokenizer, MemoryVariant, TOKENIZER_FILE, WEIGHTS_FILE};

use mnemos_api::{LmMemoryMode, LmMemoryUsed};

use crate::lm_memory::AnchorMemory;
use crate::{EngineError, Result};

/// The weights and tokenizer of one served model.
// One value per served model, held behind an `Arc`: the size difference
// between the variants costs nothing worth an extra indirection.
#[allow(clippy::large_enum_variant)]
pub enum LmModel {
    /// Trained here: a small transformer, maybe with memory layers.
    Trained { model: Lm, tokenizer: LmTokenizer },
    /// A pretrained GGUF model; `window` is its scoring window, `memory`
    /// its hierarchical memory bank if one is installed.
    Anchor {
        model: Arc<Llama>,
        window: usize,
        memory: Option<AnchorMemory>,
    },
}

/// One served model.
pub struct ServedLm {
    pub name: String,
    pub model: LmModel,
}

/// The likelihood of a token sequence.
#[derive(Debug, Clone, Copy)]
pub struct Likelihood {
    pub tokens: usize,
    pub nll: f64,
    pub perplexity: f64,
}

fn lm_error(e: mnemos_lm::LmError) -> EngineError {
    match e {
        mnemos_lm::LmError::InvalidInput(m) => EngineError::InvalidArgument(m),
        other => EngineError::Model(other.to_string()),
    }
}

fn llama_error(e: mnemos_llama::LlamaError) -> EngineError {
    match e {
        mnemos_llama::LlamaError::InvalidInput(m) => EngineError::InvalidArgument(m),
        other => EngineError::Model(other.to_string()),
    }
}

impl ServedLm {
    /// What `GET /v1/lm/models` says of it.
    pub fn info(&self) -> LmModelInfo {
        let mut info = LmModelInfo {
            name: self.name.clone(),
            parameters: 0,
            layers: 0,
            dim: 0,
            vocab_size: 0,
            max_seq_len: self.context(),
            memory: None,
            memory_values: None,
            format: String::new(),
            chat: self.chat_prompt("").is_some(),
        };
        match &self.model {
            LmModel::Trained { model, .. } => {
                let c = model.config();
                let memory = c.memory.as_ref();
                info.parameters = model.num_parameters();
                (info.layers, info.dim, info.vocab_size) = (c.layers, c.dim, c.vocab_size);
                info.memory = memory.map(|m| match m.variant {
                    MemoryVariant::Pkm => "pkm".to_string(),
                    MemoryVariant::MemoryPlus => "memory_plus".to_string(),
                });
                info.memory_values = memory.map(|m| m.num_values());
                info.format = "safetensors".into();
            }
            LmModel::Anchor { model, .. } => {
                let c = model.config();
                info.parameters = model.num_parameters();
                (info.layers, info.dim, info.vocab_size) = (c.layers, c.dim, c.vocab_size);
                info.format = "gguf".into();
            }
        }
        info
    }

    /// Positions the model attends over.
    pub fn context(&self) -> usize {
        match &self.model {
            LmModel::Trained { model, .. } => model.config().max_seq_len,
            LmModel::Anchor { model, .. } => model.max_positions(),
        }
    }

    /// Token ids of a text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.model {
            LmModel::Trained { tokenizer, .. } => tokenizer.encode(text).map_err(lm_error),
            LmModel::Anchor { model, .. } => model.encode(text).map_err(llama_error),
        }
    }

    /// The text of token ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.model {
            LmModel::Trained { tokenizer, .. } => tokenizer.decode(ids).map_err(lm_error),
            LmModel::Anchor { model, .. } => model.decode(ids).map_err(llama_error),
        }
    }

    /// `user` as a user turn of the model's chat template, if it has one.
    pub fn chat_prompt(&self, user: &str) -> Option<String> {
        match &self.model {
            LmModel::Trained { .. } => None,
            LmModel::Anchor { .. } => Some(mnemos_llama::chat_prompt(user)),
        }
    }

    /// The anchor's memory bank, if it has one.
    pub fn memory(&self) -> Option<&AnchorMemory> {
        match &self.model {
            LmModel::Anchor {
                memory: Some(m), ..
            } => Some(m),
            _ => None,
        }
    }

    /// The memory a request on `text` runs with: for an anchor with a
    /// bank, the path `text` selects (`auto`) or none; otherwise nothing
    /// to report.
    pub fn memory_for(
        &self,
        text: &str,
        mode: LmMemoryMode,
    ) -> Result<(Option<FfnUnits>, Option<LmMemoryUsed>)> {
        let LmModel::Anchor {
            memory: Some(memory),
            ..
        } = &self.model
        else {
            return Ok((None, None));
        };
        match mode {
            LmMemoryMode::None => Ok((
                None,
                Some(LmMemoryUsed {
                    path: Vec::new(),
                    params: 0,
                    degraded: false,
                    missing: Vec::new(),
                    tiers: Vec::new(),
                }),
            )),
            LmMemoryMode::Auto => {
                let (units, used) = memory.fetch(text)?;
                Ok((units, Some(used)))
            }
        }
    }

    /// New tokens after `prompt`, with `units` appended (anchor only); the
    /// model's end-of-text token stops it. `on_token` sees each token as it
    /// is chosen and stops generation by returning false.
    pub fn generate(
        &self,
        prompt: &[u32],
        options: &GenerateOptions,
        units: Option<&FfnUnits>,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Vec<u32>> {
        match &self.model {
            LmModel::Trained { model, tokenizer } => {
                let mut options = options.clone();
                options.stop_tokens.extend(tokenizer.end_of_text());
                mnemos_lm::generate_with(model, prompt, &options, on_token).map_err(lm_error)
            }
            LmModel::Anchor { model, .. } => {
                mnemos_llama::generate_with(model, prompt, options, units, on_token)
                    .map_err(llama_error)
            }
        }
    }

    /// The likelihood of `ids[1..]`, with `units` appended (anchor only).
    pub fn score(&self, ids: &[u32], units: Option<&FfnUnits>) -> Result<Likelihood> {
        match &self.model {
            LmModel::Trained { model, .. } => {
                let s = mnemos_lm::score_tokens(model, ids).map_err(lm_error)?;
                Ok(Likelihood {
                    tokens: s.tokens,
                    nll: s.nll,
                    perplexity: s.perplexity,
                })
            }
            LmModel::Anchor { model, window, .. } => {
                let s = mnemos_llama::score(model, ids, *window, units).map_err(llama_error)?;
                Ok(Likelihood {
                    tokens: s.tokens,
                    nll: s.nll,
                    perplexity: s.perplexity,
                })
            }
        }
    }
}

/// Loads every model directory under `dir` (sorted by name). A directory
/// without weights is skipped; one with weights that fail to load stops the
/// start with its name, rather than serving a partial set silently. With
/// `tiers.pkm_page_rows` set, memory layers read their value tables in
/// pages through the memory tiers (`<data_dir>/pkm-pages/<model>`).
/// Sub-keys are scored in `precision` (`lm.memory_key_precision`).
pub fn load_trained(
    dir: &Path,
    precision: mnemos_lm::KeyPrecision,
    tiers: &mnemos_config::TierSettings,
    data_dir: &Path,
) -> Result<BTreeMap<String, Arc<ServedLm>>> {
    let mut models = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::warn!(dir = %dir.display(), "no trained language models directory");
        return Ok(models);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.join(WEIGHTS_FILE).is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let fail = |e: mnemos_lm::LmError| {
            EngineError::Unavailable(format!(
                "cannot load language model `{name}` from {}: {e}",
                path.display()
            ))
        };
        let mut model = Lm::load(&path).map_err(fail)?;
        // Served models are frozen: score sub-keys from a packed copy.
        model.pack_memory_keys_as(precision).map_err(fail)?;
        if tiers.enabled && tiers.pkm_page_rows > 0 && !model.memory_layers().is_empty() {
            let warm = data_dir.join("pkm-pages").join(&name);
            let t = mnemos_tiers::Tiers::new(mnemos_tiers::TiersConfig::new(
                tiers.hot_budget_mb << 20,
                warm,
            ))
            .map_err(|e| EngineError::Unavailable(format!("memory tiers for `{name}`: {e}")))?;
            let pages = model
                .page_memory_values(&t, tiers.pkm_page_rows, "values", false)
                .map_err(fail)?;
            tracing::info!(model = %name, pages, rows_per_page = tiers.pkm_page_rows, "memory values paged through the tiers");
        }
        let tokenizer = LmTokenizer::load(&path.join(TOKENIZER_FILE)).map_err(fail)?;
        if tokenizer.vocab_size() > model.config().vocab_size {
            return Err(EngineError::Unavailable(format!(
                "language model `{name}`: tokenizer has {} tokens, the model {}",
                tokenizer.vocab_size(),
                model.config().vocab_size
            )));
        }
        models.insert(
            name.clone(),
            Arc::new(ServedLm {
                name,
                model: LmModel::Trained { model, tokenizer },
            }),
        );
    }
    Ok(models)
}

/// Loads the anchor named in `settings`, with its memory bank if one is
/// installed (routed by `encoder`), or `None` (with a warning) when its
/// GGUF file is not installed. A file that exists but fails to load stops
/// the start.
pub fn load_anchor(
    settings: &LmSettings,
    tiers: &mnemos_config::TierSettings,
    encoder: Option<Arc<dyn mnemos_models_core::Encoder>>,
    data_dir: &Path,
) -> Result<Option<ServedLm>> {
    if mnemos_llama::find_gguf(&settings.anchor_dir).is_err() {
        tracing::warn!(
            dir = %settings.anchor_dir.display(),
            "no GGUF anchor model installed (scripts/install-models.sh); {} is not served",
            settings.anchor_name
        );
        return Ok(None);
    }
    let format = match settings.anchor_weights.as_str() {
        "q8_0" => WeightFormat::Q8_0,
        "native" => WeightFormat::Native,
        _ => WeightFormat::F32,
    };
    let model = Llama::load_with(&settings.anchor_dir, format).map_err(|e| {
        EngineError::Unavailable(format!(
            "cannot load the anchor model `{}`: {e}",
            settings.anchor_name
        ))
    })?;
    let model = Arc::new(model);
    let memory = AnchorMemory::open(
        settings,
        tiers,
        &crate::lm_memory::serve_dir(data_dir),
        encoder,
        Arc::clone(&model),
    )?;
    Ok(Some(ServedLm {
        name: settings.anchor_name.clone(),
        model: LmModel::Anchor {
            model,
            window: settings.anchor_score_window,
            memory,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped memory models load with eight-bit sub-keys
    /// (`lm.memory_key_precision = "int8"`) and score text as the f16
    /// ones do, up to the quantisation: perplexities within 0.5%.
    #[test]
    fn trained_models_serve_with_eight_bit_sub_keys() -> anyhow::Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/trained/lm");
        let data = tempfile::tempdir()?;
        let tiers = mnemos_config::TierSettings::default();
        let f16 = load_trained(&dir, mnemos_lm::KeyPrecision::F16, &tiers, data.path())?;
        let int8 = load_trained(&dir, mnemos_lm::KeyPrecision::Int8, &tiers, data.path())?;
        let text = "The river rises in the hills north of the town and flows \
                    south through farmland before it reaches the sea.";
        let mut memory_models = 0;
        for (name, model) in &f16 {
            if !name.contains("pkm") && !name.contains("memplus") {
                continue;
            }
            memory_models += 1;
            let ids = model.encode(text)?;
            let a = model.score(&ids, None)?.perplexity;
            let b = int8[name].score(&ids, None)?.perplexity;
            assert!(((a - b) / a).abs() < 0.005, "{name}: {a} vs {b}");
        }
        assert_eq!(memory_models, 2, "both memory models are shipped");
        Ok(())
    }
}
