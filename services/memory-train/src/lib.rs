//! `mnemos train memory`: builds and trains a hierarchical memory bank
//! for the anchor LM (SPECS §5, Pouransari et al. 2025), post hoc:
//!
//! 1. a seeded sample of a knowledge corpus (the SciFact abstracts) is
//!    embedded with all-MiniLM-L6-v2, and a disjoint sample is held out;
//! 2. hierarchical spherical k-means builds the tree
//!    (`mnemos-membank`), `levels` deep with `branching` children;
//! 3. every node gets a block of SwiGLU units appended to the anchor's
//!    late blocks (`first_layer..`), `units_per_level[l-1]` at level `l`,
//!    trained top-down on the documents under it with the anchor and the
//!    ancestors' blocks frozen — so the subtrees are independent, and a
//!    block can be retrained without touching its ancestors;
//! 4. the bank is evaluated: perplexity of the anchor alone vs with the
//!    path each text selects, on trained, held-out and general text.

mod corpus;
mod eval;
mod fit;

use std::path::PathBuf;

pub use corpus::{read_corpus, sample, Document};
pub use eval::{evaluate, wiki_passages, EvalSet, Evaluation};
pub use fit::{train_bank, BlockReport, TrainReport};

/// Errors of the training pipeline.
#[derive(Debug, thiserror::Error)]
pub enum MemoryTrainError {
    #[error("invalid memory training input: {0}")]
    Invalid(String),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bank(#[from] mnemos_membank::BankError),
    #[error(transparent)]
    Anchor(#[from] mnemos_llama::LlamaError),
    #[error("encoder: {0}")]
    Encoder(#[from] mnemos_models_core::ModelError),
}

pub type Result<T, E = MemoryTrainError> = std::result::Result<T, E>;

/// Everything `mnemos train memory` can set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemoryTrainConfig {
    /// BEIR corpus (`corpus.jsonl` or its directory).
    pub corpus: PathBuf,
    /// The anchor's GGUF file or directory.
    pub anchor_dir: PathBuf,
    /// all-MiniLM-L6-v2 directory (routing embeddings).
    pub encoder_dir: PathBuf,
    /// The bank directory to create.
    pub out: PathBuf,
    /// Documents in the bank.
    pub documents: usize,
    /// Documents held out for evaluation (same corpus, never trained on).
    pub held_out: usize,
    /// Anchor tokens per document (training and evaluation).
    pub max_tokens: usize,
    /// Tree depth below the root.
    pub levels: usize,
    /// Children per node.
    pub branching: usize,
    /// First anchor block with memory units; all later blocks get them.
    pub first_layer: usize,
    /// Units per block at each level (level 1 first).
    pub units_per_level: Vec<usize>,
    /// Passes over its documents per block, per level.
    pub epochs_per_level: Vec<usize>,
    /// Learning rate per level.
    pub lr_per_level: Vec<f64>,
    /// Documents per update.
    pub batch: usize,
    /// Routing thresholds per level used in the evaluation (see
    /// `Bank::route`).
    pub min_similarity: Vec<f32>,
    /// Leaf gate of the evaluation (see `Bank::route_gated`).
    pub leaf_gate: Option<f32>,
    /// Evaluate the bank already in `out` (same seed, same samples)
    /// instead of building and training one.
    pub eval_only: bool,
    /// General text for the evaluation (WikiText-2; its last 10%).
    pub general_text: PathBuf,
    /// Passages of general text evaluated.
    pub general_passages: usize,
    pub seed: u64,
}

impl Default for MemoryTrainConfig {
    fn default() -> Self {
        Self {
            corpus: PathBuf::from("../shared/data/beir/scifact"),
            anchor_dir: PathBuf::from("models/weights/smollm2-135m"),
            encoder_dir: PathBuf::from("models/weights/all-MiniLM-L6-v2"),
            out: PathBuf::from("data/memory-bank"),
            documents: 192,
            held_out: 48,
            max_tokens: 96,
            levels: 2,
            branching: 4,
            first_layer: 26,
            units_per_level: vec![128, 64],
            epochs_per_level: vec![1, 5],
            lr_per_level: vec![2e-3, 1e-2],
            batch: 2,
            min_similarity: vec![0.3, 0.0],
            eval_only: false,
            leaf_gate: Some(0.8),
            general_text: PathBuf::from("../shared/data/text/wikitext-2-valid.txt"),
            general_passages: 32,
            seed: 7,
        }
    }
}

impl MemoryTrainConfig {
    /// Checks the per-level lists against `levels`.
    pub fn validate(&self) -> Result<()> {
        let per_level = [
            ("units_per_level", self.units_per_level.len()),
            ("epochs_per_level", self.epochs_per_level.len()),
            ("lr_per_level", self.lr_per_level.len()),
        ];
        for (name, n) in per_level {
            if n != self.levels {
                return Err(MemoryTrainError::Invalid(format!(
                    "{name} has {n} entries for {} levels",
                    self.levels
                )));
            }
        }
        if self.max_tokens < 8 || self.batch == 0 || self.documents == 0 {
            return Err(MemoryTrainError::Invalid(
                "max_tokens must be at least 8, batch and documents at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What `run` produced: the training report and the evaluation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub config: MemoryTrainConfig,
    pub train: TrainReport,
    pub evaluation: Evaluation,
    pub held_out: Vec<String>,
}

/// The whole pipeline: sample, embed, build, train, evaluate; writes
/// `training.json` (this report) into the bank directory.
pub fn run(config: &MemoryTrainConfig) -> Result<RunReport> {
    use mnemos_text::{EncoderOptions, MiniLmEncoder};

    config.validate()?;
    let docs = read_corpus(&config.corpus)?;
    let (bank_docs, held) = sample(docs, config.documents, config.held_out, config.seed)?;
    let model = mnemos_llama::Llama::load(&config.anchor_dir)?;
    let encoder = MiniLmEncoder::load(&config.encoder_dir, EncoderOptions::default())?;
    let (bank, train) = if config.eval_only {
        let mut bank = mnemos_membank::Bank::open(&config.out)?;
        if bank.texts().is_empty() {
            // Banks trained before texts and settings were recorded.
            bank.set_texts(bank_docs.iter().map(|d| (d.id.clone(), d.text.clone())))?;
            let training = (0..config.levels)
                .map(|l| mnemos_membank::LevelTraining {
                    epochs: config.epochs_per_level[l],
                    learning_rate: config.lr_per_level[l],
                    batch: config.batch,
                })
                .collect();
            bank.set_training(training, config.max_tokens)?;
        }
        // Document embeddings are not stored; the leaf gate needs them.
        let texts: Vec<&str> = bank_docs.iter().map(|d| d.text.as_str()).collect();
        let vectors = fit::embed(&encoder, &texts)?;
        bank.set_document_vectors(bank_docs.iter().map(|d| d.id.clone()).zip(vectors));
        let previous: serde_json::Value = std::fs::read(config.out.join("training.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let train: TrainReport =
            serde_json::from_value(previous["train"].clone()).map_err(|e| {
                MemoryTrainError::Invalid(format!("no training report in the bank: {e}"))
            })?;
        (bank, train)
    } else {
        train_bank(config, &model, &encoder, &bank_docs)?
    };

    let clip_all = |docs: &[Document]| -> Result<Vec<String>> {
        docs.iter()
            .map(|d| eval::clip(&model, &d.text, config.max_tokens))
            .collect()
    };
    let general: Vec<String> = wiki_passages(&config.general_text, config.general_passages)?
        .iter()
        .map(|t| eval::clip(&model, t, config.max_tokens))
        .collect::<Result<_>>()?;
    let trained_sample: Vec<Document> = bank_docs
        .iter()
        .take(config.held_out.max(32))
        .cloned()
        .collect();
    let sets = [
        ("trained", clip_all(&trained_sample)?),
        ("held_out", clip_all(&held)?),
        ("general", general),
    ];
    let evaluation = evaluate(
        &model,
        &encoder,
        &bank,
        &sets,
        &config.min_similarity,
        config.leaf_gate,
    )?;
    let report = RunReport {
        config: config.clone(),
        train,
        evaluation,
        held_out: held.iter().map(|d| d.id.clone()).collect(),
    };
    let path = config.out.join("training.json");
    let json = serde_json::to_vec_pretty(&report)
        .map_err(|e| MemoryTrainError::Invalid(format!("report: {e}")))?;
    std::fs::write(&path, json).map_err(|e| MemoryTrainError::Io { path, source: e })?;
    Ok(report)
}
