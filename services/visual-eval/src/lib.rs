//! Evaluation of the visual memory (`SPECS.md` §3) on the MNIST test set
//! and scikit-learn's digits, both embedded by the EfficientNet-Lite0
//! image encoder: what `mnemos eval-visual` runs.
//!
//! Per data set, on a fixed memory/query split ([`split`]):
//! - kNN accuracy of every aggregation for k ∈ [`KS`] ([`knn`]);
//! - a linear probe on the same memory embeddings as the baseline
//!   ([`probe`]);
//! - unlearning a whole class through the durable memory and adding it
//!   back 1, 10 and 100 samples at a time, and hard and soft pruning
//!   ([`experiments`]);
//!
//! plus the encoder's throughput. [`run`] returns it all as a [`Report`]
//! (serde `Serialize`, the `--json` output); printing is the caller's.
//! Everything is deterministic: no random seed enters the split, the
//! probe or the edits.

pub mod data;
pub mod encode;
pub mod experiments;
pub mod folds;
pub mod knn;
pub mod probe;
pub mod split;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use mnemos_vision::{EncoderOptions, ImageEncoder};
use serde::Serialize;

pub use data::Dataset;
pub use experiments::{PruningReport, UnlearnReport};
pub use folds::{CrossValidation, Discordant};
pub use knn::ClassAccuracy;
pub use probe::ProbeReport;
pub use split::Split;

/// The k of the accuracy grid.
pub const KS: [usize; 5] = [1, 5, 10, 20, 50];
/// Digits 0–9.
pub const CLASSES: usize = 10;

/// Errors of the evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A data file is malformed (bad magic, truncated, wrong columns).
    #[error("{}: {reason}", path.display())]
    Data { path: PathBuf, reason: String },
    /// A data file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image encoder: {0}")]
    Model(#[from] mnemos_vision::ModelError),
    #[error("visual memory: {0}")]
    Memory(#[from] mnemos_visual::VisualError),
    #[error("linear probe: {0}")]
    Probe(#[from] candle_core::Error),
    /// An option is out of range; the message names it.
    #[error("invalid option: {0}")]
    Options(String),
}

pub type Result<T> = std::result::Result<T, EvalError>;

/// What to evaluate with.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The image encoder's directory (EfficientNet-Lite0 weights).
    pub model_dir: PathBuf,
    /// Holds `mnist/` and `digits/` (`../shared/data` in a checkout).
    pub data_dir: PathBuf,
    /// Threads for encoding and for scoring queries.
    pub threads: usize,
    /// Use only the first this many images of each data set (quick runs;
    /// the split rule is applied to what remains).
    pub limit: Option<usize>,
}

/// Where a run is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A stage of one data set begins.
    Stage { dataset: &'a str, stage: &'a str },
    /// `done` of `total` images of `dataset` are embedded.
    Encoded {
        dataset: &'a str,
        done: usize,
        total: usize,
    },
}

/// Everything measured, keyed as `mnemos eval-visual --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub datasets: BTreeMap<&'static str, DatasetReport>,
    pub encode: EncodeReport,
    /// Wall time of the whole run.
    pub seconds: f64,
}

/// One data set's results.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetReport {
    pub images: usize,
    pub memory: usize,
    pub queries: usize,
    /// The split rule, in words.
    pub split: String,
    /// Query accuracy: aggregation → k → accuracy.
    pub accuracy: BTreeMap<&'static str, BTreeMap<usize, f64>>,
    /// The same grid cross-validated: each fold of the split rule in turn
    /// is the query set, so every image is queried once ([`folds`]).
    pub cross_validated: Option<CrossValidation>,
    pub linear_probe: ProbeReport,
    pub unlearn: UnlearnReport,
    pub pruning: PruningReport,
    /// Wall time of the kNN grid (one search per query, every k and
    /// aggregation from it).
    pub knn_seconds: f64,
}

/// The encoder's throughput over both data sets.
#[derive(Debug, Clone, Serialize)]
pub struct EncodeReport {
    pub images: usize,
    pub threads: usize,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// Runs the whole evaluation.
pub fn run(opts: &EvalOptions) -> Result<Report> {
    run_with_progress(opts, &|_| {})
}

/// [`run`], reporting progress (from several threads while encoding).
pub fn run_with_progress(
    opts: &EvalOptions,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<Report> {
    let started = Instant::now();
    if opts.threads == 0 || opts.threads > 256 {
        return Err(EvalError::Options("threads must be in 1..=256".into()));
    }
    if opts.limit == Some(0) {
        return Err(EvalError::Options("limit must be at least 1".into()));
    }
    let sets = [
        (
            data::load_mnist(&opts.data_dir.join("mnist"))?,
            split::MNIST_QUERY_EVERY,
        ),
        (
            data::load_digits(&opts.data_dir.join("digits"))?,
            split::DIGITS_QUERY_EVERY,
        ),
    ];
    let encoder = ImageEncoder::load(&opts.model_dir, EncoderOptions::default())?;

    let mut encoded = Vec::with_capacity(sets.len());
    let encode_started = Instant::now();
    let mut images = 0;
    for (mut set, every) in sets {
        if let Some(limit) = opts.limit {
            set.truncate(limit);
        }
        let name = set.name;
        progress(Progress::Stage {
            dataset: name,
            stage: "encoding",
        });
        let embeddings = encode::embed_all(&encoder, &set, opts.threads, &|done, total| {
            progress(Progress::Encoded {
                dataset: name,
                done,
                total,
            })
        })?;
        images += set.len();
        encoded.push((set, every, embeddings));
    }
    let encode_seconds = encode_started.elapsed().as_secs_f64();

    let mut datasets = BTreeMap::new();
    for (set, every, embeddings) in encoded {
        progress(Progress::Stage {
            dataset: set.name,
            stage: "cross-validated kNN accuracy",
        });
        let cross_validated =
            folds::cross_validate(set.name, &embeddings, &set.labels, every, opts.threads)?;
        let split = Split::new(set.name, embeddings, &set.labels, every);
        let mut report = evaluate(&split, set.len(), every, opts.threads, &|stage| {
            progress(Progress::Stage {
                dataset: set.name,
                stage,
            })
        })?;
        report.cross_validated = Some(cross_validated);
        datasets.insert(set.name, report);
    }
    Ok(Report {
        datasets,
        encode: EncodeReport {
            images,
            threads: opts.threads,
            seconds: encode_seconds,
            images_per_s: images as f64 / encode_seconds.max(1e-9),
        },
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Every experiment on one split data set.
pub fn evaluate(
    split: &Split,
    images: usize,
    every: usize,
    threads: usize,
    stage: &dyn Fn(&str),
) -> Result<DatasetReport> {
    stage("kNN accuracy");
    let knn_started = Instant::now();
    let memory = split.memory()?;
    let range = memory.distance_range();
    let grid = knn::grid();
    let queries = split.query_refs();
    let correct = knn::correctness(
        &memory,
        range,
        &queries,
        &split.query_labels,
        &grid,
        threads,
    )?;
    let accuracy = knn::accuracy_table(&grid, &correct);
    let knn_seconds = knn_started.elapsed().as_secs_f64();

    stage("linear probe");
    let linear_probe = probe::evaluate(
        &split.memory_refs(),
        &split.memory_labels,
        &queries,
        &split.query_labels,
        CLASSES,
    )?;

    stage("unlearning");
    let dir = tempfile::tempdir().map_err(|e| EvalError::Io {
        path: std::env::temp_dir(),
        source: e,
    })?;
    let unlearn = experiments::unlearn(split, &dir.path().join("memory"), threads)?;

    stage("pruning");
    let pruning = experiments::pruning(&memory, split, threads)?;

    Ok(DatasetReport {
        images,
        memory: split.memory_rows.len(),
        queries: split.query_rows.len(),
        split: format!(
            "image i (file order) is a query when i % {every} == {}, else a memory item",
            every - 1
        ),
        accuracy,
        cross_validated: None,
        linear_probe,
        unlearn,
        pruning,
        knn_seconds,
    })
}
