//! `[admission]`: admission control in front of every compute pool. Each
//! class of route gets a concurrency limit, a bounded queue, a longest wait
//! for a slot and (for reads) a deadline, so that beyond capacity the server
//! answers 503 with `Retry-After` at once instead of letting latency grow
//! without bound.

use serde::{Deserialize, Serialize};

use crate::settings::{in_range, invalid};
use crate::Result;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionSettings {
    /// Off: every request goes straight to its handler (the engine's own
    /// bounded pool queues still answer 503 when full).
    pub enabled: bool,
    /// Seconds a shed client is told to wait (`Retry-After`).
    pub retry_after_s: u64,
    /// A request of any class must deliver its whole body within this
    /// time (408 otherwise). Bodies are read before a slot is taken, so a
    /// client trickling its body in holds a connection, never a slot.
    pub body_timeout_ms: u64,
    /// `POST /v1/search`.
    pub search: ClassLimits,
    /// `POST /v1/visual/classify`.
    pub visual: ClassLimits,
    /// `/v1/lm/generate`, `/v1/lm/score`.
    pub lm: ClassLimits,
    /// Every admin write (`POST`/`DELETE` under `/v1/admin/`).
    pub write: ClassLimits,
}

/// The limits of one class of routes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClassLimits {
    /// Requests of this class running at once; 0 means a multiple of the
    /// CPU cores chosen per class (see [`AdmissionSettings::concurrency`]).
    pub concurrency: usize,
    /// Requests waiting for a slot; one more is shed at once.
    pub queue: usize,
    /// Longest wait for a slot before the request is shed.
    pub queue_timeout_ms: u64,
    /// Deadline for the whole request once admitted (0: none). A request
    /// past it answers 503; its work still holds its slot until the pool
    /// finishes it, so the limit stays true. Writes default to none: a write
    /// that has started must be allowed to finish and answer.
    pub timeout_ms: u64,
}

impl ClassLimits {
    const fn new(queue: usize, queue_timeout_ms: u64, timeout_ms: u64) -> Self {
        Self {
            concurrency: 0,
            queue,
            queue_timeout_ms,
            timeout_ms,
        }
    }
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            retry_after_s: 1,
            body_timeout_ms: 30_000,
            // A search waits at most 50 ms for a slot: beyond that it would
            // miss a 100 ms p99 anyway, and shedding it keeps the admitted
            // ones fast (measured in RELIABILITY.md).
            search: ClassLimits::new(256, 50, 5_000),
            visual: ClassLimits::new(64, 500, 10_000),
            lm: ClassLimits::new(32, 5_000, 120_000),
            write: ClassLimits::new(128, 5_000, 0),
        }
    }
}

impl AdmissionSettings {
    pub fn validate(&self) -> Result<()> {
        in_range(
            "admission.retry_after_s",
            self.retry_after_s as usize,
            1..=3600,
        )?;
        in_range(
            "admission.body_timeout_ms",
            self.body_timeout_ms as usize,
            1..=3_600_000,
        )?;
        for (name, c) in self.classes() {
            let key = |k: &str| format!("admission.{name}.{k}");
            in_range(&key("concurrency"), c.concurrency, 0..=4096)?;
            in_range(&key("queue"), c.queue, 0..=1 << 20)?;
            in_range(
                &key("queue_timeout_ms"),
                c.queue_timeout_ms as usize,
                1..=3_600_000,
            )?;
            in_range(&key("timeout_ms"), c.timeout_ms as usize, 0..=3_600_000)?;
            if c.timeout_ms != 0 && c.timeout_ms < c.queue_timeout_ms {
                return Err(invalid(
                    &key("timeout_ms"),
                    "must be 0 (none) or at least queue_timeout_ms",
                ));
            }
        }
        Ok(())
    }

    /// The four classes by name, in a fixed order.
    pub fn classes(&self) -> [(&'static str, ClassLimits); 4] {
        [
            ("search", self.search),
            ("visual", self.visual),
            ("lm", self.lm),
            ("write", self.write),
        ]
    }

    /// Slots of a class: the configured number, or per core 8 searches
    /// (the encoder batches them, and an unpadded batch costs less per
    /// query than one query: at 260 dense searches/s on 2 cores, 8 slots
    /// shed 0.3–1.5% of requests and 16 none, at the same p50 and p99; at
    /// 5× the sustainable rate 16 slots keep the admitted p99 at 154 ms;
    /// `RELIABILITY.md`), 2 image classifications, 1 LM request and 2
    /// writes (they serialise on the engine's write lock anyway).
    pub fn concurrency(name: &str, limits: &ClassLimits) -> usize {
        if limits.concurrency > 0 {
            return limits.concurrency;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_core = match name {
            "search" => 8,
            "visual" | "write" => 2,
            _ => 1,
        };
        cores * per_core
    }
}
