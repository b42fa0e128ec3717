//! Liveness, readiness, metrics and statistics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use mnemos_api::StatsResponse;

use crate::error::ApiError;
use crate::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Every configured backend is loaded and a warm-up query has run.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "still loading", body = mnemos_api::ErrorResponse)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    if let Some(message) = state.failed() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "startup_failed",
            message,
        ));
    }
    if !state.is_ready() {
        return Err(ApiError::not_ready());
    }
    Ok(Json(serde_json::json!({"status": "ready"})))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus metrics")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state),
    )
}

/// Document count, last log sequence number, entries per backend.
#[utoipa::path(get, path = "/v1/stats", responses((status = 200, body = StatsResponse)))]
pub async fn stats(State(state): State<Arc<AppState>>) -> Result<Json<StatsResponse>, ApiError> {
    let engine = state.require_engine()?;
    Ok(Json(StatsResponse {
        documents: engine.store().len(),
        last_seq: engine.store().last_seq(),
        backends: engine
            .backend_sizes()
            .into_iter()
            .map(|(b, n)| (b.name().to_string(), n))
            .collect(),
        visual: engine.visual().ok().map(|v| {
            let c = v.counts();
            mnemos_api::VisualStats {
                items: c.items,
                classes: c.classes,
                dim: c.dim,
                search: if c.graph { "hnsw" } else { "exact" }.into(),
            }
        }),
    }))
}
