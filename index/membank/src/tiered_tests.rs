use std::path::Path;
use std::time::Duration;

use mnemos_tiers::{ColdOptions, ColdStore, Tier, Tiers, TiersConfig};
use tempfile::TempDir;

use super::*;
use crate::testing::{bank_config as config, clustered, row};
use crate::{BlockMeta, Tree};

const EMBED: usize = 8;

fn tempdir() -> Result<TempDir> {
    tempfile::tempdir().map_err(BankError::io(Path::new("tempdir")))
}

/// A bank over 3 clusters of 6 documents with every block trained, and
/// the embeddings.
fn trained() -> Result<(TempDir, Bank, Vec<f32>)> {
    let dir = tempdir()?;
    let (vectors, ids) = clustered(3, 6, EMBED, 0.05, 8);
    let tree = Tree::build(&vectors, EMBED, &ids, config().tree)?;
    let mut bank = Bank::create(dir.path(), config(), tree)?;
    for (i, node) in bank.tree().block_nodes().into_iter().enumerate() {
        let mut units = bank.init_block(&node, i as u64)?;
        for u in units.layers.values_mut() {
            u.up = (u.gate.clone() * 0.5)?;
        }
        let meta = BlockMeta {
            node: node.clone(),
            trained_on: bank.tree().documents_under(&node),
            steps: 1,
            final_loss: None,
            train_secs: 0.0,
            disabled: false,
            version: 0,
        };
        bank.save_block(&node, &units, meta)?;
    }
    Ok((dir, bank, vectors))
}

fn tiers_over(warm: &Path, cold: &Path, budget: u64) -> Result<Tiers> {
    let store = ColdStore::open(
        &format!("file://{}", cold.display()),
        &ColdOptions::default(),
    )?;
    let mut config = TiersConfig::new(budget, warm.to_path_buf());
    config.cold = Some(store);
    config.fetch_timeout = Duration::from_secs(5);
    Ok(Tiers::new(config)?)
}

fn flat(units: &FfnUnits) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for u in units.layers.values() {
        for t in [&u.gate, &u.up, &u.down] {
            out.extend(t.flatten_all()?.to_vec1::<f32>()?);
        }
    }
    Ok(out)
}

#[test]
fn a_bank_published_to_object_storage_serves_the_same_memory() -> Result<()> {
    let (_src, bank, vectors) = trained()?;
    let (cold, served) = (tempdir()?, tempdir()?);
    let publisher = tiers_over(&served.path().join("unused"), cold.path(), 1 << 20)?;
    let uploaded = bank.publish(&publisher)?;
    assert!(uploaded > bank.size().1);

    // A fresh server: only the small files are downloaded at start.
    let tiers = tiers_over(served.path(), cold.path(), 1 << 20)?;
    fetch_bank_files(&tiers, served.path(), Duration::from_secs(5))?;
    assert!(!served.path().join("blocks").exists());
    let remote = Bank::open_with(served.path(), Some(tiers.clone()))?;
    let path = remote.route(row(&vectors, EMBED, 0), &[])?;
    assert_eq!(path.len(), 2);
    let got = remote.path_memory(&path)?;
    assert!(!got.degraded());
    assert_eq!(got.used, path);
    assert_eq!(got.tiers, vec![Tier::Cold, Tier::Cold]);
    let (want, _, params) = bank.path_units(&path)?;
    assert_eq!(got.parameters, params);
    assert_eq!(flat(&got.units)?, flat(&want)?);
    // Read again: from RAM now.
    assert_eq!(remote.path_memory(&path)?.tiers, vec![Tier::Hot, Tier::Hot]);
    Ok(())
}

#[test]
fn a_block_that_cannot_be_fetched_ends_the_path_at_its_parent() -> Result<()> {
    let (_src, bank, vectors) = trained()?;
    let (cold, served) = (tempdir()?, tempdir()?);
    bank.publish(&tiers_over(
        &served.path().join("unused"),
        cold.path(),
        1 << 20,
    )?)?;
    let tiers = tiers_over(served.path(), cold.path(), 1 << 20)?;
    fetch_bank_files(&tiers, served.path(), Duration::from_secs(5))?;
    let remote = Bank::open_with(served.path(), Some(tiers))?;
    let path = remote.route(row(&vectors, EMBED, 0), &[])?;
    // The leaf's object damaged in the bucket: never served.
    let leaf_object = cold
        .path()
        .join(format!("blocks/{}.safetensors", path[1].as_str()));
    let mut data = std::fs::read(&leaf_object).map_err(BankError::io(&leaf_object))?;
    let last = data.len() - 1;
    data[last] ^= 0x5a;
    std::fs::write(&leaf_object, &data).map_err(BankError::io(&leaf_object))?;
    let got = remote.path_memory(&path)?;
    assert!(got.degraded());
    assert_eq!(got.used, vec![path[0].clone()]);
    assert_eq!(got.missing.len(), 1);
    assert_eq!(got.missing[0].node, path[1]);
    assert!(
        got.missing[0].reason.contains("check"),
        "{}",
        got.missing[0].reason
    );
    let (parent_only, _, params) = bank.path_units(&path[..1])?;
    assert_eq!(got.parameters, params);
    assert_eq!(flat(&got.units)?, flat(&parent_only)?);
    // Pinning level 1 keeps every level-1 block in RAM.
    assert_eq!(remote.pin_levels(1)?, 3);
    assert_eq!(remote.tiers().map(|t| t.summary().pinned_blocks), Some(3));
    Ok(())
}
