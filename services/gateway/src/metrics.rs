//! Prometheus metrics, counted once in middleware. Names carry the
//! `mnemos_` prefix; latency buckets are defined here only.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder as _, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::AppState;

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    search_latency: HistogramVec,
    gauges: IntGaugeVec,
    tiers: GaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "mnemos_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "mnemos_http_request_duration_seconds",
                "HTTP latency by route",
            )
            .buckets(BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("valid metric");
        let search_latency = HistogramVec::new(
            HistogramOpts::new(
                "mnemos_search_duration_seconds",
                "search latency by backend set and fusion",
            )
            .buckets(BUCKETS.to_vec()),
            &["backends", "fusion"],
        )
        .expect("valid metric");
        let gauges = IntGaugeVec::new(
            Opts::new("mnemos_state", "documents, index sizes and queue depth"),
            &["what"],
        )
        .expect("valid metric");
        let tiers = GaugeVec::new(
            Opts::new(
                "mnemos_tier",
                "memory tiers: hits, misses, evictions, bytes read and fetch latency (seconds) per tier; resident bytes; failed fetches; degraded answers",
            ),
            &["tier", "what"],
        )
        .expect("valid metric");
        for c in [
            Box::new(tiers.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(search_latency.clone()),
            Box::new(gauges.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Self {
            registry,
            requests,
            latency,
            search_latency,
            gauges,
            tiers,
        }
    }

    /// Where other parts of the gateway register their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn observe_search(&self, backends: &str, fusion: &str, seconds: f64) {
        self.search_latency
            .with_label_values(&[backends, fusion])
            .observe(seconds);
    }

    /// Refreshes the gauges and renders the text exposition format.
    pub fn render(&self, state: &AppState) -> String {
        if let Some(engine) = state.engine() {
            self.gauges
                .with_label_values(&["documents"])
                .set(engine.store().len() as i64);
            self.gauges
                .with_label_values(&["wal_bytes"])
                .set(engine.store().wal_bytes() as i64);
            for (b, n) in engine.backend_sizes() {
                self.gauges
                    .with_label_values(&[&format!("index_entries_{}", b.name())])
                    .set(n as i64);
            }
            if let Some(s) = engine.embed_stats() {
                use std::sync::atomic::Ordering::Relaxed;
                for (name, value) in [
                    ("encoder_queue_depth", &s.queue_depth),
                    ("encoder_batches", &s.batches),
                    ("encoder_texts", &s.texts),
                    ("encoder_waiting", &s.waiting),
                    ("encoder_busy_workers", &s.busy_workers),
                ] {
                    self.gauges
                        .with_label_values(&[name])
                        .set(value.load(Relaxed) as i64);
                }
            }
        }
        if let Some(t) = state
            .engine()
            .and_then(|e| e.lm().ok())
            .and_then(|lm| lm.tiers().ok())
        {
            self.set_tiers(&t);
        }
        state.admission.refresh_gauges();
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Metrics {
    /// Copies a tiers summary into the `mnemos_tier` gauges.
    fn set_tiers(&self, t: &mnemos_api::TiersResponse) {
        let g = |tier: &str, what: &str, v: f64| self.tiers.with_label_values(&[tier, what]).set(v);
        let s = &t.summary;
        let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
        g("all", "degraded_answers", t.degraded_answers as f64);
        g("hot", "resident_bytes", num(&s["hot_resident_bytes"]));
        g("hot", "budget_bytes", num(&s["hot_budget_bytes"]));
        g("hot", "pinned_bytes", num(&s["pinned_bytes"]));
        g("warm", "resident_bytes", num(&s["warm_bytes"]));
        g("cold", "fetches_in_flight", num(&s["fetches_in_flight"]));
        for what in [
            "corrupt",
            "timeouts",
            "unavailable",
            "shared_fetches",
            "prefetches",
        ] {
            g("all", what, num(&s["failures"][what]));
        }
        for tier in s["tiers"].as_array().into_iter().flatten() {
            let name = tier["tier"].as_str().unwrap_or("unknown");
            for what in ["hits", "misses", "evictions", "bytes_read"] {
                g(name, what, num(&tier[what]));
            }
            for (what, key) in [
                ("fetch_p50_seconds", "fetch_p50_ms"),
                ("fetch_p99_seconds", "fetch_p99_ms"),
                ("fetch_max_seconds", "fetch_max_ms"),
            ] {
                g(name, what, num(&tier[key]) / 1000.0);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts every request and its latency by matched route.
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_string();
    let resp = next.run(req).await;
    let m = &state.metrics;
    m.requests
        .with_label_values(&[&route, &method, resp.status().as_str()])
        .inc();
    m.latency
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    resp
}
