//! The mnemos HTTP gateway: the axum router, authentication, the mapping of
//! errors to status codes, metrics, and the `mnemos` command line. All
//! retrieval logic lives in `mnemos-engine`; this crate only speaks HTTP.

pub mod admission;
pub mod auth;
pub mod cli;
pub mod error;
pub mod eval_visual;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod security;
pub mod serve;
pub mod tiers_cli;
pub mod train;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use mnemos_config::Settings;
use mnemos_engine::Engine;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Shared state of every handler. The engine arrives after start-up, so
/// `/healthz` answers while indexes load and `/readyz` tells when they have.
pub struct AppState {
    engine: OnceLock<Arc<Engine>>,
    ready: AtomicBool,
    failure: OnceLock<String>,
    pub admin_token: Option<String>,
    pub read_token: Option<String>,
    pub metrics: Metrics,
    pub admission: admission::Admission,
    pub max_body_bytes: usize,
    pub cors_allow_origins: Vec<String>,
}

impl AppState {
    pub fn new(settings: &Settings) -> Self {
        let metrics = Metrics::new();
        let admission = admission::Admission::new(&settings.admission, metrics.registry());
        Self {
            engine: OnceLock::new(),
            ready: AtomicBool::new(false),
            failure: OnceLock::new(),
            admin_token: settings.server.admin_token.clone(),
            read_token: settings.server.read_token.clone(),
            metrics,
            admission,
            max_body_bytes: settings.server.max_body_bytes,
            cors_allow_origins: settings.server.cors_allow_origins.clone(),
        }
    }

    /// Installs the loaded engine (not yet ready: see [`AppState::mark_ready`]).
    pub fn set_engine(&self, engine: Arc<Engine>) {
        let _ = self.engine.set(engine);
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn mark_failed(&self, message: String) {
        let _ = self.failure.set(message);
    }

    pub fn failed(&self) -> Option<String> {
        self.failure.get().cloned()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.engine.get().is_some()
    }

    pub fn engine(&self) -> Option<&Arc<Engine>> {
        self.engine.get()
    }

    /// The engine, or 503 while it loads.
    pub fn require_engine(&self) -> Result<&Arc<Engine>, ApiError> {
        self.engine.get().ok_or_else(ApiError::not_ready)
    }

    /// The engine once warmed up, or 503.
    pub fn require_ready(&self) -> Result<&Arc<Engine>, ApiError> {
        if !self.is_ready() {
            return Err(ApiError::not_ready());
        }
        self.require_engine()
    }
}

/// The whole router. Tests drive it with `tower::ServiceExt::oneshot`.
pub fn app(state: Arc<AppState>) -> Router {
    use routes::{admin, health, lm, search, visual};
    let limit = state.max_body_bytes;
    let cors = security::cors(&state.cors_allow_origins);
    let router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::serve))
        .route("/v1/stats", get(health::stats))
        .route("/v1/search", post(search::search))
        .route("/v1/admin/documents", post(admin::upsert))
        .route("/v1/admin/documents/delete", post(admin::remove_batch))
        .route(
            "/v1/admin/hypencoder/rebuild-graph",
            post(admin::rebuild_hypencoder_graph),
        )
        .route(
            "/v1/admin/documents/{id}",
            get(admin::get).delete(admin::remove),
        )
        .route("/v1/lm/models", get(lm::models))
        .route("/v1/lm/generate", post(lm::generate))
        .route("/v1/lm/score", post(lm::score))
        .route("/v1/admin/lm/memory/jobs", get(lm::memory_jobs))
        .route("/v1/admin/tiers", get(lm::tiers))
        .route("/v1/visual/classify", post(visual::classify))
        .route("/v1/admin/visual/memories", post(visual::upsert))
        .route(
            "/v1/admin/visual/memories/{id}",
            axum::routing::delete(visual::remove),
        )
        .route(
            "/v1/admin/visual/classes/{label}",
            axum::routing::delete(visual::remove_class),
        )
        .route("/v1/admin/visual/prune", post(visual::prune))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost first: admission sits right before the handlers, behind
        // the token check (unauthenticated requests take no slot); metrics
        // count what both refuse; CORS (when on) answers preflights; the
        // headers cover every answer, preflights included.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            admission::admit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            metrics::track,
        ));
    let router = match cors {
        Some(layer) => router.layer(layer),
        None => router,
    };
    router
        .layer(axum::middleware::from_fn(security::headers))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}
