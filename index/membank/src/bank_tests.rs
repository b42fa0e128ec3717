use candle_core::Tensor;
use tempfile::TempDir;

use super::*;
use crate::testing::{bank_config as config, clustered, row};

const EMBED: usize = 8;

/// A bank over 3 clusters of 6 documents, no block trained, and the
/// embeddings.
fn fresh() -> Result<(TempDir, Bank, Vec<f32>, Vec<String>)> {
    let dir = tempfile::tempdir().map_err(BankError::io(Path::new("tempdir")))?;
    let (vectors, ids) = clustered(3, 6, EMBED, 0.05, 8);
    let tree = Tree::build(&vectors, EMBED, &ids, config().tree)?;
    let bank = Bank::create(dir.path(), config(), tree)?;
    Ok((dir, bank, vectors, ids))
}

fn meta(node: &NodeId, trained_on: &[String]) -> BlockMeta {
    BlockMeta {
        node: node.clone(),
        trained_on: trained_on.to_vec(),
        steps: 10,
        final_loss: Some(1.25),
        train_secs: 0.5,
        disabled: false,
        version: 0,
    }
}

/// Gives each node on `path` a block with non-zero `up` (as if trained on
/// the documents under it); returns the blocks.
fn train_path(bank: &mut Bank, path: &[NodeId]) -> Result<Vec<FfnUnits>> {
    let mut saved = Vec::new();
    for (i, node) in path.iter().enumerate() {
        let mut units = bank.init_block(node, i as u64)?;
        for u in units.layers.values_mut() {
            u.up = (u.gate.clone() * 0.5)?;
        }
        let docs = bank.tree().documents_under(node);
        bank.save_block(node, &units, meta(node, &docs))?;
        saved.push(units);
    }
    Ok(saved)
}

fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?.abs()?.max_all()?.to_scalar::<f32>()?)
}

#[test]
fn fresh_blocks_have_the_levels_shape_and_no_effect() -> Result<()> {
    let (_dir, bank, _, ids) = fresh()?;
    let path = bank.tree().path_of(&ids[0]).expect("path");
    assert_eq!(path.len(), 2);
    for (node, r) in path.iter().zip([4, 2]) {
        let units = bank.init_block(node, 1)?;
        assert_eq!(units.layers.keys().copied().collect::<Vec<_>>(), [1, 3]);
        for u in units.layers.values() {
            assert_eq!(u.gate.dims(), [r, 6]);
            assert_eq!(u.up.dims(), [r, 6]);
            assert_eq!(u.down.dims(), [6, r]);
            assert_eq!(u.up.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
            assert!(u.gate.abs()?.max_all()?.to_scalar::<f32>()? <= 0.04 + 1e-6);
        }
    }
    let other = bank.init_block(&path[0], 1)?;
    let again = bank.init_block(&path[0], 1)?;
    assert_eq!(
        max_diff(&other.layers[&1].gate, &again.layers[&1].gate)?,
        0.0
    );
    assert!(matches!(
        bank.init_block(&NodeId::root(), 1),
        Err(BankError::UnknownNode(_))
    ));
    let missing = NodeId::parse("9.9").expect("id");
    assert!(matches!(
        bank.init_block(&missing, 1),
        Err(BankError::UnknownNode(_))
    ));
    Ok(())
}

#[test]
fn saved_blocks_survive_reopening() -> Result<()> {
    let (dir, mut bank, _, ids) = fresh()?;
    let path = bank.tree().path_of(&ids[0]).expect("path");
    let saved = train_path(&mut bank, &path)?;
    drop(bank);

    let bank = Bank::open(dir.path())?;
    assert_eq!(bank.config(), &config());
    for (node, units) in path.iter().zip(&saved) {
        let loaded = bank.load_block(node)?.expect("trained block");
        for (l, u) in &units.layers {
            let back = &loaded.layers[l];
            assert!(max_diff(&u.gate, &back.gate)? < 1e-4);
            assert!(max_diff(&u.up, &back.up)? < 1e-4);
            assert!(max_diff(&u.down, &back.down)? < 1e-4);
        }
        let m = bank.meta(node).expect("meta");
        assert_eq!(m.version, 1);
        assert_eq!(m.final_loss, Some(1.25));
        assert!(m.trained_on.contains(&ids[0]));
    }
    let root = bank.tree().node(&NodeId::root()).expect("root");
    let untrained = root
        .children()
        .iter()
        .find(|c| **c != path[0])
        .expect("sibling");
    assert!(bank.meta(untrained).is_none());
    assert!(bank.load_block(untrained)?.is_none());
    let (params, bytes) = bank.size();
    assert_eq!(params, 2 * (4 + 2) * 6 * 3);
    let mut on_disk = 0;
    for node in &path {
        let file = bank.block_path(node);
        on_disk += fs::metadata(&file).map_err(BankError::io(&file))?.len();
        // f16 on disk, to halve the bytes.
        for (name, t) in candle_core::safetensors::load(&file, &candle_core::Device::Cpu)? {
            assert_eq!(t.dtype(), candle_core::DType::F16, "{name}");
        }
    }
    assert_eq!(bytes, on_disk);
    Ok(())
}

#[test]
fn saving_again_bumps_the_version_and_replaces_the_cached_block() -> Result<()> {
    let (_dir, mut bank, _, ids) = fresh()?;
    let node = bank.tree().path_of(&ids[0]).expect("path")[0].clone();
    let first = bank.init_block(&node, 1)?;
    assert_eq!(bank.save_block(&node, &first, meta(&node, &ids))?, 1);
    assert!(bank.load_block(&node)?.is_some()); // now cached
    let second = bank.init_block(&node, 2)?;
    assert_eq!(bank.save_block(&node, &second, meta(&node, &ids))?, 2);
    let loaded = bank.load_block(&node)?.expect("block");
    assert!(max_diff(&loaded.layers[&1].gate, &second.layers[&1].gate)? < 1e-4);
    assert!(max_diff(&loaded.layers[&1].gate, &first.layers[&1].gate)? > 1e-3);
    Ok(())
}

#[test]
fn wrong_blocks_are_refused() -> Result<()> {
    let (_dir, mut bank, _, ids) = fresh()?;
    let path = bank.tree().path_of(&ids[0]).expect("path");
    let level_one = bank.init_block(&path[0], 1)?;
    let err = bank.save_block(&path[1], &level_one, meta(&path[1], &ids));
    assert!(matches!(err, Err(BankError::InvalidInput(_))), "{err:?}");
    let err = bank.save_block(&path[0], &level_one, meta(&path[1], &ids));
    assert!(matches!(err, Err(BankError::InvalidInput(_))), "{err:?}");
    let mut one_layer = level_one.clone();
    one_layer.layers.remove(&3);
    assert!(bank
        .save_block(&path[0], &one_layer, meta(&path[0], &ids))
        .is_err());
    assert!(bank.meta(&path[0]).is_none());
    Ok(())
}

#[test]
fn disabling_is_durable_and_path_units_skip_disabled_blocks() -> Result<()> {
    let (dir, mut bank, vectors, ids) = fresh()?;
    let path = bank.tree().path_of(&ids[0]).expect("path");
    train_path(&mut bank, &path)?;
    // The leaf's block was trained on ids[0]; retrain the level-1 block as
    // if ids[0] had been left out.
    let units = bank.init_block(&path[0], 9)?;
    let without: Vec<String> = bank
        .tree()
        .documents_under(&path[0])
        .into_iter()
        .filter(|d| *d != ids[0])
        .collect();
    bank.save_block(&path[0], &units, meta(&path[0], &without))?;

    let query = bank.tree().descend(row(&vectors, EMBED, 0))?;
    assert_eq!(query, path);
    let (merged, used, params) = bank.path_units(&query)?;
    assert_eq!(used, path);
    assert_eq!(merged.layers[&1].units(), 4 + 2);
    assert_eq!(params, (4 + 2) * 6 * 3 * 2);

    assert_eq!(bank.disable_blocks_trained_on(&ids[0])?, [path[1].clone()]);
    assert_eq!(
        bank.disable_blocks_trained_on("nobody")?,
        Vec::<NodeId>::new()
    );
    let check = |bank: &Bank| -> Result<()> {
        assert!(bank.meta(&path[1]).expect("meta").disabled);
        assert!(bank.load_block(&path[1])?.is_none());
        let (merged, used, params) = bank.path_units(&path)?;
        assert_eq!(used, [path[0].clone()]);
        assert_eq!(merged.layers[&3].units(), 4);
        assert_eq!(params, 4 * 6 * 3 * 2);
        Ok(())
    };
    check(&bank)?;
    drop(bank);
    check(&Bank::open(dir.path())?)?;
    Ok(())
}

#[test]
fn an_empty_path_adds_nothing() -> Result<()> {
    let (_dir, bank, _, _) = fresh()?;
    let (merged, used, params) = bank.path_units(&[])?;
    assert!(merged.is_empty() && used.is_empty() && params == 0);
    Ok(())
}

#[test]
fn missing_or_damaged_files_are_errors() -> Result<()> {
    let (dir, mut bank, _, ids) = fresh()?;
    let path = bank.tree().path_of(&ids[0]).expect("path");
    train_path(&mut bank, &path)?;
    let file = bank.block_path(&path[1]);
    drop(bank);
    let bytes = fs::read(&file).map_err(BankError::io(&file))?;

    // Same length, one byte changed: found when the block is read.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    fs::write(&file, &flipped).map_err(BankError::io(&file))?;
    let bank = Bank::open(dir.path())?;
    assert!(matches!(
        bank.load_block(&path[1]),
        Err(BankError::Corrupt { .. })
    ));
    assert!(bank.path_units(&path).is_err());

    fs::write(&file, &bytes[..bytes.len() / 2]).map_err(BankError::io(&file))?;
    let err = Bank::open(dir.path()).expect_err("truncated block");
    assert!(err.to_string().contains(path[1].as_str()), "{err}");

    fs::remove_file(&file).map_err(BankError::io(&file))?;
    match Bank::open(dir.path()) {
        Err(BankError::MissingBlock { node, .. }) => assert_eq!(node, path[1]),
        other => panic!("expected a missing block, got {other:?}"),
    }

    let tree_path = dir.path().join(crate::TREE_FILE);
    fs::write(&tree_path, b"{\"format\": 1").map_err(BankError::io(&tree_path))?;
    assert!(matches!(
        Bank::open(dir.path()),
        Err(BankError::Corrupt { .. })
    ));
    Ok(())
}

#[test]
fn a_disabled_block_may_lose_its_file() -> Result<()> {
    let (dir, mut bank, _, ids) = fresh()?;
    let path = bank.tree().path_of(&ids[0]).expect("path");
    train_path(&mut bank, &path)?;
    bank.disable_blocks_trained_on(&ids[0])?;
    let file = bank.block_path(&path[1]);
    drop(bank);
    fs::remove_file(&file).map_err(BankError::io(&file))?;
    let bank = Bank::open(dir.path())?;
    assert!(bank.load_block(&path[1])?.is_none());
    Ok(())
}

#[test]
fn create_refuses_a_second_bank_and_mismatched_params() -> Result<()> {
    let (dir, bank, vectors, ids) = fresh()?;
    let tree = bank.tree().clone();
    assert!(Bank::create(dir.path(), config(), tree.clone()).is_err());
    let other = tempfile::tempdir().map_err(BankError::io(Path::new("tempdir")))?;
    let mut shallow = config();
    shallow.tree.levels = 1;
    shallow.units_per_level = vec![4];
    assert!(Bank::create(other.path(), shallow, tree).is_err());
    let mut bad = config();
    bad.units_per_level = vec![4];
    let tree = Tree::build(&vectors, EMBED, &ids, config().tree)?;
    assert!(Bank::create(other.path(), bad, tree).is_err());
    Ok(())
}

#[test]
fn documents_added_and_removed_through_the_bank_persist() -> Result<()> {
    let (dir, mut bank, vectors, ids) = fresh()?;
    let path = bank.assign_document("late".into(), row(&vectors, EMBED, 2))?;
    assert_eq!(Some(path.clone()), bank.tree().path_of(&ids[2]));
    drop(bank);
    let mut bank = Bank::open(dir.path())?;
    assert_eq!(bank.tree().path_of("late"), Some(path.clone()));
    assert_eq!(bank.remove_document(&ids[2])?, Some(path.clone()));
    assert_eq!(bank.remove_document(&ids[2])?, None);
    drop(bank);
    let bank = Bank::open(dir.path())?;
    assert_eq!(bank.tree().path_of(&ids[2]), None);
    assert!(bank
        .tree()
        .documents_under(&path[0])
        .contains(&"late".to_string()));
    Ok(())
}

#[test]
fn routing_cuts_the_path_where_the_cosine_falls_below_its_level() -> Result<()> {
    let (_dir, bank, vectors, _) = fresh()?;
    let doc = row(&vectors, EMBED, 0).to_vec();
    let (path, cosines) = bank.route_cosines(&doc)?;
    assert_eq!(path.len(), 2);
    assert!(cosines.iter().all(|c| *c > 0.5), "{cosines:?}");
    // No thresholds: the whole descent.
    assert_eq!(bank.route(&doc, &[])?, path);
    // A leaf threshold above the leaf's cosine keeps the topic node only.
    let above_leaf = cosines[1] + 1e-3;
    assert_eq!(bank.route(&doc, &[0.0, above_leaf])?, path[..1]);
    // A first-level threshold above its cosine: no memory at all.
    assert!(bank.route(&doc, &[cosines[0] + 1e-3])?.is_empty());
    // The last threshold holds for deeper levels.
    assert_eq!(bank.route(&doc, &[0.0])?, path);
    // Unlike anything in the bank: the opposite direction.
    let away: Vec<f32> = doc.iter().map(|v| -v).collect();
    assert!(bank.route(&away, &[0.3])?.is_empty());
    Ok(())
}

#[test]
fn the_leaf_gate_keeps_a_leaf_only_for_text_close_to_one_of_its_documents() -> Result<()> {
    let (_dir, mut bank, vectors, ids) = fresh()?;
    let doc = row(&vectors, EMBED, 0).to_vec();
    let full = bank.route(&doc, &[])?;
    assert_eq!(full.len(), 2);
    // No document vectors yet: the gate cannot judge and keeps the leaf.
    assert_eq!(bank.route_gated(&doc, &[], Some(0.99))?, full);
    bank.set_document_vectors(
        ids.iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), row(&vectors, EMBED, i).to_vec())),
    );
    // The document itself passes any gate below 1.
    assert_eq!(bank.route_gated(&doc, &[], Some(0.99))?, full);
    // Text of the same topic but close to no document: the topic only.
    let centroid = bank
        .tree()
        .node(&full[1])
        .expect("leaf")
        .centroid()
        .to_vec();
    let (_, cosines) = bank.route_cosines(&centroid)?;
    assert!(cosines[1] > 0.9);
    let gated = bank.route_gated(&centroid, &[], Some(1.0 + 1e-3))?;
    assert_eq!(gated, full[..1]);
    Ok(())
}
