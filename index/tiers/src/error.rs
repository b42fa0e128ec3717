//! The crate's one error type.

use std::fmt;
use std::io;
use std::path::Path;

use serde::Serialize;

/// Where a block was found or sought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// RAM, bounded by the hot budget.
    Hot,
    /// Memory-mapped files in the local warm directory.
    Warm,
    /// Object storage (a local folder or S3).
    Cold,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Hot, Tier::Warm, Tier::Cold];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// A key that cannot name a block (it would escape the warm directory
    /// or the bucket prefix, or holds characters we do not map to paths).
    #[error("invalid block key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    /// No tier holds the block (and there is no cold tier to ask, or it
    /// answered "not found").
    #[error("block {key} is in no tier")]
    NotFound { key: String },
    /// The block's bytes did not match the size and CRC32 the caller
    /// expects: never served.
    #[error("block {key} from the {tier} tier failed its check: {detail}")]
    Corrupt {
        key: String,
        tier: Tier,
        detail: String,
    },
    /// The cold tier did not deliver within the caller's deadline (the
    /// fetch goes on in the background and lands in the warm tier).
    #[error("object storage did not deliver block {key} within {waited_ms} ms")]
    Timeout { key: String, waited_ms: u64 },
    /// The cold tier failed (unreachable, refused, or an error status).
    #[error("object storage failed for block {key}: {detail}")]
    Unavailable { key: String, detail: String },
    /// The hot budget cannot hold what must be pinned.
    #[error("hot tier budget: {0}")]
    Budget(String),
    /// A bad configuration (URL, sizes).
    #[error("tier configuration: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    /// An object-storage call outside a block fetch (publishing, listing).
    #[error("object storage: {0}")]
    Store(String),
}

impl TierError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> TierError + '_ {
        move |source| TierError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// True for the failures a reader should answer by falling back (a
    /// degraded answer), rather than by failing the request.
    pub fn is_fetch_failure(&self) -> bool {
        matches!(
            self,
            TierError::NotFound { .. }
                | TierError::Corrupt { .. }
                | TierError::Timeout { .. }
                | TierError::Unavailable { .. }
        )
    }
}

pub type Result<T> = std::result::Result<T, TierError>;
