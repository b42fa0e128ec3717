//! `mnemos train hypencoder` and `mnemos train lm`: flags to the training
//! crate's configuration, then its pipeline (`mnemos-hypencoder-train`,
//! `mnemos-lm-train`), then a short summary.

use mnemos_config::Settings;
use mnemos_hypencoder_train::TrainConfig;

use crate::cli::{resolve_model_dir, TrainHypencoderArgs, TrainLmArgs, TrainMemoryArgs};

/// Trains the Hypencoder over the configured dense encoder.
pub fn hypencoder(settings: &Settings, a: &TrainHypencoderArgs) -> anyhow::Result<()> {
    let config = TrainConfig {
        beir: a.beir.clone(),
        encoder_dir: settings.dense.model_dir.clone(),
        max_tokens: settings.dense.max_tokens,
        out: a.out.clone(),
        cache: a.cache.clone(),
        epochs: a.epochs,
        batch: a.batch,
        negatives: a.negatives,
        learning_rate: a.lr,
        margin_mse_weight: a.margin_mse_weight,
        layers: a.layers,
        dense_start: !a.random_start,
        patience: a.patience,
        seed: a.seed,
        ..TrainConfig::default()
    };
    let r = mnemos_hypencoder_train::run(&config)?;
    println!(
        "dev nDCG@10 ({} queries): bm25 {:.4}  dense {:.4}  teacher {:.4}  untrained {:.4}  trained {:.4} (epoch {}, f16 as saved)",
        r.dev_queries, r.dev_bm25, r.dev_dense, r.dev_teacher, r.dev_initial, r.dev_saved, r.best_epoch
    );
    println!(
        "{} parameters, {} training queries, {:.0} s; model and training.json in {}",
        r.parameters,
        r.train_queries,
        r.secs,
        config.out.display()
    );
    Ok(())
}

/// Trains one language model, or all four, and prints a comparison table.
pub fn lm(a: &TrainLmArgs) -> anyhow::Result<()> {
    let defaults = mnemos_lm_train::TrainConfig::default();
    let text = resolve_model_dir(&a.text);
    let extra_texts = if a.shakespeare {
        vec![text.with_file_name("tinyshakespeare.txt")]
    } else {
        Vec::new()
    };
    let config = mnemos_lm_train::TrainConfig {
        text,
        extra_texts,
        out: a.out.clone(),
        models: mnemos_lm_train::presets_named(&a.model)?,
        tokens: a.tokens,
        seq_len: a.seq_len,
        batch: a.batch,
        vocab: a.vocab,
        tokenizer: a.tokenizer.clone(),
        seed: a.seed,
        learning_rate: a.lr,
        value_learning_rate: a.value_lr,
        shape: mnemos_lm_train::ModelShape {
            n_keys: a.memory_keys.unwrap_or(defaults.shape.n_keys),
            ..defaults.shape.clone()
        },
        ..defaults
    };
    let started = std::time::Instant::now();
    let reports = mnemos_lm_train::run(&config)?;
    println!(
        "{:<16} {:>11} {:>9} {:>9} {:>13} {:>11} {:>8}",
        "model", "parameters", "val ppl", "val loss", "train tok/s", "gen tok/s", "train s"
    );
    for r in &reports {
        println!(
            "{:<16} {:>11} {:>9.2} {:>9.4} {:>13.0} {:>11.1} {:>8.0}",
            r.model.name(),
            r.parameters,
            r.val_perplexity,
            r.val_loss,
            r.train_tokens_per_sec,
            r.generation.tokens_per_sec,
            r.train_secs
        );
    }
    if let Some(r) = reports.first() {
        println!(
            "{} training tokens per model ({} steps of {}x{}), {} validation tokens, vocab {}; \
             {:.0} s in all; models in {}",
            r.tokens,
            r.steps,
            r.batch,
            r.seq_len,
            r.corpus.val_tokens,
            r.corpus.vocab_size,
            started.elapsed().as_secs_f64(),
            config.out.display()
        );
    }
    Ok(())
}

/// Builds, trains and evaluates a memory bank for the anchor.
pub fn memory(settings: &Settings, a: &TrainMemoryArgs) -> anyhow::Result<()> {
    let config = mnemos_memory_train::MemoryTrainConfig {
        corpus: a.corpus.clone(),
        anchor_dir: settings.lm.anchor_dir.clone(),
        encoder_dir: settings.dense.model_dir.clone(),
        out: a.out.clone(),
        documents: a.documents,
        held_out: a.held_out,
        max_tokens: a.max_tokens,
        levels: a.levels,
        branching: a.branching,
        first_layer: a.first_layer,
        units_per_level: a.units.clone(),
        epochs_per_level: a.epochs.clone(),
        lr_per_level: a.lr.clone(),
        batch: a.batch,
        min_similarity: a.min_similarity.clone(),
        eval_only: a.eval_only,
        leaf_gate: (a.leaf_gate >= 0.0).then_some(a.leaf_gate),
        general_text: a.general_text.clone(),
        seed: a.seed,
        ..Default::default()
    };
    let r = mnemos_memory_train::run(&config)?;
    let t = &r.train;
    println!(
        "bank: {} blocks, {} parameters ({:.1} MB on disk); one path fetches {} parameters = {:.2}% of the anchor's {}",
        t.blocks.len(),
        t.bank_parameters,
        t.bank_bytes as f64 / 1e6,
        t.path_parameters,
        100.0 * t.path_parameters as f64 / t.anchor_parameters as f64,
        t.anchor_parameters
    );
    let per_block: Vec<f64> = t.blocks.iter().map(|b| b.secs).collect();
    println!(
        "embedding {:.1} s, anchor states {:.1} s, training {:.1} s ({:.1} s per block on average)",
        t.embed_secs,
        t.prepare_secs,
        t.train_secs,
        per_block.iter().sum::<f64>() / per_block.len().max(1) as f64
    );
    println!(
        "{:<10} {:>6} {:>7} {:>12} {:>12} {:>9}",
        "set", "texts", "routed", "anchor ppl", "memory ppl", "change"
    );
    for s in &r.evaluation.sets {
        println!(
            "{:<10} {:>6} {:>7} {:>12.2} {:>12.2} {:>+8.1}%",
            s.name, s.texts, s.routed, s.anchor_perplexity, s.memory_perplexity, s.change_percent
        );
    }
    println!("report: {}", config.out.join("training.json").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::cli::{Cli, Command, TrainCommand};

    fn parse(extra: &[&str]) -> Result<Cli, clap::Error> {
        let base = ["mnemos", "train", "lm", "--out", "x"];
        Cli::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn train_lm_flags() {
        Cli::command().debug_assert();
        let cli = parse(&["--model", "all", "--tokens", "5000"]).expect("parse");
        let Command::Train(TrainCommand::Lm(a)) = cli.command else {
            panic!("not train lm");
        };
        assert_eq!((a.model.as_str(), a.tokens, a.vocab), ("all", 5000, 4096));
        let presets = mnemos_lm_train::presets_named(&a.model).expect("presets");
        assert_eq!(presets.len(), 4);
        assert!(parse(&["--model", "tiny-3l"]).is_err());
        assert!(parse(&[
            "--model",
            "tiny-2l",
            "--vocab",
            "300",
            "--tokenizer",
            "t.json"
        ])
        .is_err());
        assert!(parse(&["--model", "tiny-2l", "--tokenizer", "t.json"]).is_ok());
    }
}
