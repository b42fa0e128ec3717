//! Counters and fetch-latency histograms per tier, readable at any time
//! as a [`TierStats`] snapshot (what `GET /v1/admin/tiers` and the
//! Prometheus endpoint show).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::Tier;

/// Latency recorded in microseconds, 1 µs to 10 min, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

#[derive(Debug)]
pub(crate) struct TierCounters {
    /// Reads this tier answered.
    pub hits: AtomicU64,
    /// Reads that looked here and found nothing (or a stale version).
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
    pub bytes_read: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl TierCounters {
    fn new() -> Self {
        Self {
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            latency: Mutex::new(histogram()),
        }
    }

    pub fn hit(&self, bytes: usize, took: Duration) {
        self.hits.fetch_add(1, Relaxed);
        self.bytes_read.fetch_add(bytes as u64, Relaxed);
        let us = (took.as_micros() as u64).clamp(1, 600_000_000);
        if let Ok(mut h) = self.latency.lock() {
            let _ = h.record(us);
        }
    }

    pub fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }

    fn snapshot(&self, tier: Tier) -> TierCounterStats {
        let (p50, p99, p999, max) = self.latency.lock().map_or((0.0, 0.0, 0.0, 0.0), |h| {
            let ms = |v: u64| v as f64 / 1000.0;
            if h.is_empty() {
                (0.0, 0.0, 0.0, 0.0)
            } else {
                (
                    ms(h.value_at_quantile(0.5)),
                    ms(h.value_at_quantile(0.99)),
                    ms(h.value_at_quantile(0.999)),
                    ms(h.max()),
                )
            }
        });
        TierCounterStats {
            tier,
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            fetch_p50_ms: p50,
            fetch_p99_ms: p99,
            fetch_p999_ms: p999,
            fetch_max_ms: max,
        }
    }

    fn reset(&self) {
        self.hits.store(0, Relaxed);
        self.misses.store(0, Relaxed);
        self.evictions.store(0, Relaxed);
        self.bytes_read.store(0, Relaxed);
        if let Ok(mut h) = self.latency.lock() {
            h.reset();
        }
    }
}

/// Everything counted, per tier and for failures.
#[derive(Debug)]
pub(crate) struct Counters {
    pub hot: TierCounters,
    pub warm: TierCounters,
    pub cold: TierCounters,
    /// Blocks that failed their checksum (never served).
    pub corrupt: AtomicU64,
    /// Reads whose cold fetch missed the deadline.
    pub timeouts: AtomicU64,
    /// Cold fetches that failed (unreachable, error status, not found).
    pub unavailable: AtomicU64,
    /// Fetches that joined one already in flight instead of starting one.
    pub shared_fetches: AtomicU64,
    pub prefetches: AtomicU64,
}

impl Counters {
    pub fn new() -> Self {
        Self {
            hot: TierCounters::new(),
            warm: TierCounters::new(),
            cold: TierCounters::new(),
            corrupt: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            shared_fetches: AtomicU64::new(0),
            prefetches: AtomicU64::new(0),
        }
    }

    pub fn tier(&self, tier: Tier) -> &TierCounters {
        match tier {
            Tier::Hot => &self.hot,
            Tier::Warm => &self.warm,
            Tier::Cold => &self.cold,
        }
    }

    pub fn snapshot(&self) -> (Vec<TierCounterStats>, FailureStats) {
        let tiers = Tier::ALL
            .iter()
            .map(|&t| self.tier(t).snapshot(t))
            .collect();
        let failures = FailureStats {
            corrupt: self.corrupt.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            unavailable: self.unavailable.load(Relaxed),
            shared_fetches: self.shared_fetches.load(Relaxed),
            prefetches: self.prefetches.load(Relaxed),
        };
        (tiers, failures)
    }

    pub fn reset(&self) {
        for t in Tier::ALL {
            self.tier(t).reset();
        }
        for c in [
            &self.corrupt,
            &self.timeouts,
            &self.unavailable,
            &self.shared_fetches,
            &self.prefetches,
        ] {
            c.store(0, Relaxed);
        }
    }
}

/// One tier's counters and fetch latency (ms).
#[derive(Debug, Clone, Serialize)]
pub struct TierCounterStats {
    pub tier: Tier,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub bytes_read: u64,
    pub fetch_p50_ms: f64,
    pub fetch_p99_ms: f64,
    pub fetch_p999_ms: f64,
    pub fetch_max_ms: f64,
}

/// Failed and shared fetches.
#[derive(Debug, Clone, Serialize)]
pub struct FailureStats {
    pub corrupt: u64,
    pub timeouts: u64,
    pub unavailable: u64,
    pub shared_fetches: u64,
    pub prefetches: u64,
}
