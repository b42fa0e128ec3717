//! A whole run at toy size: tokenizer, four tiny models, checkpoints that
//! load back, and a validation loss that training lowered.

use std::path::Path;

use mnemos_lm::train::evaluate;
use mnemos_lm::{Lm, LmTokenizer, SplitMix64};
use mnemos_lm_train::{run, GenerationConfig, ModelShape, Preset, TrainConfig};

/// Sentences from a tiny grammar: learnable in a few dozen steps.
fn write_text(path: &Path, sentences: usize, seed: u64) {
    let subjects = ["the cat", "a dog", "the old man", "my sister", "the river"];
    let verbs = ["sees", "likes", "follows", "finds", "crosses"];
    let objects = [
        "the bridge",
        "a red ball",
        "the garden",
        "her friend",
        "the hill",
    ];
    let mut rng = SplitMix64::new(seed);
    let mut text = String::new();
    for i in 0..sentences {
        let s = subjects[rng.below(subjects.len())];
        let v = verbs[rng.below(verbs.len())];
        let o = objects[rng.below(objects.len())];
        text.push_str(&format!(" {s} {v} {o} ."));
        if i % 6 == 5 {
            text.push('\n');
        }
    }
    std::fs::write(path, text).expect("write text");
}

fn tiny_config(dir: &Path) -> TrainConfig {
    let text = dir.join("wiki.txt");
    let extra = dir.join("extra.txt");
    write_text(&text, 1200, 1);
    write_text(&extra, 200, 2);
    TrainConfig {
        text,
        extra_texts: vec![extra],
        out: dir.join("out"),
        shape: ModelShape {
            dim: 32,
            heads: 2,
            ffn_hidden: 64,
            n_keys: 8,
            k: 4,
            memory_heads: 2,
            key_dim: 16,
        },
        tokens: 40 * 8 * 32,
        seq_len: 32,
        batch: 8,
        vocab: 320,
        learning_rate: 3e-3,
        value_learning_rate: 1e-2,
        evals: 2,
        log_lines: 2,
        generation: GenerationConfig {
            new_tokens: 8,
            repeats: 1,
            threads: None,
            ..GenerationConfig::default()
        },
        ..TrainConfig::default()
    }
}

#[test]
fn a_tiny_run_saves_models_that_load_and_learnt() -> mnemos_lm_train::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = tiny_config(dir.path());
    let reports = run(&config)?;
    assert_eq!(reports.len(), 4);
    let shared = LmTokenizer::load(&config.out.join("tokenizer.json"))?;
    assert!(config.out.join("summary.json").is_file());
    for report in &reports {
        let model_dir = config.out.join(report.model.name());
        let model = Lm::load(&model_dir)?;
        let tokenizer = LmTokenizer::load(&model_dir)?;
        assert_eq!(tokenizer.vocab_size(), shared.vocab_size());
        assert_eq!(model.config(), &report.config);
        assert_eq!(model.config().vocab_size, tokenizer.vocab_size());
        assert_eq!(report.steps, 40);
        assert_eq!(report.tokens, config.tokens);
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(model_dir.join("training.json")).expect("training.json"),
        )
        .expect("json");
        assert_eq!(json["model"], report.model.name());
        assert_eq!(json["steps"], 40);
        assert!(
            json["generation"]["tokens_per_sec"]
                .as_f64()
                .expect("speed")
                > 0.0
        );
        assert_eq!(json["generation"]["new_tokens"], 8);
        assert!(report.generation.best_tokens_per_sec >= report.generation.tokens_per_sec);
        // The saved weights score as reported, and better than untrained.
        let val = mnemos_lm_train::Corpus::build(&TrainConfig {
            tokenizer: Some(model_dir.join("tokenizer.json")),
            ..config.clone()
        })?
        .val;
        let loaded = evaluate(&model, &val, config.seq_len, config.batch)?;
        assert!(loaded.loss.is_finite());
        assert!((loaded.loss - report.val_loss).abs() < 1e-4);
        assert!(
            report.val_loss < report.initial_val_loss - 0.5,
            "{}: {} -> {}",
            report.model.name(),
            report.initial_val_loss,
            report.val_loss
        );
        assert_eq!(report.history.len(), 3);
        assert_eq!(report.memory_values > 0, report.model.memory().is_some());
    }
    assert!(reports[0].parameters < reports[1].parameters);
    Ok(())
}

#[test]
fn one_model_goes_straight_into_out() -> mnemos_lm_train::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TrainConfig {
        models: vec![Preset::Tiny2l],
        tokens: 2 * 8 * 32,
        ..tiny_config(dir.path())
    };
    let reports = run(&config)?;
    assert_eq!(reports[0].steps, 2);
    Lm::load(&config.out)?;
    LmTokenizer::load(&config.out)?;
    assert!(config.out.join("training.json").is_file());
    assert!(!config.out.join("summary.json").exists());
    Ok(())
}
