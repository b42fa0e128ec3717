//! `mnemos train hypencoder`: flags to a [`TrainConfig`], then the
//! pipeline in `mnemos-hypencoder-train`, then a short summary.

use mnemos_config::Settings;
use mnemos_hypencoder_train::TrainConfig;

use crate::cli::TrainHypencoderArgs;

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
