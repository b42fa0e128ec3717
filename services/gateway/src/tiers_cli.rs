//! `mnemos tiers publish`: a memory bank uploaded to object storage.

use anyhow::Context as _;
use mnemos_membank::Bank;
use mnemos_tiers::{ColdOptions, ColdStore, Tiers, TiersConfig};

use crate::cli::{TiersPublishArgs, TiersPublishDataArgs};

pub fn publish(a: &TiersPublishArgs) -> anyhow::Result<()> {
    let bank =
        Bank::open(&a.bank).with_context(|| format!("opening the bank in {}", a.bank.display()))?;
    let options = ColdOptions {
        endpoint: a.endpoint.clone(),
        region: a.region.clone(),
        ..ColdOptions::default()
    };
    let store = ColdStore::open(&a.url, &options)?;
    // Publishing only talks to the cold tier; the warm directory is a
    // scratch folder the manager requires.
    let scratch = tempfile::tempdir()?;
    let mut config = TiersConfig::new(1, scratch.path().to_path_buf());
    config.cold = Some(store);
    let tiers = Tiers::new(config)?;
    let started = std::time::Instant::now();
    let bytes = bank
        .publish(&tiers)
        .with_context(|| format!("publishing to {}", a.url))?;
    println!(
        "published {} blocks ({bytes} bytes) to {} in {:.1} s",
        bank.blocks().filter(|m| !m.disabled).count(),
        a.url,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn publish_data(a: &TiersPublishDataArgs) -> anyhow::Result<()> {
    let options = ColdOptions {
        endpoint: a.endpoint.clone(),
        region: a.region.clone(),
        ..ColdOptions::default()
    };
    // The URL's prefix is the snapshot's: publish under the store's root.
    let store = ColdStore::open(&a.url, &options)?;
    let scratch = tempfile::tempdir()?;
    let mut config = TiersConfig::new(1, scratch.path().to_path_buf());
    config.cold = Some(store);
    let tiers = Tiers::new(config)?;
    let started = std::time::Instant::now();
    let stats = tiers
        .publish_dir(&a.data_dir, "snapshot")
        .with_context(|| format!("publishing {} to {}", a.data_dir.display(), a.url))?;
    println!(
        "published {} files ({} bytes) of {} to {} in {:.1} s",
        stats.files,
        stats.bytes,
        a.data_dir.display(),
        a.url,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
