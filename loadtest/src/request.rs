//! The life of one request: build it, send it, record the outcome from its
//! intended send time, and follow up on what the response means for the
//! correctness check (hits to check, upserts to verify, removals to note).
//! Shared by the open and the closed loop.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::checker::Checker;
use crate::client::Pool;
use crate::recorder::{Outcome, Recorder};
use crate::workload::{Followup, Planned, Workload};

/// How many distinct error samples a run keeps.
const KEEP_SAMPLES: usize = 10;

/// An example of a failed request, to make error counts actionable.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorSample {
    pub request: String,
    /// The status code, or `null` for timeouts and transport errors.
    pub status: Option<u16>,
    /// The start of the response body, or the transport error.
    pub message: String,
}

/// What every request task of a run shares.
pub struct Shared {
    pub workload: Workload,
    pub pool: Pool,
    pub checker: Checker,
    pub timeout: Duration,
    /// The run's start: series and checker times count from here.
    pub origin: Instant,
    pub quiet: bool,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    /// Set on Ctrl-C: phases stop sending and the report covers the time run.
    stop: AtomicBool,
    samples: Mutex<Vec<ErrorSample>>,
}

impl Shared {
    pub fn new(
        workload: Workload,
        pool: Pool,
        timeout: Duration,
        origin: Instant,
        quiet: bool,
    ) -> Self {
        let prefix = workload.id_prefix();
        Self {
            workload,
            pool,
            checker: Checker::new(origin, &prefix),
            timeout,
            origin,
            quiet,
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            samples: Mutex::new(Vec::new()),
        }
    }

    /// Asks running and later phases to stop sending (Ctrl-C).
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(Ordering::Relaxed)
    }

    pub fn error_samples(&self) -> Vec<ErrorSample> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn sample(&self, ty: usize, status: Option<u16>, message: &[u8]) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let request = &self.workload.labels()[ty];
        if s.len() >= KEEP_SAMPLES
            || s.iter()
                .any(|x| x.request == *request && x.status == status)
        {
            return;
        }
        let text = String::from_utf8_lossy(&message[..message.len().min(300)]).into_owned();
        s.push(ErrorSample {
            request: request.clone(),
            status,
            message: text,
        });
    }

    pub(crate) fn enter(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// The minimal shape of a search response the checker needs: hit ids only
/// (serde skips the rest without allocating).
#[derive(serde::Deserialize)]
struct HitIds<'a> {
    #[serde(borrow)]
    hits: Vec<HitId<'a>>,
}

#[derive(serde::Deserialize)]
struct HitId<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

/// Sends one request and records it; `intended` is when it was meant to go.
pub(crate) async fn execute(
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
    planned: Planned,
    intended: Instant,
) {
    let ty = planned.ty;
    // Decided before sending: only a removal acknowledged before this
    // instant can make this response a violation.
    let check = shared.checker.needs_check();
    let sent_at = Instant::now();
    let (req, followup) = match shared.workload.build(planned) {
        Ok(built) => built,
        Err(e) => {
            recorder.record(ty, intended, Instant::now(), Outcome::Transport);
            shared.sample(ty, None, e.to_string().as_bytes());
            shared.in_flight.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };
    let result = tokio::time::timeout(shared.timeout, shared.pool.send(req)).await;
    let done = Instant::now();
    match result {
        Err(_) => {
            recorder.record(ty, intended, done, Outcome::Timeout);
            shared.sample(ty, None, b"timeout");
        }
        Ok(Err(e)) => {
            recorder.record(ty, intended, done, Outcome::Transport);
            shared.sample(ty, None, e.to_string().as_bytes());
        }
        Ok(Ok(resp)) => {
            let status = resp.status.as_u16();
            recorder.record(ty, intended, done, Outcome::Status(status));
            if resp.status.is_success() {
                follow_up(&shared, ty, followup, check, sent_at, &resp.body).await;
            } else {
                shared.sample(ty, Some(status), &resp.body);
                if let (Followup::Remove { ids, batch: false }, 404) = (&followup, status) {
                    // We stored it and never removed it: the server lost
                    // it. Either way it is gone now and must stay gone.
                    shared.checker.remove_not_found(ids.len());
                    shared.checker.removal_acknowledged(ids);
                }
            }
        }
    }
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
}

/// What happens after a successful response: checking search hits,
/// verifying upserts, recording removals.
async fn follow_up(
    shared: &Shared,
    ty: usize,
    followup: Followup,
    check: bool,
    sent_at: Instant,
    body: &[u8],
) {
    let label = &shared.workload.labels()[ty];
    match followup {
        Followup::Search if check => match serde_json::from_slice::<HitIds>(body) {
            Ok(h) => {
                shared
                    .checker
                    .check_search(label, sent_at, h.hits.iter().map(|h| h.id.as_ref()));
            }
            Err(e) => shared.sample(ty, Some(200), format!("unparsable: {e}").as_bytes()),
        },
        Followup::Search | Followup::Get | Followup::Classify => {}
        Followup::Upsert(ids) => {
            shared.checker.upsert_acknowledged(ids.len());
            for id in ids {
                verify_upsert(shared, id).await;
            }
        }
        Followup::Remove { ids, batch } => {
            if batch {
                if let Ok(r) = serde_json::from_slice::<mnemos_api::BatchRemoveResponse>(body) {
                    shared.checker.remove_not_found(r.not_found.len());
                }
            }
            shared.checker.removal_acknowledged(&ids);
        }
    }
}

/// Checks that an acknowledged upsert is readable.
///
/// `GET /v1/admin/documents/{id}` is the check rather than a search on the
/// document's title: upserts copy corpus documents, so several ids share a
/// title and text, score identically, and which of them make a top-k is
/// arbitrary — a search would report documents as missing that are there.
/// The store lookup is exact, and the store is what every search result is
/// filtered through, so "found there" is what "visible" means.
async fn verify_upsert(shared: &Shared, id: String) {
    let req = match shared.workload.lookup_request(&id) {
        Ok(r) => r,
        Err(_) => return shared.checker.verify_failed(),
    };
    match tokio::time::timeout(shared.timeout, shared.pool.send(req)).await {
        Ok(Ok(r)) if r.status.is_success() => shared.checker.upsert_verified(id, true),
        Ok(Ok(r)) if r.status.as_u16() == 404 => shared.checker.upsert_verified(id, false),
        _ => shared.checker.verify_failed(),
    }
}
