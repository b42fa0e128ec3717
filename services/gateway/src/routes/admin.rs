//! `/v1/admin/documents`: upsert, read, remove. Every write is durable
//! (fsynced in the store's log) and searchable before the response.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use mnemos_api::{
    BatchRemoveRequest, BatchRemoveResponse, DocumentOut, RebuildGraphResponse, RemoveResponse,
    UpsertRequest, UpsertResponse,
};
use mnemos_index_core::Document;

use crate::error::{ApiError, AppJson, AppPath};
use crate::{auth, AppState};

/// Insert or replace documents.
#[utoipa::path(post, path = "/v1/admin/documents", request_body = UpsertRequest,
    security(("bearer" = [])), responses(
    (status = 200, body = UpsertResponse),
    (status = 400, body = mnemos_api::ErrorResponse),
    (status = 401, body = mnemos_api::ErrorResponse),
    (status = 403, body = mnemos_api::ErrorResponse),
    (status = 413, body = mnemos_api::ErrorResponse),
    (status = 503, description = "overloaded (with Retry-After)", body = mnemos_api::ErrorResponse),
    (status = 507, description = "the data directory's disk is full; nothing was written", body = mnemos_api::ErrorResponse)))]
pub async fn upsert(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppJson(req): AppJson<UpsertRequest>,
) -> Result<Json<UpsertResponse>, ApiError> {
    auth::check_admin(&headers, state.admin_token.as_deref())?;
    let engine = state.require_ready()?;
    let docs: Vec<Document> = req
        .documents
        .into_iter()
        .map(|d| Document {
            id: d.id,
            title: d.title,
            text: d.text,
            metadata: d.metadata,
        })
        .collect();
    let n = docs.len();
    let out = engine.upsert(docs).await?;
    Ok(Json(UpsertResponse {
        upserted: n,
        seq: out.seq,
    }))
}

/// Read one stored document.
#[utoipa::path(get, path = "/v1/admin/documents/{id}", security(("bearer" = [])),
    params(("id" = String, Path, description = "document id")),
    responses((status = 200, body = DocumentOut), (status = 404, body = mnemos_api::ErrorResponse)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppPath(id): AppPath<String>,
) -> Result<Json<DocumentOut>, ApiError> {
    auth::check_admin(&headers, state.admin_token.as_deref())?;
    let engine = state.require_engine()?;
    let (doc, seq) = engine
        .store()
        .get(&id)
        .ok_or_else(|| ApiError::no_document(&id))?;
    Ok(Json(DocumentOut {
        id: doc.id.clone(),
        title: doc.title.clone(),
        text: doc.text.clone(),
        metadata: doc.metadata.clone(),
        seq,
    }))
}

/// Remove one document; 404 if it does not exist.
#[utoipa::path(delete, path = "/v1/admin/documents/{id}", security(("bearer" = [])),
    params(("id" = String, Path, description = "document id")),
    responses((status = 200, body = RemoveResponse), (status = 404, body = mnemos_api::ErrorResponse)))]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppPath(id): AppPath<String>,
) -> Result<Json<RemoveResponse>, ApiError> {
    auth::check_admin(&headers, state.admin_token.as_deref())?;
    let engine = state.require_ready()?;
    let out = engine.remove(vec![id.clone()]).await?;
    if out.affected.is_empty() {
        return Err(ApiError::no_document(&id));
    }
    Ok(Json(RemoveResponse {
        removed: true,
        seq: out.seq,
    }))
}

/// Remove several documents; unknown ids are listed, not an error.
#[utoipa::path(post, path = "/v1/admin/documents/delete", request_body = BatchRemoveRequest,
    security(("bearer" = [])), responses((status = 200, body = BatchRemoveResponse)))]
pub async fn remove_batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppJson(req): AppJson<BatchRemoveRequest>,
) -> Result<Json<BatchRemoveResponse>, ApiError> {
    auth::check_admin(&headers, state.admin_token.as_deref())?;
    let engine = state.require_ready()?;
    let asked = req.ids.clone();
    let out = engine.remove(req.ids).await?;
    let removed: std::collections::HashSet<&String> = out.affected.iter().collect();
    let mut not_found: Vec<String> = asked
        .into_iter()
        .filter(|id| !removed.contains(id))
        .collect();
    not_found.dedup();
    Ok(Json(BatchRemoveResponse {
        removed: out.affected.len(),
        not_found,
        seq: out.seq,
    }))
}

/// Rebuilds the hypencoder's neighbour graph exactly (removals only patch
/// it). Takes about a minute per 100k documents on two cores; searches keep
/// running on the old graph meanwhile, writes wait.
#[utoipa::path(post, path = "/v1/admin/hypencoder/rebuild-graph",
    security(("bearer" = [])), responses(
    (status = 200, body = RebuildGraphResponse),
    (status = 401, body = mnemos_api::ErrorResponse),
    (status = 403, body = mnemos_api::ErrorResponse),
    (status = 503, body = mnemos_api::ErrorResponse)))]
pub async fn rebuild_hypencoder_graph(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<RebuildGraphResponse>, ApiError> {
    auth::check_admin(&headers, state.admin_token.as_deref())?;
    let started = std::time::Instant::now();
    let (documents, edges) = state.require_ready()?.hypencoder()?.rebuild_graph().await?;
    Ok(Json(RebuildGraphResponse {
        documents,
        edges,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
    }))
}
