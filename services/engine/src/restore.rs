//! Start-up from a bucket: an empty data directory is first restored from
//! the data snapshot at `tiers.data_url` (`mnemos tiers publish-data`).

use std::path::Path;
use std::time::Duration;

use mnemos_config::TierSettings;
use mnemos_tiers::{ColdOptions, ColdStore, Tiers, TiersConfig};

use crate::{EngineError, Result};

/// How `[tiers]` reaches object storage (credentials from `AWS_*`).
pub(crate) fn cold_options(settings: &TierSettings) -> ColdOptions {
    ColdOptions {
        endpoint: settings.s3_endpoint.clone(),
        region: settings.s3_region.clone(),
        ..ColdOptions::default()
    }
}

/// Restores `data_dir` from `settings.data_url` when it is absent or
/// empty; a directory holding anything is left alone (never overwritten).
pub(crate) fn restore_data_dir(settings: &TierSettings, data_dir: &Path) -> Result<()> {
    let Some(url) = &settings.data_url else {
        return Ok(());
    };
    let empty = std::fs::read_dir(data_dir).map_or(true, |mut d| d.next().is_none());
    if !empty {
        return Ok(());
    }
    let fail = |e: mnemos_tiers::TierError| {
        EngineError::Unavailable(format!("cannot restore the data directory from {url}: {e}"))
    };
    let store = ColdStore::open(url, &cold_options(settings)).map_err(fail)?;
    // The manager wants a warm directory; a restore never uses it.
    let scratch = data_dir.with_extension("restore-scratch");
    let mut config = TiersConfig::new(1, scratch.clone());
    config.cold = Some(store);
    let tiers = Tiers::new(config).map_err(fail)?;
    let started = std::time::Instant::now();
    let stats = tiers
        .restore_dir("snapshot", data_dir, Duration::from_secs(600))
        .map_err(fail);
    let _ = std::fs::remove_dir_all(&scratch);
    let stats = stats?;
    tracing::info!(
        url,
        files = stats.files,
        bytes = stats.bytes,
        secs = started.elapsed().as_secs_f64(),
        "data directory restored from object storage"
    );
    Ok(())
}
