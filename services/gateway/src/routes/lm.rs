//! `/v1/lm/*`: list the language models, generate, score. The work runs on
//! the engine's bounded blocking pool, never on the async workers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use mnemos_api::{
    LmGenerateRequest, LmGenerateResponse, LmMemoryJobsResponse, LmModelsResponse, LmScoreRequest,
    LmScoreResponse, TiersResponse,
};

use crate::error::{ApiError, AppJson};
use crate::{auth, AppState};

/// The served models with their parameter counts.
#[utoipa::path(get, path = "/v1/lm/models", responses(
    (status = 200, body = LmModelsResponse),
    (status = 503, body = mnemos_api::ErrorResponse)))]
pub async fn models(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<LmModelsResponse>, ApiError> {
    auth::check_read(&headers, state.read_token.as_deref())?;
    let models = state.require_ready()?.lm()?.models();
    Ok(Json(LmModelsResponse { models }))
}

/// Continue a prompt (temperature 0 is greedy; a seed makes sampling
/// repeatable).
#[utoipa::path(post, path = "/v1/lm/generate", request_body = LmGenerateRequest, responses(
    (status = 200, body = LmGenerateResponse),
    (status = 400, body = mnemos_api::ErrorResponse),
    (status = 404, description = "unknown model", body = mnemos_api::ErrorResponse),
    (status = 503, body = mnemos_api::ErrorResponse)))]
pub async fn generate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppJson(req): AppJson<LmGenerateRequest>,
) -> Result<Json<LmGenerateResponse>, ApiError> {
    auth::check_read(&headers, state.read_token.as_deref())?;
    let lm = Arc::clone(state.require_ready()?.lm()?);
    Ok(Json(lm.generate(req).await?))
}

/// The negative log-likelihood and perplexity of a text.
#[utoipa::path(post, path = "/v1/lm/score", request_body = LmScoreRequest, responses(
    (status = 200, body = LmScoreResponse),
    (status = 400, body = mnemos_api::ErrorResponse),
    (status = 404, description = "unknown model", body = mnemos_api::ErrorResponse),
    (status = 503, body = mnemos_api::ErrorResponse)))]
pub async fn score(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppJson(req): AppJson<LmScoreRequest>,
) -> Result<Json<LmScoreResponse>, ApiError> {
    auth::check_read(&headers, state.read_token.as_deref())?;
    let lm = Arc::clone(state.require_ready()?.lm()?);
    Ok(Json(lm.score(req).await?))
}

/// The memory bank's background work: blocks waiting to be retrained
/// (after an unlearning or an added document), the one training now, the
/// recent results, and the blocks disabled meanwhile (never served).
#[utoipa::path(get, path = "/v1/admin/lm/memory/jobs", security(("bearer" = [])), responses(
    (status = 200, body = LmMemoryJobsResponse),
    (status = 401, body = mnemos_api::ErrorResponse),
    (status = 403, body = mnemos_api::ErrorResponse),
    (status = 404, description = "no memory bank served", body = mnemos_api::ErrorResponse),
    (status = 503, body = mnemos_api::ErrorResponse)))]
pub async fn memory_jobs(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<LmMemoryJobsResponse>, ApiError> {
    auth::check_admin(&headers, state.admin_token.as_deref())?;
    Ok(Json(state.require_ready()?.lm()?.memory_jobs()?))
}

/// The memory tiers of the anchor's bank: RAM budget and resident bytes,
/// pinned blocks, the warm directory and the object store, hits, misses,
/// evictions and fetch latency per tier, failed fetches, the hottest
/// blocks, and how many answers went without part of their memory.
#[utoipa::path(get, path = "/v1/admin/tiers", security(("bearer" = [])), responses(
    (status = 200, body = TiersResponse),
    (status = 401, body = mnemos_api::ErrorResponse),
    (status = 403, body = mnemos_api::ErrorResponse),
    (status = 404, description = "no memory bank served through tiers", body = mnemos_api::ErrorResponse),
    (status = 503, body = mnemos_api::ErrorResponse)))]
pub async fn tiers(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<TiersResponse>, ApiError> {
    auth::check_admin(&headers, state.admin_token.as_deref())?;
    let lm = Arc::clone(state.require_ready()?.lm()?);
    // The summary walks the warm directory: off the async workers.
    let response = tokio::task::spawn_blocking(move || lm.tiers())
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("tiers summary task failed: {e}"),
            )
        })??;
    Ok(Json(response))
}
