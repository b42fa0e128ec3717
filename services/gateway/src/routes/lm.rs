//! `/v1/lm/*`: list the language models, generate, score. The work runs on
//! the engine's bounded blocking pool, never on the async workers.

use std::sync::Arc;

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, StreamExt};
use mnemos_api::{
    ErrorDetail, ErrorResponse, LmGenerateRequest, LmGenerateResponse, LmMemoryJobsResponse,
    LmModelsResponse, LmScoreRequest, LmScoreResponse, LmStreamToken, TiersResponse,
};
use mnemos_engine::LmStreamEvent;

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
/// repeatable). With `"stream": true` the answer is a stream of
/// server-sent events: `token` events as the text is made, then `done`
/// (the whole response) or `error`.
#[utoipa::path(post, path = "/v1/lm/generate", request_body = LmGenerateRequest, responses(
    (status = 200, description = "The generation; with `\"stream\": true` server-sent events: \
        `token` events (LmStreamToken), then `done` (LmGenerateResponse) or `error` (ErrorResponse)",
        content(
            (LmGenerateResponse = "application/json"),
            (String = "text/event-stream")
        )),
    (status = 400, body = mnemos_api::ErrorResponse),
    (status = 404, description = "unknown model", body = mnemos_api::ErrorResponse),
    (status = 503, body = mnemos_api::ErrorResponse)))]
pub async fn generate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppJson(req): AppJson<LmGenerateRequest>,
) -> Result<Response, ApiError> {
    auth::check_read(&headers, state.read_token.as_deref())?;
    let lm = Arc::clone(state.require_ready()?.lm()?);
    if !req.stream {
        return Ok(Json(lm.generate(req).await?).into_response());
    }
    let events = lm.generate_stream(req).await?;
    let events = stream::unfold(events, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    })
    .map(|event| {
        Ok::<_, Infallible>(match event {
            LmStreamEvent::Token { tokens, text } => {
                sse_json("token", &LmStreamToken { text, tokens })
            }
            LmStreamEvent::Done(done) => sse_json("done", &done),
            LmStreamEvent::Failed(err) => {
                let err = ApiError::from(err);
                sse_json(
                    "error",
                    &ErrorResponse {
                        error: ErrorDetail {
                            code: err.code.to_string(),
                            message: err.message,
                        },
                    },
                )
            }
        })
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// One server-sent event with a JSON body.
fn sse_json(name: &str, body: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(body)
        .unwrap_or_else(|err| Event::default().event("error").data(err.to_string()))
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
