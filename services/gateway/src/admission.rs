//! Admission control: a gate per class of compute route (search, visual,
//! LM, admin writes) with a concurrency limit, a bounded queue, a longest
//! wait for a slot and a deadline. Past capacity a request is shed at once
//! with 503 and `Retry-After` rather than queued without bound, which is
//! what lets latency stay flat under overload and recover by itself when
//! the load drops: nothing piles up that has to drain afterwards.
//!
//! The body is read (within `body_timeout_ms`, up to the body limit) before
//! a slot is taken, so a client trickling its body in holds a connection,
//! never a slot. Admitted handlers run in their own task that owns the slot. A request
//! past its deadline is answered 503, but its slot is only freed when the
//! work actually finishes (the engine's pools cannot cancel a forward pass
//! half way), so the limit bounds real work, not just waiting clients. The
//! same task also keeps a write going when its client disconnects, so a
//! write is never cut between its log append and its index updates. A
//! streamed generation (`"stream": true`) leaves the gate when its stream
//! starts; from then on the engine's LM pool (`lm.workers`, held only
//! while tokens are made) bounds it, and `max_tokens` its length.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mnemos_config::{AdmissionSettings, ClassLimits};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::AppState;

/// The class of a route, or `None` for the cheap ones (health, metrics,
/// stats, document reads), which are never shed.
pub fn class_of(method: &Method, path: &str) -> Option<&'static str> {
    if path == "/v1/search" {
        return Some("search");
    }
    if path == "/v1/visual/classify" {
        return Some("visual");
    }
    if path == "/v1/lm/generate" || path == "/v1/lm/score" {
        return Some("lm");
    }
    let write = *method == Method::POST || *method == Method::DELETE;
    (write && path.starts_with("/v1/admin/")).then_some("write")
}

/// Why a request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    QueueFull,
    QueueTimeout,
    Deadline,
}

impl Shed {
    fn label(self) -> &'static str {
        match self {
            Shed::QueueFull => "queue_full",
            Shed::QueueTimeout => "queue_timeout",
            Shed::Deadline => "deadline",
        }
    }
}

struct Gate {
    name: &'static str,
    slots: Arc<Semaphore>,
    limit: usize,
    queue: usize,
    queued: AtomicUsize,
    queue_timeout: Duration,
    timeout: Option<Duration>,
}

/// Decrements the queue count however the wait ends (a client that hangs
/// up while queued drops the future mid-wait).
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    fn new(name: &'static str, limits: &ClassLimits) -> Self {
        let limit = AdmissionSettings::concurrency(name, limits);
        Self {
            name,
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            queue: limits.queue,
            queued: AtomicUsize::new(0),
            queue_timeout: Duration::from_millis(limits.queue_timeout_ms),
            timeout: (limits.timeout_ms > 0).then(|| Duration::from_millis(limits.timeout_ms)),
        }
    }

    async fn acquire(&self) -> Result<OwnedSemaphorePermit, Shed> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(permit);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Shed::QueueFull);
        }
        let _queued = Queued(&self.queued);
        match tokio::time::timeout(self.queue_timeout, Arc::clone(&self.slots).acquire_owned())
            .await
        {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a timeout.
            Ok(Err(_)) | Err(_) => Err(Shed::QueueTimeout),
        }
    }

    fn in_flight(&self) -> usize {
        self.limit - self.slots.available_permits().min(self.limit)
    }
}

/// The gates and their counters.
pub struct Admission {
    enabled: bool,
    retry_after_s: u64,
    body_timeout: Duration,
    gates: Vec<Gate>,
    shed: IntCounterVec,
    admitted: IntCounterVec,
    state: IntGaugeVec,
}

impl Admission {
    /// Builds the gates and registers `mnemos_admission` (in flight, queued
    /// and limit per class), `mnemos_admitted_total` and
    /// `mnemos_shed_total{class, reason}` in `registry`.
    pub fn new(settings: &AdmissionSettings, registry: &Registry) -> Self {
        let shed = IntCounterVec::new(
            Opts::new(
                "mnemos_shed_total",
                "requests answered 503 by admission control, by class and reason",
            ),
            &["class", "reason"],
        )
        .expect("valid metric");
        let admitted = IntCounterVec::new(
            Opts::new("mnemos_admitted_total", "requests admitted, by class"),
            &["class"],
        )
        .expect("valid metric");
        let state = IntGaugeVec::new(
            Opts::new(
                "mnemos_admission",
                "admission control per class: in_flight, queued (queue depth) and limit",
            ),
            &["class", "what"],
        )
        .expect("valid metric");
        for c in [
            Box::new(shed.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(admitted.clone()),
            Box::new(state.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        let gates = settings
            .classes()
            .iter()
            .map(|(name, limits)| Gate::new(name, limits))
            .collect();
        Self {
            enabled: settings.enabled,
            retry_after_s: settings.retry_after_s,
            body_timeout: Duration::from_millis(settings.body_timeout_ms),
            gates,
            shed,
            admitted,
            state,
        }
    }

    fn gate(&self, class: &str) -> Option<&Gate> {
        self.gates.iter().find(|g| g.name == class)
    }

    /// Copies queue depth, in-flight count and limit into the gauges.
    pub fn refresh_gauges(&self) {
        for g in &self.gates {
            let set =
                |what: &str, v: usize| self.state.with_label_values(&[g.name, what]).set(v as i64);
            set("in_flight", g.in_flight());
            set("queued", g.queued.load(Ordering::Acquire));
            set("limit", g.limit);
        }
    }

    fn shed_response(&self, class: &str, why: Shed) -> Response {
        self.shed.with_label_values(&[class, why.label()]).inc();
        let message = match why {
            Shed::QueueFull => {
                format!("the server is at capacity for {class} requests and its queue is full")
            }
            Shed::QueueTimeout => format!("no {class} slot became free in time"),
            Shed::Deadline => {
                format!("the {class} request ran past its deadline; its work may still complete")
            }
        };
        let mut err = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            if why == Shed::Deadline {
                "deadline_exceeded"
            } else {
                "overloaded"
            },
            format!("{message}; retry after {} s", self.retry_after_s),
        );
        err.retry_after_s = Some(self.retry_after_s);
        err.into_response()
    }
}

/// Middleware: admits, queues or sheds a request by its class.
pub async fn admit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let adm = &state.admission;
    let class = match class_of(req.method(), req.uri().path()) {
        Some(c) if adm.enabled => c,
        _ => return next.run(req).await,
    };
    let Some(gate) = adm.gate(class) else {
        return next.run(req).await;
    };
    let req = match buffer_body(req, adm.body_timeout, state.max_body_bytes).await {
        Ok(req) => req,
        Err(refusal) => return refusal.into_response(),
    };
    let permit = match gate.acquire().await {
        Ok(p) => p,
        Err(why) => return adm.shed_response(class, why),
    };
    adm.admitted.with_label_values(&[class]).inc();
    let work = tokio::spawn(async move {
        let _slot = permit;
        next.run(req).await
    });
    let joined = match gate.timeout {
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(joined) => joined,
            Err(_) => return adm.shed_response(class, Shed::Deadline),
        },
        None => work.await,
    };
    joined.unwrap_or_else(|e| {
        tracing::error!(class, error = %e, "request handler panicked");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed inside the server",
        )
        .into_response()
    })
}

/// Reads the whole body (at most `limit` bytes, within `timeout`) and puts
/// it back, so the handler never waits on the client while holding a slot.
async fn buffer_body(req: Request, timeout: Duration, limit: usize) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await;
    match read {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Ok(Err(e)) => {
            let too_large =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |err| {
                    err.source()
                })
                .any(|err| err.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than the configured limit",
                )
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            })
        }
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_route() {
        assert_eq!(class_of(&Method::POST, "/v1/search"), Some("search"));
        assert_eq!(class_of(&Method::POST, "/v1/lm/score"), Some("lm"));
        assert_eq!(
            class_of(&Method::POST, "/v1/visual/classify"),
            Some("visual")
        );
        assert_eq!(
            class_of(&Method::DELETE, "/v1/admin/documents/x"),
            Some("write")
        );
        assert_eq!(class_of(&Method::GET, "/v1/admin/documents/x"), None);
        assert_eq!(class_of(&Method::GET, "/healthz"), None);
    }

    fn gate(concurrency: usize, queue: usize, queue_timeout_ms: u64) -> Gate {
        let limits = ClassLimits {
            concurrency,
            queue,
            queue_timeout_ms,
            timeout_ms: 0,
        };
        Gate::new("search", &limits)
    }

    #[tokio::test]
    async fn full_queue_sheds_at_once_and_a_wait_times_out() {
        let g = gate(1, 1, 50);
        let held = g.acquire().await.unwrap();
        assert_eq!(g.in_flight(), 1);
        // One waiter fits the queue and times out; meanwhile a second is
        // refused without waiting.
        let (waited, refused) = tokio::join!(g.acquire(), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            g.acquire().await
        });
        assert_eq!(waited.unwrap_err(), Shed::QueueTimeout);
        assert_eq!(refused.unwrap_err(), Shed::QueueFull);
        assert_eq!(g.queued.load(Ordering::Acquire), 0);
        drop(held);
        assert!(g.acquire().await.is_ok(), "a freed slot admits again");
    }

    #[tokio::test]
    async fn a_waiter_gets_the_slot_when_it_frees() {
        let g = Arc::new(gate(1, 4, 5_000));
        let held = g.acquire().await.unwrap();
        let g2 = Arc::clone(&g);
        let waiter = tokio::spawn(async move { g2.acquire().await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(g.queued.load(Ordering::Acquire), 1);
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
        assert_eq!(g.queued.load(Ordering::Acquire), 0);
    }
}
