//! [`Tiers`]: one read path over the three tiers, and placement.
//!
//! A read looks in RAM, then the warm directory, then object storage;
//! every read counts one access of its block (decayed counts, see
//! [`Frequency`]), and a block read from a lower tier is offered to RAM,
//! where it is admitted only if it is accessed more often than what it
//! would evict. Pinned blocks stay in RAM for good.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::cold::ColdStore;
use crate::fetch::ColdTier;
use crate::frequency::{key_hash, Frequency};
use crate::hot::HotTier;
use crate::metrics::{Counters, FailureStats, TierCounterStats};
use crate::warm::{check, WarmTier};
use crate::{validate_key, BlockSpec, Result, Tier, TierError};

/// How the tiers are laid out and bounded.
#[derive(Debug, Clone)]
pub struct TiersConfig {
    /// RAM for blocks (pinned ones included).
    pub hot_budget_bytes: u64,
    /// The warm tier's directory (block keys are paths under it).
    pub warm_dir: PathBuf,
    /// Object storage, if any.
    pub cold: Option<ColdStore>,
    /// Cold fetches running at once.
    pub max_concurrent_fetches: usize,
    /// Prefetches in flight at most (beyond it, prefetch hints are dropped).
    pub max_prefetch_in_flight: usize,
    /// Deadline of [`Tiers::get`].
    pub fetch_timeout: Duration,
    /// Counters per row of the frequency sketch (fixed memory: 8 bytes each).
    pub frequency_width: usize,
    /// Accesses between halvings of every count (the half-life).
    pub decay_period: u64,
}

impl TiersConfig {
    pub fn new(hot_budget_bytes: u64, warm_dir: PathBuf) -> Self {
        Self {
            hot_budget_bytes,
            warm_dir,
            cold: None,
            max_concurrent_fetches: 8,
            max_prefetch_in_flight: 32,
            fetch_timeout: Duration::from_secs(2),
            frequency_width: 1 << 16,
            decay_period: 1 << 18,
        }
    }
}

/// A block and the tier that answered.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Bytes,
    pub tier: Tier,
}

struct State {
    hot: HotTier,
    freq: Frequency,
}

struct Inner {
    state: Mutex<State>,
    warm: Arc<WarmTier>,
    cold: Option<ColdTier>,
    counters: Arc<Counters>,
    config: TiersConfig,
}

/// The tier manager (cheap to clone; clones share everything).
#[derive(Clone)]
pub struct Tiers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tiers")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// One resident block in a summary.
#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    pub key: String,
    pub bytes: u64,
    pub pinned: bool,
    /// Decayed access count.
    pub frequency: u32,
}

/// Where blocks are and how the tiers have done (`GET /v1/admin/tiers`).
#[derive(Debug, Clone, Serialize)]
pub struct TiersSummary {
    pub hot_budget_bytes: u64,
    pub hot_resident_bytes: u64,
    pub hot_blocks: usize,
    pub pinned_blocks: usize,
    pub pinned_bytes: u64,
    pub warm_dir: String,
    pub warm_blocks: u64,
    pub warm_bytes: u64,
    pub cold_url: Option<String>,
    pub fetches_in_flight: usize,
    /// Fixed memory of the access counts.
    pub frequency_bytes: usize,
    /// Share of reads answered from RAM since the last reset.
    pub hot_hit_rate: f64,
    pub tiers: Vec<TierCounterStats>,
    pub failures: FailureStats,
    /// The most frequently read resident blocks (at most 20).
    pub hottest: Vec<Placement>,
}

impl Tiers {
    pub fn new(config: TiersConfig) -> Result<Self> {
        if config.hot_budget_bytes == 0 {
            return Err(TierError::Config("hot_budget_bytes must be above 0".into()));
        }
        let warm = Arc::new(WarmTier::new(&config.warm_dir)?);
        let cold = match &config.cold {
            Some(store) => Some(ColdTier::new(store.clone(), config.max_concurrent_fetches)?),
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    hot: HotTier::new(config.hot_budget_bytes),
                    freq: Frequency::new(config.frequency_width, config.decay_period),
                }),
                warm,
                cold,
                counters: Arc::new(Counters::new()),
                config,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change to State completes under the lock: a panic elsewhere
        // leaves it consistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn config(&self) -> &TiersConfig {
        &self.inner.config
    }

    pub fn has_cold(&self) -> bool {
        self.inner.cold.is_some()
    }

    /// The block `spec` names, from the fastest tier holding a good copy,
    /// within the configured fetch timeout.
    pub fn get(&self, spec: &BlockSpec) -> Result<Fetched> {
        self.get_within(spec, self.inner.config.fetch_timeout)
    }

    /// [`Tiers::get`] with its own deadline for the cold tier. Fails with a
    /// fetch failure ([`TierError::is_fetch_failure`]) rather than wait
    /// longer or serve bytes that do not match `spec`.
    pub fn get_within(&self, spec: &BlockSpec, timeout: Duration) -> Result<Fetched> {
        validate_key(&spec.key)?;
        let started = Instant::now();
        let deadline = started + timeout;
        let hash = key_hash(&spec.key);
        let c = &self.inner.counters;
        let freq = {
            let mut state = self.state();
            let freq = state.freq.record(hash);
            if let Some(bytes) = state.hot.get(&spec.key, spec.crc32) {
                drop(state);
                c.hot.hit(bytes.len(), started.elapsed());
                return Ok(Fetched {
                    bytes,
                    tier: Tier::Hot,
                });
            }
            freq
        };
        c.hot.miss();
        let warm_started = Instant::now();
        match self.inner.warm.read(spec) {
            Ok(Some(bytes)) => {
                c.warm.hit(bytes.len(), warm_started.elapsed());
                self.offer(spec, hash, &bytes, freq);
                return Ok(Fetched {
                    bytes,
                    tier: Tier::Warm,
                });
            }
            Ok(None) => c.warm.miss(),
            Err(e @ TierError::Corrupt { .. }) => {
                c.corrupt.fetch_add(1, Relaxed);
                c.warm.miss();
                tracing::warn!(error = %e, "warm block failed its checksum; fetching it again");
            }
            Err(e) => return Err(e),
        }
        let Some(cold) = &self.inner.cold else {
            return Err(TierError::NotFound {
                key: spec.key.clone(),
            });
        };
        let slot = cold.fetch(spec, &self.inner.warm, &self.inner.counters);
        match slot.wait(deadline) {
            Some(Ok(bytes)) => {
                let bytes = if slot.crc32 == spec.crc32 {
                    bytes
                } else {
                    check(spec, bytes)?
                };
                self.offer(spec, hash, &bytes, freq);
                Ok(Fetched {
                    bytes,
                    tier: Tier::Cold,
                })
            }
            Some(Err(failure)) => Err(failure.into_error(&spec.key)),
            None => {
                c.timeouts.fetch_add(1, Relaxed);
                Err(TierError::Timeout {
                    key: spec.key.clone(),
                    waited_ms: started.elapsed().as_millis() as u64,
                })
            }
        }
    }

    /// Offers a block read from a lower tier to RAM (copied: a mapped file
    /// is page cache the kernel may drop, not memory we hold).
    fn offer(&self, spec: &BlockSpec, hash: u64, bytes: &Bytes, freq: u32) {
        let mut state = self.state();
        let State { hot, freq: sketch } = &mut *state;
        if hot.get(&spec.key, spec.crc32).is_some() {
            return;
        }
        let owned = Bytes::copy_from_slice(bytes);
        let admission = hot.admit(&spec.key, spec.crc32, hash, owned, freq, |h| {
            sketch.estimate(h)
        });
        self.inner
            .counters
            .hot
            .evictions
            .fetch_add(admission.evicted.len() as u64, Relaxed);
    }

    /// Keeps `spec`'s block in RAM for good (e.g. the top levels of a
    /// hierarchy, read by nearly every request).
    pub fn pin(&self, spec: &BlockSpec) -> Result<Tier> {
        let fetched = self.get(spec)?;
        let hash = key_hash(&spec.key);
        let owned = Bytes::copy_from_slice(&fetched.bytes);
        let (ok, evicted) = self.state().hot.pin(&spec.key, spec.crc32, hash, owned);
        self.inner
            .counters
            .hot
            .evictions
            .fetch_add(evicted.len() as u64, Relaxed);
        if !ok {
            return Err(TierError::Budget(format!(
                "pinning {} ({} bytes) would exceed the hot budget of {} bytes",
                spec.key, spec.bytes, self.inner.config.hot_budget_bytes
            )));
        }
        Ok(fetched.tier)
    }

    /// Starts cold fetches of blocks not in RAM or the warm tier (e.g. the
    /// children of a node just read), without waiting. Hints beyond the
    /// prefetch limit are dropped.
    pub fn prefetch(&self, specs: &[BlockSpec]) {
        let Some(cold) = &self.inner.cold else {
            return;
        };
        for spec in specs {
            if validate_key(&spec.key).is_err()
                || cold.in_flight() >= self.inner.config.max_prefetch_in_flight
            {
                return;
            }
            if self.state().hot.contains(&spec.key) || self.inner.warm.contains(&spec.key) {
                continue;
            }
            self.inner.counters.prefetches.fetch_add(1, Relaxed);
            cold.fetch(spec, &self.inner.warm, &self.inner.counters);
        }
    }

    /// Forgets any RAM copy of `key` (its block was replaced or dropped).
    pub fn invalidate(&self, key: &str) {
        self.state().hot.remove(key);
    }

    /// Zeroes the counters and latency histograms (placement is kept).
    pub fn reset_counters(&self) {
        self.inner.counters.reset();
    }

    /// Reads an object from the cold tier as is (no checksum: for files
    /// that carry their own, like a bank's manifest), waiting at most
    /// `timeout`.
    pub fn cold_object(&self, key: &str, timeout: Duration) -> Result<Bytes> {
        validate_key(key)?;
        let cold = self
            .inner
            .cold
            .as_ref()
            .ok_or_else(|| TierError::NotFound { key: key.into() })?;
        let store = cold.store.clone();
        cold.block_on(async move {
            tokio::time::timeout(timeout, store.get(key))
                .await
                .unwrap_or_else(|_| {
                    Err(TierError::Timeout {
                        key: key.into(),
                        waited_ms: timeout.as_millis() as u64,
                    })
                })
        })
    }

    /// Uploads `data` under `key` to the cold tier.
    pub fn publish(&self, key: &str, data: Bytes) -> Result<()> {
        validate_key(key)?;
        let cold = self
            .inner
            .cold
            .as_ref()
            .ok_or_else(|| TierError::Config("no cold tier to publish to".into()))?;
        let store = cold.store.clone();
        cold.block_on(async move { store.put(key, data).await })
    }

    /// The placement and the counters.
    pub fn summary(&self) -> TiersSummary {
        let (tiers, failures) = self.inner.counters.snapshot();
        let (warm_blocks, warm_bytes) = self.inner.warm.usage();
        let state = self.state();
        let mut hottest: Vec<Placement> = state
            .hot
            .entries()
            .map(|(key, bytes, pinned, hash)| Placement {
                key: key.to_string(),
                bytes,
                pinned,
                frequency: state.freq.estimate(hash),
            })
            .collect();
        hottest.sort_by(|a, b| b.frequency.cmp(&a.frequency).then(a.key.cmp(&b.key)));
        hottest.truncate(20);
        let hot = &tiers[0];
        let reads = hot.hits + hot.misses;
        TiersSummary {
            hot_budget_bytes: state.hot.budget(),
            hot_resident_bytes: state.hot.resident_bytes(),
            hot_blocks: state.hot.len(),
            pinned_blocks: state.hot.pinned_len(),
            pinned_bytes: state.hot.pinned_bytes(),
            warm_dir: self.inner.warm.dir().display().to_string(),
            warm_blocks,
            warm_bytes,
            cold_url: self.inner.cold.as_ref().map(|c| c.store.url().to_string()),
            fetches_in_flight: self.inner.cold.as_ref().map_or(0, ColdTier::in_flight),
            frequency_bytes: state.freq.bytes(),
            hot_hit_rate: if reads == 0 {
                0.0
            } else {
                hot.hits as f64 / reads as f64
            },
            tiers,
            failures,
            hottest,
        }
    }
}
