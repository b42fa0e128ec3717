//! Training one model: the token budget in steps of `batch × seq_len`
//! random windows, AdamW with warm-up and cosine decay, validation before,
//! during and after training, then the checkpoint and `training.json`.
//!
//! The final validation loss is that of the weights as saved (f16, loaded
//! back), so the number in `training.json` is the one a user of the
//! checkpoint gets.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::DType;
use mnemos_lm::train::{evaluate, Batch, TrainOptions, Trainer};
use mnemos_lm::{Lm, LmConfig, SplitMix64, TOKENIZER_FILE};
use serde::Serialize;

use crate::corpus::{Corpus, CorpusReport};
use crate::generation::{self, GenerationReport};
use crate::presets::Preset;
use crate::{create_dir, write_json, LmTrainError, Result, TrainConfig};

/// Learning-rate multiplier: linear warm-up to 1, then a half cosine down
/// to `min_fraction` at the last step. Warm-up keeps Adam's first, noisy
/// moment estimates from moving the weights far; the decay lets a short
/// run settle, which a constant rate does not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub steps: usize,
    pub warmup: usize,
    pub min_fraction: f64,
}

impl LrSchedule {
    /// The multiplier of 0-based `step`.
    pub fn factor(&self, step: usize) -> f64 {
        if step < self.warmup {
            return (step + 1) as f64 / self.warmup as f64;
        }
        let decay = self.steps.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f64 / decay as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min_fraction + (1.0 - self.min_fraction) * cosine
    }
}

/// One validation pass.
#[derive(Debug, Clone, Serialize)]
pub struct EvalPoint {
    /// Steps done.
    pub step: usize,
    /// Training tokens seen.
    pub tokens: usize,
    /// Mean training loss since the previous point (none at step 0).
    pub train_loss: Option<f64>,
    pub val_loss: f64,
    pub val_perplexity: f64,
    /// Learning rate of the last step (of everything but the values).
    pub learning_rate: f64,
    /// Seconds since training started.
    pub secs: f64,
}

/// What a run did, written to `training.json` next to the weights.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub model: Preset,
    pub parameters: usize,
    /// Memory values among the parameters (0 for dense models).
    pub memory_values: usize,
    pub config: LmConfig,
    pub dir: PathBuf,
    /// Training tokens: `steps × batch × seq_len`.
    pub tokens: usize,
    pub steps: usize,
    pub batch: usize,
    pub seq_len: usize,
    pub learning_rate: f64,
    pub value_learning_rate: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    pub min_lr_fraction: f64,
    pub corpus: CorpusReport,
    /// Validation loss of the untrained model.
    pub initial_val_loss: f64,
    pub initial_val_perplexity: f64,
    /// Validation loss of the saved (f16) weights.
    pub val_loss: f64,
    pub val_perplexity: f64,
    pub history: Vec<EvalPoint>,
    /// Training tokens per second of optimiser steps (validation excluded).
    pub train_tokens_per_sec: f64,
    /// Seconds in optimiser steps.
    pub train_secs: f64,
    /// Seconds for this model from building it to `training.json`:
    /// validation, saving and the generation timing included.
    pub wall_secs: f64,
    pub generation: GenerationReport,
    pub seed: u64,
    /// `RAYON_NUM_THREADS` while training.
    pub threads: Option<String>,
    pub command: String,
}

/// Seeds the window order apart from the weights, so that changing one
/// does not change the other.
const WINDOW_SEED: u64 = 0x5749_4E44_4F57_5321;

/// Trains `preset` on `corpus` and saves it in `config.model_dir(preset)`.
pub fn train_model(config: &TrainConfig, corpus: &Corpus, preset: Preset) -> Result<ModelReport> {
    let started = Instant::now();
    let prompt_tokens = corpus.tokenizer.encode(&config.generation.prompt)?.len();
    // Room for the generation timing too; only the rotary table and the
    // KV cache depend on it, no weight.
    let max_seq_len = config
        .seq_len
        .max(prompt_tokens + config.generation.new_tokens);
    let lm_config = preset.config(&config.shape, corpus.tokenizer.vocab_size(), max_seq_len);
    let model = Lm::new(lm_config.clone(), config.seed)?;
    let parameters = model.num_parameters();
    let steps = config.steps();
    let schedule = LrSchedule {
        steps,
        warmup: ((steps as f64 * config.warmup_fraction).round() as usize).max(1),
        min_fraction: config.min_lr_fraction,
    };
    let options = TrainOptions {
        learning_rate: config.learning_rate,
        value_learning_rate: config.value_learning_rate,
        ..TrainOptions::default()
    };
    tracing::info!(
        model = preset.name(),
        parameters,
        steps,
        tokens = steps * config.batch * config.seq_len,
        "training"
    );
    let mut trainer = Trainer::new(&model, options.clone())?;
    drop(model);
    let validate = |model: &Lm| evaluate(model, &corpus.val, config.seq_len, config.batch);
    let initial = validate(trainer.current())?;
    let mut history = vec![EvalPoint {
        step: 0,
        tokens: 0,
        train_loss: None,
        val_loss: initial.loss,
        val_perplexity: initial.perplexity,
        learning_rate: 0.0,
        secs: 0.0,
    }];
    let window_tokens = config.batch * config.seq_len;
    let eval_every = steps.div_ceil(config.evals.max(1));
    let log_every = steps.div_ceil(config.log_lines.max(1));
    let mut rng = SplitMix64::new(config.seed ^ WINDOW_SEED);
    let mut train_secs = 0.0;
    let (mut log_loss, mut log_steps, mut log_secs) = (0.0, 0, 0.0);
    let (mut eval_loss, mut eval_steps) = (0.0, 0);
    for step in 0..steps {
        let factor = schedule.factor(step);
        let lr = config.learning_rate * factor;
        trainer.set_learning_rates(lr, config.value_learning_rate * factor);
        let batch = Batch::random(&corpus.train, config.batch, config.seq_len, &mut rng)?;
        let t = Instant::now();
        let report = trainer.step(&batch)?;
        let secs = t.elapsed().as_secs_f64();
        if !report.loss.is_finite() {
            return Err(LmTrainError::Invalid(format!(
                "{}: the training loss is {} at step {step}; try a lower --lr",
                preset.name(),
                report.loss
            )));
        }
        let loss = report.loss as f64;
        train_secs += secs;
        log_loss += loss;
        log_steps += 1;
        log_secs += secs;
        eval_loss += loss;
        eval_steps += 1;
        let done = step + 1;
        if done % log_every == 0 || done == steps {
            let elapsed = started.elapsed().as_secs_f64();
            tracing::info!(
                model = preset.name(),
                "step {done}/{steps}  loss {:.3}  lr {lr:.2e}  {:.0} tokens/s  eta {:.0} s",
                log_loss / log_steps as f64,
                (log_steps * window_tokens) as f64 / log_secs,
                elapsed / done as f64 * (steps - done) as f64,
            );
            (log_loss, log_steps, log_secs) = (0.0, 0, 0.0);
        }
        if done % eval_every == 0 || done == steps {
            let val = validate(trainer.current())?;
            tracing::info!(
                model = preset.name(),
                "step {done}/{steps}  val loss {:.3}  val ppl {:.1}",
                val.loss,
                val.perplexity
            );
            history.push(EvalPoint {
                step: done,
                tokens: done * window_tokens,
                train_loss: Some(eval_loss / eval_steps as f64),
                val_loss: val.loss,
                val_perplexity: val.perplexity,
                learning_rate: lr,
                secs: started.elapsed().as_secs_f64(),
            });
            (eval_loss, eval_steps) = (0.0, 0);
        }
    }

    let dir = config.model_dir(preset);
    create_dir(&dir)?;
    trainer.model()?.save(&dir, DType::F16)?;
    drop(trainer);
    corpus.tokenizer.save(&dir.join(TOKENIZER_FILE))?;
    let saved = Lm::load(&dir)?;
    let last = validate(&saved)?;
    let generation = generation::measure(&saved, &corpus.tokenizer, &config.generation)?;
    tracing::info!(
        model = preset.name(),
        "saved to {}: val ppl {:.2} (f16), {:.0} training tokens/s, {:.0} generated tokens/s",
        dir.display(),
        last.perplexity,
        (steps * window_tokens) as f64 / train_secs,
        generation.tokens_per_sec
    );
    let report = ModelReport {
        model: preset,
        parameters,
        memory_values: lm_config
            .memory
            .as_ref()
            .map_or(0, |m| m.value_tables() * m.num_values() * lm_config.dim),
        config: lm_config,
        dir: dir.clone(),
        tokens: steps * window_tokens,
        steps,
        batch: config.batch,
        seq_len: config.seq_len,
        learning_rate: config.learning_rate,
        value_learning_rate: config.value_learning_rate,
        weight_decay: options.weight_decay,
        warmup_steps: schedule.warmup,
        min_lr_fraction: config.min_lr_fraction,
        corpus: corpus.report.clone(),
        initial_val_loss: initial.loss,
        initial_val_perplexity: initial.perplexity,
        val_loss: last.loss,
        val_perplexity: last.perplexity,
        history,
        train_tokens_per_sec: (steps * window_tokens) as f64 / train_secs,
        train_secs,
        wall_secs: started.elapsed().as_secs_f64(),
        generation,
        seed: config.seed,
        threads: std::env::var("RAYON_NUM_THREADS").ok(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    write_json(&dir.join("training.json"), &report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let s = LrSchedule {
            steps: 100,
            warmup: 10,
            min_fraction: 0.1,
        };
        assert!((s.factor(0) - 0.1).abs() < 1e-12);
        assert!((s.factor(9) - 1.0).abs() < 1e-12);
        assert!((s.factor(10) - 1.0).abs() < 1e-12);
        assert!((s.factor(55) - 0.55).abs() < 1e-12); // half-way: the mean
        let tail: Vec<f64> = (10..100).map(|i| s.factor(i)).collect();
        assert!(tail.windows(2).all(|w| w[1] < w[0]));
        assert!(tail[89] > 0.1 && tail[89] < 0.1 + 1e-3);
    }
}
