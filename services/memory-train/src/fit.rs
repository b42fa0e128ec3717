//! Building the tree and training its blocks top-down.

use std::collections::HashMap;
use std::time::Instant;

use mnemos_llama::{train_units, FfnUnits, Llama, TrainText, UnitTraining};
use mnemos_membank::{
    Bank, BankConfig, BlockMeta, LevelTraining, NodeId, Tree, TreeParams, TreeStats,
};
use mnemos_models_core::Encoder;
use serde::Serialize;

use crate::corpus::Document;
use crate::{MemoryTrainConfig, MemoryTrainError, Result};

/// One trained block.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BlockReport {
    pub node: String,
    pub level: usize,
    pub documents: usize,
    pub tokens: usize,
    pub steps: usize,
    pub first_epoch_loss: f64,
    pub last_epoch_loss: f64,
    pub secs: f64,
    pub tokens_per_sec: f64,
}

/// What building and training the bank did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TrainReport {
    pub tree: TreeStats,
    pub blocks: Vec<BlockReport>,
    /// Parameters over all trained blocks.
    pub bank_parameters: usize,
    pub bank_bytes: u64,
    /// Parameters fetched for one full path (one block per level).
    pub path_parameters: usize,
    pub anchor_parameters: usize,
    pub embed_secs: f64,
    pub prepare_secs: f64,
    pub train_secs: f64,
}

/// Embeds `docs` with the routing encoder.
pub fn embed(encoder: &dyn Encoder, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        out.extend(encoder.embed(chunk)?);
    }
    Ok(out)
}

/// Builds the tree over `docs`, creates the bank in `config.out` and
/// trains every block, level by level.
pub fn train_bank(
    config: &MemoryTrainConfig,
    model: &Llama,
    encoder: &dyn Encoder,
    docs: &[Document],
) -> Result<(Bank, TrainReport)> {
    config.validate()?;
    let layers: Vec<usize> = (config.first_layer..model.config().layers).collect();
    if layers.is_empty() {
        return Err(MemoryTrainError::Invalid(format!(
            "first_layer {} leaves no anchor block for memory (the anchor has {})",
            config.first_layer,
            model.config().layers
        )));
    }
    let started = Instant::now();
    let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
    let vectors = embed(encoder, &texts)?;
    let embed_secs = started.elapsed().as_secs_f64();
    let dim = encoder.dim();
    let flat: Vec<f32> = vectors.concat();
    let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
    let params = TreeParams {
        levels: config.levels,
        branching: config.branching,
        seed: config.seed,
        ..TreeParams::default()
    };
    let tree = Tree::build(&flat, dim, &ids, params)?;
    let stats = tree.stats();
    tracing::info!(?stats, "tree built");
    let bank_config = BankConfig {
        anchor: "smollm2-135m".into(),
        dim: model.config().dim,
        layers: layers.clone(),
        units_per_level: config.units_per_level.clone(),
        tree: params,
        training: (0..config.levels)
            .map(|l| LevelTraining {
                epochs: config.epochs_per_level[l],
                learning_rate: config.lr_per_level[l],
                batch: config.batch,
            })
            .collect(),
        max_tokens: config.max_tokens,
    };
    let mut bank = Bank::create(&config.out, bank_config, tree)?;
    bank.set_texts(docs.iter().map(|d| (d.id.clone(), d.text.clone())))?;
    // The leaf gate compares texts with these same embeddings.
    bank.set_document_vectors(ids.iter().cloned().zip(vectors));

    // The residual stream at the first memory block, once per document.
    let started = Instant::now();
    let first = config.first_layer;
    let mut prepared: HashMap<String, TrainText> = HashMap::new();
    for (i, d) in docs.iter().enumerate() {
        let mut tokens = model.encode(&d.text)?;
        tokens.truncate(config.max_tokens);
        if tokens.len() >= 2 {
            prepared.insert(d.id.clone(), TrainText::prepare(model, &tokens, first)?);
        }
        if (i + 1) % 64 == 0 {
            tracing::info!(done = i + 1, of = docs.len(), "prepared anchor states");
        }
    }
    let prepare_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut blocks = Vec::new();
    let nodes = bank.tree().block_nodes();
    for node in nodes {
        let level = node.level();
        let under = bank.tree().documents_under(&node);
        let texts: Vec<&TrainText> = under.iter().filter_map(|id| prepared.get(id)).collect();
        if texts.is_empty() {
            continue;
        }
        let ancestors: Vec<NodeId> = node.path().into_iter().filter(|n| *n != node).collect();
        let (frozen, _, _) = bank.path_units(&ancestors)?;
        let frozen = (!frozen.is_empty()).then_some(frozen);
        let init = bank.init_block(&node, config.seed)?;
        let training = UnitTraining {
            epochs: config.epochs_per_level[level - 1],
            batch: config.batch,
            learning_rate: config.lr_per_level[level - 1],
            seed: config.seed ^ level as u64,
            ..UnitTraining::default()
        };
        let (units, r) = train_units(
            model,
            &texts,
            first,
            frozen.as_ref(),
            &init,
            &training,
            |_, _| {},
        )?;
        let report = BlockReport {
            node: node.to_string(),
            level,
            documents: texts.len(),
            tokens: texts.iter().map(|t| t.tokens()).sum(),
            steps: r.steps,
            first_epoch_loss: r.first_epoch_loss,
            last_epoch_loss: r.last_epoch_loss,
            secs: r.secs,
            tokens_per_sec: r.tokens_per_sec,
        };
        tracing::info!(
            node = %node,
            level,
            documents = report.documents,
            loss_first_epoch = format!("{:.3}", r.first_epoch_loss),
            loss_last_epoch = format!("{:.3}", r.last_epoch_loss),
            secs = format!("{:.1}", r.secs),
            tokens_per_sec = format!("{:.0}", r.tokens_per_sec),
            "block trained"
        );
        let meta = BlockMeta {
            node: node.clone(),
            trained_on: under.clone(),
            steps: r.steps,
            final_loss: Some(r.last_epoch_loss),
            train_secs: r.secs,
            disabled: false,
            version: 0,
        };
        save(&mut bank, &node, &units, meta)?;
        blocks.push(report);
    }
    let (bank_parameters, bank_bytes) = bank.size();
    let per_unit = 3 * model.config().dim * layers.len();
    let report = TrainReport {
        tree: stats,
        blocks,
        bank_parameters,
        bank_bytes,
        path_parameters: config.units_per_level.iter().sum::<usize>() * per_unit,
        anchor_parameters: model.num_parameters(),
        embed_secs,
        prepare_secs,
        train_secs: started.elapsed().as_secs_f64(),
    };
    Ok((bank, report))
}

fn save(bank: &mut Bank, node: &NodeId, units: &FfnUnits, meta: BlockMeta) -> Result<()> {
    bank.save_block(node, units, meta)?;
    Ok(())
}
