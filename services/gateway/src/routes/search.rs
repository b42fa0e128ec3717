//! `POST /v1/search`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use mnemos_api::{FusionRequest, SearchRequest, SearchResponse};

use crate::error::{ApiError, AppJson};
use crate::{auth, AppState};

/// Search one backend, or several fused.
#[utoipa::path(post, path = "/v1/search", request_body = SearchRequest, responses(
    (status = 200, body = SearchResponse),
    (status = 400, description = "bad request", body = mnemos_api::ErrorResponse),
    (status = 401, description = "read token required", body = mnemos_api::ErrorResponse),
    (status = 503, description = "loading or overloaded", body = mnemos_api::ErrorResponse)))]
pub async fn search(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppJson(req): AppJson<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    auth::check_read(&headers, state.read_token.as_deref())?;
    let engine = state.require_ready()?;
    let started = Instant::now();
    let resp = engine.search(&req).await?;
    let backends = req
        .backends
        .as_ref()
        .unwrap_or(&engine.settings().search.default_backends)
        .join(",");
    let fusion = match &req.fusion {
        Some(FusionRequest::Rrf { .. }) => "rrf",
        Some(FusionRequest::Linear { .. }) => "linear",
        None => "default",
    };
    state
        .metrics
        .observe_search(&backends, fusion, started.elapsed().as_secs_f64());
    Ok(Json(resp))
}
