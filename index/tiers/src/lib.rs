//! Memory tiers (SPECS §6): immutable, checksummed byte blocks served from
//! RAM (hot, within a byte budget), memory-mapped local files (warm) and
//! object storage (cold: a local folder or S3), placed by decayed access
//! frequency.
//!
//! - [`Tiers::get`] reads a block from the fastest tier holding a copy
//!   that matches the caller's size and CRC32, or fails within a deadline
//!   ([`TierError::is_fetch_failure`]); it never serves unchecked bytes.
//! - Placement: blocks read often enough displace colder ones in RAM;
//!   [`Tiers::pin`] keeps a block there for good; [`Tiers::prefetch`]
//!   warms blocks likely to be read next.
//! - Cold fetches are bounded in number and shared: one fetch per block,
//!   whatever the number of readers waiting on it.
//!
//! Compute-free and HTTP-free: the memory bank reads its blocks through
//! this crate, and the gateway only shows [`Tiers::summary`].

mod cold;
mod error;
mod fetch;
mod frequency;
mod hot;
mod key;
mod manager;
mod metrics;
pub mod seaweed;
mod snapshot;
mod warm;

pub use cold::{ColdOptions, ColdStore};
pub use error::{Result, Tier, TierError};
pub use frequency::{key_hash, Frequency};
pub use hot::{Admission, HotTier};
pub use key::{validate_key, MAX_KEY_BYTES};
pub use manager::{Fetched, Placement, Tiers, TiersConfig, TiersSummary};
pub use metrics::{FailureStats, TierCounterStats};
pub use snapshot::{SnapshotStats, SNAPSHOT_MANIFEST};
pub use warm::WarmTier;

/// A block as a reader expects it: its key and the size and CRC32 of the
/// one version it will accept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlockSpec {
    pub key: String,
    pub bytes: u64,
    pub crc32: u32,
}

impl BlockSpec {
    /// The spec of `data` under `key`.
    pub fn of(key: impl Into<String>, data: &[u8]) -> Self {
        Self {
            key: key.into(),
            bytes: data.len() as u64,
            crc32: crc32fast::hash(data),
        }
    }
}
