//! `mnemos tiers publish` and `publish-data`: a memory bank or a data
//! directory uploaded to object storage.

use anyhow::Context as _;
use mnemos_membank::Bank;
use mnemos_tiers::{ColdOptions, ColdStore, Tiers, TiersConfig};

use crate::cli::{ObjectStoreArgs, TiersPublishArgs, TiersPublishDataArgs};

/// Tiers whose cold store is the upload's target. Publishing only talks to
/// the cold tier; the warm directory is a scratch folder the manager
/// requires, removed with the returned guard.
fn upload_tiers(a: &ObjectStoreArgs) -> anyhow::Result<(Tiers, tempfile::TempDir)> {
    let options = ColdOptions {
        endpoint: a.endpoint.clone(),
        region: a.region.clone(),
        ..ColdOptions::default()
    };
    let scratch = tempfile::tempdir()?;
    let mut config = TiersConfig::new(1, scratch.path().to_path_buf());
    config.cold = Some(ColdStore::open(&a.url, &options)?);
    Ok((Tiers::new(config)?, scratch))
}

pub fn publish(a: &TiersPublishArgs) -> anyhow::Result<()> {
    let bank =
        Bank::open(&a.bank).with_context(|| format!("opening the bank in {}", a.bank.display()))?;
    let (tiers, _scratch) = upload_tiers(&a.store)?;
    let started = std::time::Instant::now();
    let bytes = bank
        .publish(&tiers)
        .with_context(|| format!("publishing to {}", a.store.url))?;
    println!(
        "published {} blocks ({bytes} bytes) to {} in {:.1} s",
        bank.blocks().filter(|m| !m.disabled).count(),
        a.store.url,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn publish_data(a: &TiersPublishDataArgs) -> anyhow::Result<()> {
    let (tiers, _scratch) = upload_tiers(&a.store)?;
    let started = std::time::Instant::now();
    let stats = tiers
        .publish_dir(&a.data_dir, "snapshot")
        .with_context(|| format!("publishing {} to {}", a.data_dir.display(), a.store.url))?;
    println!(
        "published {} files ({} bytes) of {} to {} in {:.1} s",
        stats.files,
        stats.bytes,
        a.data_dir.display(),
        a.store.url,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
