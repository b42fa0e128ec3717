//! Cold fetches: at most `max_concurrent` at a time, and one per key: a
//! second reader of a block already in flight waits for the same fetch
//! (a [`Slot`]) instead of starting another. A fetch outlives a reader
//! that gave up at its deadline, and its block lands in the warm tier for
//! the next reader.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

use crate::cold::ColdStore;
use crate::metrics::Counters;
use crate::warm::{check, WarmTier};
use crate::{BlockSpec, Result, Tier, TierError};

/// Why a cold fetch failed (cloneable: every waiter gets a copy).
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    NotFound,
    Corrupt(String),
    Unavailable(String),
}

impl Failure {
    pub fn into_error(self, key: &str) -> TierError {
        match self {
            Failure::NotFound => TierError::NotFound { key: key.into() },
            Failure::Corrupt(detail) => TierError::Corrupt {
                key: key.into(),
                tier: Tier::Cold,
                detail,
            },
            Failure::Unavailable(detail) => TierError::Unavailable {
                key: key.into(),
                detail,
            },
        }
    }
}

type Outcome = std::result::Result<Bytes, Failure>;

/// One fetch in flight and the readers waiting on it.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The checksum the fetch verifies against (a reader expecting another
    /// version re-checks what it gets).
    pub crc32: u32,
    done: Mutex<Option<Outcome>>,
    ready: Condvar,
}

impl Slot {
    fn complete(&self, outcome: Outcome) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
        self.ready.notify_all();
    }

    /// The outcome, or `None` if `deadline` passes first.
    pub fn wait(&self, deadline: Instant) -> Option<Outcome> {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(o) = done.as_ref() {
                return Some(o.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            done = self
                .ready
                .wait_timeout(done, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

pub(crate) type InFlight = Arc<Mutex<HashMap<String, Arc<Slot>>>>;

/// The cold store, the runtime its requests run on, and the fetch limit.
pub(crate) struct ColdTier {
    pub store: ColdStore,
    runtime: Option<Runtime>,
    permits: Arc<Semaphore>,
    pub inflight: InFlight,
}

impl std::fmt::Debug for ColdTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdTier")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Drop for ColdTier {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime
        // (a server shutting down); this does not wait.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl ColdTier {
    pub fn new(store: ColdStore, max_concurrent: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mnemos-tiers")
            .enable_all()
            .build()
            .map_err(|e| TierError::Config(format!("cannot start the fetch runtime: {e}")))?;
        Ok(Self {
            store,
            runtime: Some(runtime),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            inflight: Arc::default(),
        })
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("runtime present until drop")
    }

    pub fn in_flight(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The fetch of `spec`'s block: the one in flight, or a new one.
    pub fn fetch(
        &self,
        spec: &BlockSpec,
        warm: &Arc<WarmTier>,
        counters: &Arc<Counters>,
    ) -> Arc<Slot> {
        let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = inflight.get(&spec.key) {
            counters.shared_fetches.fetch_add(1, Relaxed);
            return Arc::clone(slot);
        }
        let slot = Arc::new(Slot {
            crc32: spec.crc32,
            done: Mutex::new(None),
            ready: Condvar::new(),
        });
        // A fetch that finished between the reader's warm lookup and here
        // left the block in the warm tier: read it rather than fetch again.
        if let Ok(Some(bytes)) = warm.read(spec) {
            slot.complete(Ok(bytes));
            return slot;
        }
        inflight.insert(spec.key.clone(), Arc::clone(&slot));
        drop(inflight);
        let (spec, store, permits) = (spec.clone(), self.store.clone(), Arc::clone(&self.permits));
        let (warm, counters, inflight) = (
            Arc::clone(warm),
            Arc::clone(counters),
            Arc::clone(&self.inflight),
        );
        let task_slot = Arc::clone(&slot);
        self.runtime().spawn(async move {
            let outcome = match permits.acquire_owned().await {
                Ok(_permit) => fetch_one(&spec, &store, &warm, &counters).await,
                Err(_) => Err(Failure::Unavailable("fetch runtime closing".into())),
            };
            inflight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&spec.key);
            task_slot.complete(outcome);
        });
        slot
    }

    /// Runs `f` to completion on the fetch runtime (publishing, reading
    /// bank files at start). Called from inside another runtime (a server's
    /// start-up, an async test), it waits on a scoped thread instead, as a
    /// runtime cannot be blocked on from within one.
    pub fn block_on<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        let runtime = self.runtime();
        if tokio::runtime::Handle::try_current().is_err() {
            return runtime.block_on(f);
        }
        std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(f))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

async fn fetch_one(
    spec: &BlockSpec,
    store: &ColdStore,
    warm: &WarmTier,
    counters: &Counters,
) -> Outcome {
    let started = Instant::now();
    match store.get(&spec.key).await {
        Ok(bytes) => match check(spec, bytes) {
            Ok(bytes) => {
                counters.cold.hit(bytes.len(), started.elapsed());
                if let Err(e) = warm.write(&spec.key, &bytes) {
                    tracing::warn!(key = %spec.key, error = %e, "cannot cache a fetched block in the warm tier");
                }
                Ok(bytes)
            }
            Err(e) => {
                counters.corrupt.fetch_add(1, Relaxed);
                tracing::warn!(key = %spec.key, error = %e, "cold block failed its checksum");
                Err(Failure::Corrupt(e.to_string()))
            }
        },
        Err(TierError::NotFound { .. }) => {
            counters.cold.miss();
            counters.unavailable.fetch_add(1, Relaxed);
            Err(Failure::NotFound)
        }
        Err(e) => {
            counters.cold.miss();
            counters.unavailable.fetch_add(1, Relaxed);
            tracing::warn!(key = %spec.key, error = %e, "cold fetch failed");
            Err(Failure::Unavailable(e.to_string()))
        }
    }
}
