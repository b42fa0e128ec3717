//! The `mnemos` command line: `serve`, `ingest`, `eval`. Flags override the
//! config file and `MNEMOS__*` variables (see `mnemos-config`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use mnemos_config::{Loader, Settings, ADMIN_TOKEN_ENV};

#[derive(Debug, Parser)]
#[command(
    name = "mnemos",
    version,
    about = "Retrieval over explicit, editable memory"
)]
pub struct Cli {
    /// A TOML config file (default: none; built-in defaults apply).
    #[arg(long, global = true, env = "MNEMOS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Index a collection into a data directory.
    Ingest(IngestArgs),
    /// Evaluate retrieval on a BEIR collection.
    Eval(EvalArgs),
    /// Evaluate the visual memory on MNIST and the sklearn digits: kNN
    /// accuracy per aggregation and k, a linear probe, unlearning a class,
    /// pruning.
    EvalVisual(EvalVisualArgs),
    /// Train a model (see `mnemos train --help`).
    #[command(subcommand)]
    Train(TrainCommand),
    /// Memory tiers (see `mnemos tiers --help`).
    #[command(subcommand)]
    Tiers(TiersCommand),
}

#[derive(Debug, Subcommand)]
pub enum TiersCommand {
    /// Upload a memory bank (blocks, tree, texts, manifest last) to object
    /// storage, so servers with `tiers.cold_url` pointing at it can start
    /// from the bucket. S3 credentials come from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`.
    Publish(TiersPublishArgs),
    /// Upload a stopped server's data directory (document store, indexes,
    /// visual memory, memory bank) to object storage, one object per file
    /// and a manifest last; a server with `tiers.data_url` pointing at it
    /// and an empty data directory restores it at start.
    PublishData(TiersPublishDataArgs),
}

#[derive(Debug, Args)]
pub struct TiersPublishDataArgs {
    /// The data directory (the server must be stopped).
    #[arg(long, default_value = "data")]
    pub data_dir: std::path::PathBuf,
    #[command(flatten)]
    pub store: ObjectStoreArgs,
}

#[derive(Debug, Args)]
pub struct TiersPublishArgs {
    /// The bank directory (the output of `mnemos train memory`).
    #[arg(long, default_value = "models/trained/memory-bank")]
    pub bank: std::path::PathBuf,
    #[command(flatten)]
    pub store: ObjectStoreArgs,
}

/// Where an upload goes.
#[derive(Debug, Args)]
pub struct ObjectStoreArgs {
    /// `s3://bucket/prefix` or `file:///absolute/dir`.
    #[arg(long)]
    pub url: String,
    /// An S3-compatible endpoint, e.g. `http://127.0.0.1:8333`.
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Train the Hypencoder's hyperheads on a BEIR collection's training
    /// qrels (never the test qrels), with BM25 + dense hard negatives and a
    /// BM25 + dense ensemble teacher; saves `config.json`,
    /// `model.safetensors` (f16) and `training.json` to `--out`.
    Hypencoder(TrainHypencoderArgs),
    /// Train the language models of the memory-layer experiment on
    /// WikiText-2 (its last 10% held out for validation) with one token
    /// budget: `tiny-2l`, `tiny-4l`, `tiny-2l-pkm`, `tiny-2l-memplus`, or
    /// `all` of them into `--out/<name>/` with a shared tokenizer; saves
    /// `config.json`, `model.safetensors` (f16), `tokenizer.json` and
    /// `training.json` (validation perplexity, training and generation
    /// tokens/s).
    Lm(TrainLmArgs),
    /// Build and train a hierarchical memory bank for the anchor LM
    /// (`lm.anchor_dir`, SmolLM2): MiniLM embeddings of a seeded sample of
    /// the corpus, hierarchical k-means, one block of appended SwiGLU
    /// units per node trained top-down with the anchor frozen; then the
    /// perplexity of the anchor alone vs with memory on trained, held-out
    /// and general text. Writes the bank and `training.json` to `--out`.
    Memory(TrainMemoryArgs),
}

#[derive(Debug, Args)]
pub struct TrainMemoryArgs {
    #[command(flatten)]
    pub common: Common,
    /// The bank directory to create (must not hold a bank yet).
    #[arg(long, default_value = "models/trained/memory-bank")]
    pub out: PathBuf,
    /// BEIR corpus directory or `corpus.jsonl` (the knowledge corpus).
    #[arg(long, default_value = "../shared/data/beir/scifact")]
    pub corpus: PathBuf,
    /// Documents in the bank (a seeded sample of the corpus).
    #[arg(long, default_value_t = 192)]
    pub documents: usize,
    /// Documents held out (same corpus, never trained on) for evaluation.
    #[arg(long, default_value_t = 48)]
    pub held_out: usize,
    /// Anchor tokens per document.
    #[arg(long, default_value_t = 96)]
    pub max_tokens: usize,
    /// Tree levels below the root.
    #[arg(long, default_value_t = 2)]
    pub levels: usize,
    /// Children per node.
    #[arg(long, default_value_t = 4)]
    pub branching: usize,
    /// First anchor block with memory units (all later blocks get them).
    #[arg(long, default_value_t = 26)]
    pub first_layer: usize,
    /// Units per block for each level, comma-separated (level 1 first).
    #[arg(long, value_delimiter = ',', default_value = "128,64")]
    pub units: Vec<usize>,
    /// Epochs per level, comma-separated. One pass at level 1: more and
    /// the topic blocks memorise their documents and hurt other text of
    /// the topic (4 epochs: held-out perplexity +4.4 %, 1 epoch: -7.2 %).
    #[arg(long, value_delimiter = ',', default_value = "1,5")]
    pub epochs: Vec<usize>,
    /// Learning rate per level, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2e-3,1e-2")]
    pub lr: Vec<f64>,
    /// Documents per update.
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Routing thresholds of the evaluation per level, comma-separated
    /// (cosine to the node's centroid below which the path is cut).
    #[arg(long, value_delimiter = ',', default_value = "0.3,0.0")]
    pub min_similarity: Vec<f32>,
    /// Leaf gate of the evaluation: a leaf block only for text whose cosine
    /// with one of the leaf's documents reaches it (negative: off).
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub leaf_gate: f32,
    /// Evaluate the bank already in `--out` (same seed and sample sizes)
    /// instead of training one.
    #[arg(long)]
    pub eval_only: bool,
    /// General text for the evaluation (its last 10% is used).
    #[arg(long, default_value = "../shared/data/text/wikitext-2-valid.txt")]
    pub general_text: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct TrainLmArgs {
    /// `tiny-2l`, `tiny-4l`, `tiny-2l-pkm`, `tiny-2l-memplus` or `all`.
    #[arg(long, value_parser = ["tiny-2l", "tiny-4l", "tiny-2l-pkm", "tiny-2l-memplus", "all"])]
    pub model: String,
    /// Where the model goes (with `all`, one directory per model inside).
    #[arg(long)]
    pub out: PathBuf,
    /// Training tokens per model, the same for every model.
    #[arg(long, default_value_t = 1_000_000)]
    pub tokens: usize,
    /// Tokens per training window.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Windows per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Vocabulary of the byte-level BPE tokenizer trained on the training
    /// part.
    #[arg(long, default_value_t = 4096, conflicts_with = "tokenizer")]
    pub vocab: usize,
    /// Reuse this `tokenizer.json` instead of training one (it should not
    /// have seen the validation text).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// The Wikipedia text; its last 10% is the validation set.
    #[arg(long, default_value = mnemos_lm_train::DEFAULT_TEXT)]
    pub text: PathBuf,
    /// Also train on `tinyshakespeare.txt` from the same directory
    /// (validation stays Wikipedia only).
    #[arg(long)]
    pub shakespeare: bool,
    /// Peak learning rate (warm-up, then cosine decay to a tenth).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Peak learning rate of the memory values (higher: each value is read
    /// by few tokens per step).
    #[arg(long, default_value_t = 4e-3)]
    pub value_lr: f64,
    /// Threads for training (default: one per core); generation speed is
    /// always measured on one thread.
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, default_value_t = 17)]
    pub seed: u64,
    /// Sub-keys per half of the memory layers (`n`; the memory holds
    /// `n²` values). Default: the presets' 192, whose weights fit the
    /// repository's 25 MB limit for committed f16 files.
    #[arg(long)]
    pub memory_keys: Option<usize>,
}

#[derive(Debug, Args)]
pub struct TrainHypencoderArgs {
    /// The BEIR collection (reads corpus, queries and qrels/train.tsv).
    #[arg(long, default_value = "../shared/data/beir/scifact")]
    pub beir: PathBuf,
    /// Where the trained model goes (config `hypencoder.model_dir`).
    #[arg(long, default_value = "models/weights/hypencoder-scifact")]
    pub out: PathBuf,
    /// Keep the encoded corpus and queries here between runs.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    #[arg(long, default_value_t = 12)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Hard negatives per query and step.
    #[arg(long, default_value_t = 7)]
    pub negatives: usize,
    #[arg(long, default_value_t = 2e-5)]
    pub lr: f64,
    /// Weight of the MarginMSE (teacher) loss; 0 trains on in-batch
    /// cross-entropy alone.
    #[arg(long, default_value_t = 1.0)]
    pub margin_mse_weight: f64,
    /// Hidden layers of the q-nets.
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    /// Start from random q-nets (the paper) instead of the dense warm start.
    #[arg(long)]
    pub random_start: bool,
    /// Stop after this many epochs without a better dev nDCG@10.
    #[arg(long, default_value_t = 3)]
    pub patience: usize,
    #[arg(long, default_value_t = 17)]
    pub seed: u64,
    /// Threads for encoding and training (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct Common {
    /// Where the store and indexes live (config `server.data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Model directory in hub layout (config `dense.model_dir`).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Disable the dense backend (BM25 only; no model needed).
    #[arg(long)]
    pub no_dense: bool,
    /// Disable the visual memory (no image model needed).
    #[arg(long)]
    pub no_visual: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (config `server.bind`).
    #[arg(long)]
    pub bind: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// A BEIR collection directory (reads `corpus.jsonl`).
    #[arg(long, conflicts_with = "jsonl", required_unless_present = "jsonl")]
    pub beir: Option<PathBuf>,
    /// A JSONL file of `{"_id"|"id", "title", "text", "metadata"}` lines.
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
    /// Documents per write batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A BEIR collection directory.
    #[arg(long)]
    pub beir: PathBuf,
    /// Methods to score: any of bm25, dense, hypencoder, rrf and linear
    /// (BM25 + dense fused), rrf3 and linear3 (all three fused).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "bm25,dense,hypencoder,rrf,linear,rrf3,linear3"
    )]
    pub backends: Vec<String>,
    /// The qrels split (`qrels/<split>.tsv`).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct EvalVisualArgs {
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// The image model's directory (config `visual.model_dir`).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Holds `mnist/` and `digits/`; relative paths are tried from the
    /// working directory, then from the checkout.
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,
    /// Threads for encoding and scoring (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Only the first N images of each data set (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// Loads settings: defaults → file → env → flags.
pub fn load_settings(
    config: Option<&PathBuf>,
    common: &Common,
    bind: Option<&str>,
) -> anyhow::Result<Settings> {
    let mut loader = Loader::new();
    if let Some(path) = config {
        loader = loader.file(path)?;
    }
    loader = loader.env(std::env::vars())?;
    let mut s = loader.build()?;
    if let Some(b) = bind {
        s.server.bind = b.to_string();
    }
    if let Some(d) = &common.data_dir {
        s.server.data_dir = d.clone();
    }
    if let Some(m) = &common.model_dir {
        s.dense.model_dir = m.clone();
    }
    if common.no_dense {
        s.dense.enabled = false;
        s.hypencoder.enabled = false;
        s.search.default_backends.retain(|b| b != "dense");
        if s.search.default_backends.is_empty() {
            s.search.default_backends.push("bm25".into());
        }
    }
    if common.no_visual {
        s.visual.enabled = false;
    }
    if let Ok(token) = std::env::var(ADMIN_TOKEN_ENV) {
        if !token.is_empty() {
            s.server.admin_token = Some(token);
        }
    }
    s.dense.model_dir = resolve_model_dir(&s.dense.model_dir);
    s.visual.model_dir = resolve_model_dir(&s.visual.model_dir);
    s.hypencoder.model_dir = resolve_model_dir(&s.hypencoder.model_dir);
    s.lm.models_dir = resolve_model_dir(&s.lm.models_dir);
    s.lm.anchor_dir = resolve_model_dir(&s.lm.anchor_dir);
    s.lm.memory_bank_dir = resolve_model_dir(&s.lm.memory_bank_dir);
    s.lm.memory_bank_corpus = resolve_model_dir(&s.lm.memory_bank_corpus);
    s.validate()?;
    Ok(s)
}

/// A relative model dir is looked up from the working directory first, then
/// from the source checkout this binary was built in, so `cargo run` works
/// from any folder.
pub fn resolve_model_dir(dir: &std::path::Path) -> PathBuf {
    if dir.is_absolute() || dir.exists() {
        return dir.to_path_buf();
    }
    let checkout = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(dir);
    if checkout.exists() {
        checkout
    } else {
        dir.to_path_buf()
    }
}

/// A friendly message when a model is absent, before anything loads.
pub fn check_model(s: &Settings) -> anyhow::Result<()> {
    if s.dense.enabled && !s.dense.model_dir.join("config.json").exists() {
        anyhow::bail!(
            "the dense model is not installed at {}.\n  Run: scripts/install-models.sh\n  \
             (or pass --model-dir DIR, or --no-dense for BM25 only)",
            s.dense.model_dir.display()
        );
    }
    if s.visual.enabled && s.visual.encoder && !s.visual.model_dir.is_dir() {
        anyhow::bail!(
            "the image model is not installed at {}.\n  Run: scripts/install-models.sh\n  \
             (or set visual.model_dir, or pass --no-visual)",
            s.visual.model_dir.display()
        );
    }
    if s.hypencoder.enabled
        && s.dense.enabled
        && !s.hypencoder.model_dir.join("model.safetensors").exists()
    {
        anyhow::bail!(
            "no trained hypencoder at {}.\n  Run: mnemos train hypencoder --out DIR\n  \
             (or set hypencoder.model_dir, or MNEMOS__HYPENCODER__ENABLED=false)",
            s.hypencoder.model_dir.display()
        );
    }
    Ok(())
}
