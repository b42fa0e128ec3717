//! The language-model service behind `/v1/lm/*`: the models found under
//! `lm.models_dir`, generation and scoring on a pool of `lm.workers`
//! compute threads (never on the async workers; see [`crate::compute`] for
//! why not tokio's blocking threads), at most `lm.workers` at once and
//! `queue_capacity` waiting, 503 beyond.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mnemos_api::{
    LmGenerateRequest, LmGenerateResponse, LmMemoryJobsResponse, LmMemoryMode, LmMemoryUsed,
    LmModelInfo, LmScoreRequest, LmScoreResponse, TiersResponse,
};
use mnemos_config::{LmSettings, TierSettings};
use mnemos_llama::FfnUnits;
use mnemos_lm::GenerateOptions;
use mnemos_models_core::Encoder;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::compute::ComputePool;
pub use crate::lm_models::{load_anchor, load_trained, LmModel, ServedLm};
use crate::{blocking, EngineError, Pending, Result};

/// Default sampling settings of a generation request.
pub const DEFAULT_TEMPERATURE: f64 = 0.8;
pub const DEFAULT_TOP_P: f64 = 0.95;
/// Highest accepted temperature: beyond it sampling is uniform noise.
pub const MAX_TEMPERATURE: f64 = 10.0;

/// The served models and the admission control around them.
pub struct LmService {
    models: BTreeMap<String, Arc<ServedLm>>,
    settings: LmSettings,
    permits: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
    pub(crate) compute: Arc<ComputePool>,
}

/// Loads the trained models under `settings.models_dir` and the anchor
/// (with its memory bank, routed by `encoder`).
pub fn load_models(
    settings: &LmSettings,
    tiers: &TierSettings,
    encoder: Option<Arc<dyn Encoder>>,
    data_dir: &Path,
) -> Result<BTreeMap<String, Arc<ServedLm>>> {
    let precision = match settings.memory_key_precision.as_str() {
        "f16" => mnemos_lm::KeyPrecision::F16,
        _ => mnemos_lm::KeyPrecision::Int8, // validated: "int8"
    };
    let mut models = load_trained(&settings.models_dir, precision, tiers, data_dir)?;
    if let Some(anchor) = load_anchor(settings, tiers, encoder, data_dir)? {
        if models.contains_key(&anchor.name) {
            return Err(EngineError::Unavailable(format!(
                "two language models are named `{}` (lm.anchor_name and a directory in {})",
                anchor.name,
                settings.models_dir.display()
            )));
        }
        models.insert(anchor.name.clone(), Arc::new(anchor));
    }
    Ok(models)
}

impl LmService {
    /// Loads the models configured under `[lm]`; `encoder` (the dense
    /// backend's) routes texts into the anchor's memory bank.
    pub async fn open(
        settings: &LmSettings,
        tiers: &TierSettings,
        encoder: Option<Arc<dyn Encoder>>,
        data_dir: &Path,
    ) -> Result<Self> {
        let (s, t) = (settings.clone(), tiers.clone());
        let data_dir = data_dir.to_path_buf();
        let models = blocking(move || load_models(&s, &t, encoder, &data_dir)).await?;
        tracing::info!(models = models.len(), "language models loaded");
        Ok(Self {
            models,
            permits: Arc::new(Semaphore::new(settings.workers().max(1))),
            pending: Arc::new(AtomicUsize::new(0)),
            compute: ComputePool::new("lm", settings.workers()),
            settings: settings.clone(),
        })
    }

    /// The anchor's memory bank, if one is served.
    fn bank(&self) -> Option<Arc<ServedLm>> {
        self.models.values().find(|m| m.memory().is_some()).cloned()
    }

    /// Unlearns documents from the memory bank (see
    /// [`crate::lm_memory::AnchorMemory::remove`]); the ids it held.
    pub async fn memory_remove(&self, ids: Vec<String>) -> Result<Vec<String>> {
        let Some(served) = self.bank() else {
            return Ok(Vec::new());
        };
        blocking(move || match served.memory() {
            Some(m) => m.remove(&ids),
            None => Ok(Vec::new()),
        })
        .await
    }

    /// Adds documents (id, text) to the memory bank, if one is served.
    pub async fn memory_add(&self, docs: Vec<(String, String)>) -> Result<()> {
        let Some(served) = self.bank() else {
            return Ok(());
        };
        blocking(move || match served.memory() {
            Some(m) => m.add(&docs),
            None => Ok(()),
        })
        .await
    }

    /// The memory bank's background jobs; 404 when no bank is served.
    pub fn memory_jobs(&self) -> Result<LmMemoryJobsResponse> {
        self.bank()
            .and_then(|s| s.memory().map(|m| m.jobs()))
            .unwrap_or_else(|| {
                Err(EngineError::NotFound(
                    "no memory bank is served (lm.memory_bank_dir holds none)".into(),
                ))
            })
    }

    /// The memory tiers' placement and counters; 404 when no bank is
    /// served through tiers.
    pub fn tiers(&self) -> Result<TiersResponse> {
        self.bank()
            .and_then(|s| s.memory().and_then(|m| m.tiers()))
            .ok_or_else(|| {
                EngineError::NotFound(
                    "no memory bank is served through tiers (tiers.enabled, lm.memory_bank_dir)"
                        .into(),
                )
            })?
    }

    /// The served models, by name.
    pub fn models(&self) -> Vec<LmModelInfo> {
        self.models.values().map(|m| m.info()).collect()
    }

    fn model(&self, name: &str) -> Result<Arc<ServedLm>> {
        self.models.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.models.keys().map(String::as_str).collect();
            EngineError::NotFound(format!(
                "unknown model `{name}` (served: {})",
                if known.is_empty() {
                    "none; train them with `mnemos train lm`".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// Admits one request or refuses it (503) when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _admitted = self.admit().await?;
        self.compute.run(job).await
    }

    /// A place in the queue, then a worker slot: held for as long as the
    /// returned guard lives.
    pub(crate) async fn admit(&self) -> Result<Admitted> {
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        let pending = Pending(Arc::clone(&self.pending));
        if before >= self.settings.queue_capacity + self.settings.workers() {
            return Err(EngineError::Overloaded(format!(
                "the language-model queue is full ({before} requests waiting or running); retry later"
            )));
        }
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| {
                EngineError::Unavailable("the language models are shutting down".into())
            })?;
        Ok(Admitted {
            _pending: pending,
            _permit: permit,
        })
    }

    /// Continues a prompt.
    pub async fn generate(&self, req: LmGenerateRequest) -> Result<LmGenerateResponse> {
        let generation = self.prepare(req)?;
        self.run(move || generation.ready()?.run(&mut |_| true))
            .await
    }

    /// Checks a generation request and resolves its model and options.
    pub(crate) fn prepare(&self, req: LmGenerateRequest) -> Result<Generation> {
        let s = &self.settings;
        let bad = |m: String| Err(EngineError::InvalidArgument(m));
        let served = self.model(&req.model)?;
        if req.prompt.is_empty() {
            return bad("`prompt` must not be empty".into());
        }
        if req.prompt.len() > s.max_prompt_bytes {
            return bad(format!(
                "`prompt` is longer than {} bytes",
                s.max_prompt_bytes
            ));
        }
        let max_tokens = req
            .max_tokens
            .unwrap_or(s.default_max_tokens.min(s.max_tokens));
        if !(1..=s.max_tokens).contains(&max_tokens) {
            return bad(format!(
                "`max_tokens` must be in 1..={}, got {max_tokens}",
                s.max_tokens
            ));
        }
        let temperature = req.temperature.unwrap_or(DEFAULT_TEMPERATURE);
        if !(temperature.is_finite() && (0.0..=MAX_TEMPERATURE).contains(&temperature)) {
            return bad(format!(
                "`temperature` must be in 0..={MAX_TEMPERATURE}, got {temperature}"
            ));
        }
        let top_p = req.top_p.unwrap_or(DEFAULT_TOP_P);
        if !(top_p.is_finite() && top_p > 0.0 && top_p <= 1.0) {
            return bad(format!("`top_p` must be in (0, 1], got {top_p}"));
        }
        let options = GenerateOptions {
            max_new_tokens: max_tokens,
            temperature,
            top_p,
            seed: req.seed.unwrap_or(0),
            stop_tokens: Vec::new(),
        };
        let prompt = if req.chat {
            served.chat_prompt(&req.prompt).ok_or_else(|| {
                EngineError::InvalidArgument(format!(
                    "model `{}` has no chat template; leave `chat` out",
                    req.model
                ))
            })?
        } else {
            req.prompt.clone()
        };
        Ok(Generation {
            served,
            prompt,
            // The memory path is chosen by what the user wrote, not by the
            // chat template around it.
            routed_text: req.prompt,
            name: req.model,
            mode: req.memory,
            options,
        })
    }

    /// The likelihood of a text.
    pub async fn score(&self, req: LmScoreRequest) -> Result<LmScoreResponse> {
        let served = self.model(&req.model)?;
        if req.text.len() > self.settings.max_score_bytes {
            return Err(EngineError::InvalidArgument(format!(
                "`text` is longer than {} bytes",
                self.settings.max_score_bytes
            )));
        }
        let name = req.model.clone();
        let text = req.text;
        let mode = req.memory;
        self.run(move || {
            let started = Instant::now();
            let ids = served.encode(&text)?;
            if ids.len() < 2 {
                return Err(EngineError::InvalidArgument(format!(
                    "`text` must be at least 2 tokens long, got {}",
                    ids.len()
                )));
            }
            let (units, memory) = served.memory_for(&text, mode)?;
            let s = served.score(&ids, units.as_ref())?;
            Ok(LmScoreResponse {
                model: name,
                tokens: s.tokens,
                nll: s.nll,
                perplexity: s.perplexity,
                took_ms: started.elapsed().as_secs_f64() * 1e3,
                memory,
            })
        })
        .await
    }
}

/// A queue place and a worker slot ([`LmService::admit`]).
pub(crate) struct Admitted {
    _pending: Pending,
    _permit: OwnedSemaphorePermit,
}

/// A checked generation request ([`LmService::prepare`]).
pub(crate) struct Generation {
    served: Arc<ServedLm>,
    prompt: String,
    routed_text: String,
    name: String,
    mode: LmMemoryMode,
    options: GenerateOptions,
}

impl Generation {
    /// Tokenizes the prompt, checks that it leaves room to generate and
    /// fetches the memory blocks its text routes to: everything that can
    /// fail before the first token. Blocking work, for the compute pool.
    pub(crate) fn ready(self) -> Result<Ready> {
        let started = Instant::now();
        let ids = self.served.encode(&self.prompt)?;
        let context = self.served.context();
        if ids.len() >= context {
            return Err(EngineError::InvalidArgument(format!(
                "the prompt is {} tokens; model `{}` takes at most {} before generating",
                ids.len(),
                self.name,
                context - 1
            )));
        }
        let (units, memory) = self.served.memory_for(&self.routed_text, self.mode)?;
        Ok(Ready {
            generation: self,
            started,
            ids,
            units,
            memory,
        })
    }
}

/// A generation with its prompt tokenized and its memory fetched
/// ([`Generation::ready`]): nothing left to check before the first token.
pub(crate) struct Ready {
    generation: Generation,
    /// When [`Generation::ready`] began; `took_ms` counts from here.
    started: Instant,
    ids: Vec<u32>,
    units: Option<FfnUnits>,
    memory: Option<LmMemoryUsed>,
}

impl Ready {
    /// The model it runs on.
    pub(crate) fn served(&self) -> &Arc<ServedLm> {
        &self.generation.served
    }

    /// New tokens at most.
    pub(crate) fn max_tokens(&self) -> usize {
        self.generation.options.max_new_tokens
    }

    /// Runs it, handing each new token to `on_token` (false stops it).
    pub(crate) fn run(self, on_token: &mut dyn FnMut(u32) -> bool) -> Result<LmGenerateResponse> {
        let Self {
            generation,
            started,
            ids,
            units,
            memory,
        } = self;
        let served = &generation.served;
        let out = served.generate(&ids, &generation.options, units.as_ref(), on_token)?;
        let text = served.decode(&out)?;
        let secs = started.elapsed().as_secs_f64();
        Ok(LmGenerateResponse {
            model: generation.name,
            text,
            prompt_tokens: ids.len(),
            tokens: out.len(),
            took_ms: secs * 1e3,
            tokens_per_s: out.len() as f64 / secs.max(1e-9),
            memory,
        })
    }
}
