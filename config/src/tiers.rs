//! `[tiers]`: where the anchor's memory-bank blocks are read from (SPECS §6):
//! RAM within a budget, memory-mapped files in the data directory, and
//! optionally object storage.

use serde::{Deserialize, Serialize};

use crate::settings::{in_range, invalid};
use crate::Result;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierSettings {
    /// Read bank blocks through the tiers. Off: every block read is
    /// decoded from its local file once and kept (the all-in-RAM bank).
    pub enabled: bool,
    /// RAM for blocks, pinned ones included (MiB).
    pub hot_budget_mb: u64,
    /// Pin the blocks of levels 1..=this in RAM at start (0: none).
    pub pin_levels: usize,
    /// Object storage holding a published bank (`mnemos tiers publish`):
    /// `s3://bucket/prefix` or `file:///abs/dir`. A server whose data
    /// directory has no bank starts from it (tree and manifest downloaded,
    /// blocks fetched when read). Credentials come from the standard
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` variables, never from
    /// this file.
    pub cold_url: Option<String>,
    /// A data-directory snapshot published by `mnemos tiers publish-data`
    /// (`s3://bucket/prefix` or `file:///abs/dir`): a server whose data
    /// directory is empty or absent restores it from there before it opens
    /// anything, so a fresh machine starts from the bucket.
    pub data_url: Option<String>,
    /// An S3-compatible endpoint (`http://127.0.0.1:8333` for SeaweedFS);
    /// unset for AWS.
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// How long a request waits for a block from object storage before it
    /// is answered without it (falling back to the parent path).
    pub fetch_timeout_ms: u64,
    /// Object-storage fetches at once.
    pub max_concurrent_fetches: usize,
    /// Rows per page of the product-key memory value tables, which the
    /// trained models then read through the tiers
    /// (`<data_dir>/pkm-pages/<model>`, a lookup fetching only the pages it
    /// reads); 0 keeps the tables in RAM.
    pub pkm_page_rows: usize,
}

impl Default for TierSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            hot_budget_mb: 64,
            pin_levels: 1,
            cold_url: None,
            data_url: None,
            s3_endpoint: None,
            s3_region: None,
            fetch_timeout_ms: 500,
            max_concurrent_fetches: 8,
            pkm_page_rows: 0,
        }
    }
}

impl TierSettings {
    pub fn validate(&self) -> Result<()> {
        in_range(
            "tiers.hot_budget_mb",
            self.hot_budget_mb as usize,
            1..=1 << 20,
        )?;
        in_range("tiers.pin_levels", self.pin_levels, 0..=16)?;
        in_range(
            "tiers.fetch_timeout_ms",
            self.fetch_timeout_ms as usize,
            1..=600_000,
        )?;
        in_range("tiers.pkm_page_rows", self.pkm_page_rows, 0..=1 << 20)?;
        in_range(
            "tiers.max_concurrent_fetches",
            self.max_concurrent_fetches,
            1..=1024,
        )?;
        if let Some(url) = &self.data_url {
            if !(url.starts_with("s3://") || url.starts_with("file:///")) {
                return Err(invalid(
                    "tiers.data_url",
                    "must be s3://bucket/prefix or file:///absolute/dir",
                ));
            }
        }
        if let Some(url) = &self.cold_url {
            let ok = url.starts_with("s3://") || url.starts_with("file:///");
            if !ok {
                return Err(invalid(
                    "tiers.cold_url",
                    "must be s3://bucket/prefix or file:///absolute/dir",
                ));
            }
            if !self.enabled {
                return Err(invalid("tiers.cold_url", "needs tiers.enabled = true"));
            }
        }
        Ok(())
    }
}
