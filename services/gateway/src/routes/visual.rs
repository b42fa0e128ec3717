//! `/v1/visual/classify` and `/v1/admin/visual/*`: the visual memory.
//!
//! Images arrive base64-encoded inside JSON, or as a multipart file part;
//! both end up as bytes for the engine's image pool. Every edit is logged
//! and fsynced before its response, and invisible to classification from
//! then on.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use base64::Engine as _;
use mnemos_api::{
    ClassifyRequest, ClassifyResponse, DownweightedItem, NeighborOut, PruneRequest, PruneResponse,
    PrunedItem, VisualRemoveResponse, VisualUpsertRequest, VisualUpsertResponse,
};
use mnemos_engine::visual::{ClassifyQuery, VisualInput, VisualItem};
use mnemos_visual::Prune;

use crate::error::{ApiError, AppJson, AppPath};
use crate::{auth, AppState};

/// Default neighbourhood and threshold of an admin prune: SPECS §3 counts
/// wrong-label appearances in top-100 lists. On MNIST (`mnemos
/// eval-visual`) a threshold of 100 dropped 3% of the memory for −0.2
/// points, 50 dropped 17% for −0.9: hard pruning is a trim, not a cure.
const PRUNE_K: usize = 100;
const PRUNE_THRESHOLD: u32 = 100;

/// Classify an image or an embedding by its nearest stored samples.
#[utoipa::path(post, path = "/v1/visual/classify", request_body(content(
        (ClassifyRequest = "application/json"),
        (ClassifyRequest = "multipart/form-data"))),
    responses(
    (status = 200, body = ClassifyResponse),
    (status = 400, description = "bad image, embedding or option", body = mnemos_api::ErrorResponse),
    (status = 401, description = "read token required", body = mnemos_api::ErrorResponse),
    (status = 413, description = "upload too large", body = mnemos_api::ErrorResponse),
    (status = 503, description = "loading, disabled or overloaded", body = mnemos_api::ErrorResponse)))]
pub async fn classify(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<ClassifyResponse>, ApiError> {
    auth::check_read(&headers, state.read_token.as_deref())?;
    let engine = state.require_ready()?;
    let visual = engine.visual()?;
    let started = Instant::now();
    let (req, input) = if is_multipart(&headers) {
        let multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
        let (req, image) = read_multipart(multipart).await?;
        let input = match (image, req.embedding.clone()) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("send image or embedding, not both"))
            }
            (Some(bytes), None) if bytes.is_empty() => {
                return Err(ApiError::bad_request("image is empty"))
            }
            (Some(bytes), None) => VisualInput::Image(bytes),
            (None, embedding) => input_of(None, embedding, "")?,
        };
        (req, input)
    } else {
        let AppJson(mut req) = AppJson::<ClassifyRequest>::from_request(request, &()).await?;
        let input = input_of(req.image.take(), req.embedding.take(), "")?;
        (req, input)
    };
    let out = visual
        .classify(ClassifyQuery {
            input,
            k: req.k,
            aggregation: req.aggregation,
            ef: req.ef,
        })
        .await?;
    let d = out.decision;
    Ok(Json(ClassifyResponse {
        label: d.label,
        scores: d.scores.into_iter().collect(),
        neighbors: d
            .neighbors
            .into_iter()
            .zip(out.metadata)
            .map(|(v, meta)| NeighborOut {
                id: v.id,
                label: v.label,
                distance: v.distance,
                weight: v.weight,
                // Stored by this server as JSON text.
                metadata: meta
                    .and_then(|m| serde_json::from_str(&m).ok())
                    .unwrap_or_default(),
            })
            .collect(),
        aggregation: out.aggregation.name().to_string(),
        k: out.k,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
    }))
}

/// Add or replace samples (new labels are new classes; no training).
#[utoipa::path(post, path = "/v1/admin/visual/memories", request_body = VisualUpsertRequest,
    security(("bearer" = [])), responses(
    (status = 200, body = VisualUpsertResponse),
    (status = 400, body = mnemos_api::ErrorResponse),
    (status = 401, body = mnemos_api::ErrorResponse),
    (status = 413, body = mnemos_api::ErrorResponse),
    (status = 503, description = "overloaded (with Retry-After)", body = mnemos_api::ErrorResponse),
    (status = 507, description = "the data directory's disk is full; nothing was written", body = mnemos_api::ErrorResponse)))]
pub async fn upsert(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppJson(req): AppJson<VisualUpsertRequest>,
) -> Result<Json<VisualUpsertResponse>, ApiError> {
    auth::check_admin(&headers, state.admin_token.as_deref())?;
    let visual = state.require_ready()?.visual()?;
    let n = req.items.len();
    let items = req
        .items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            Ok(VisualItem {
                input: input_of(item.image, item.embedding, &format!("items[{i}]."))?,
                id: item.id,
                label: item.label,
                metadata: item.metadata,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let total = visual.upsert(items).await?;
    Ok(Json(VisualUpsertResponse { upserted: n, total }))
}

/// Unlearn one sample; 404 if it is not stored.
#[utoipa::path(delete, path = "/v1/admin/visual/memories/{id}", security(("bearer" = [])),
    params(("id" = String, Path, description = "sample id")),
    responses((status = 200, body = VisualRemoveResponse), (status = 404, body = mnemos_api::ErrorResponse)))]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppPath(id): AppPath<String>,
) -> Result<Json<VisualRemoveResponse>, ApiError> {
    auth::check_admin(&headers, state.admin_token.as_deref())?;
    let visual = state.require_ready()?.visual()?;
    let (removed, total) = visual.remove(id.clone()).await?;
    if removed.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no visual memory item `{id}`"),
        ));
    }
    Ok(Json(VisualRemoveResponse { removed, total }))
}

/// Unlearn every sample of a class; 404 if the class has none.
#[utoipa::path(delete, path = "/v1/admin/visual/classes/{label}", security(("bearer" = [])),
    params(("label" = String, Path, description = "class label")),
    responses((status = 200, body = VisualRemoveResponse), (status = 404, body = mnemos_api::ErrorResponse)))]
pub async fn remove_class(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppPath(label): AppPath<String>,
) -> Result<Json<VisualRemoveResponse>, ApiError> {
    auth::check_admin(&headers, state.admin_token.as_deref())?;
    let visual = state.require_ready()?.visual()?;
    let (removed, total) = visual.remove_class(label.clone()).await?;
    if removed.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no visual memory class `{label}`"),
        ));
    }
    Ok(Json(VisualRemoveResponse { removed, total }))
}

/// Hard pruning drops, soft pruning down-weights, the samples that most
/// often sit with the wrong label among other samples' nearest neighbours.
#[utoipa::path(post, path = "/v1/admin/visual/prune", request_body = PruneRequest,
    security(("bearer" = [])), responses(
    (status = 200, body = PruneResponse),
    (status = 400, body = mnemos_api::ErrorResponse)))]
pub async fn prune(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppJson(req): AppJson<PruneRequest>,
) -> Result<Json<PruneResponse>, ApiError> {
    auth::check_admin(&headers, state.admin_token.as_deref())?;
    let visual = state.require_ready()?.visual()?;
    let k = req.k.unwrap_or(PRUNE_K);
    if !(1..=mnemos_engine::visual::MAX_K).contains(&k) {
        return Err(ApiError::bad_request(format!(
            "k must be in 1..={}, got {k}",
            mnemos_engine::visual::MAX_K
        )));
    }
    let how = match req.mode.as_str() {
        "hard" => Prune::Hard {
            k,
            threshold: req.threshold.unwrap_or(PRUNE_THRESHOLD),
        },
        "soft" if req.threshold.is_some() => {
            return Err(ApiError::bad_request(
                "threshold applies to hard pruning only",
            ))
        }
        "soft" => Prune::Soft { k },
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown prune mode {other:?}; use \"hard\" or \"soft\""
            )))
        }
    };
    let started = Instant::now();
    let (report, total) = visual.prune(how).await?;
    Ok(Json(PruneResponse {
        examined: report.examined,
        removed: report
            .removed
            .iter()
            .cloned()
            .map(|(id, label, wrong)| PrunedItem { id, label, wrong })
            .collect(),
        downweighted: report
            .downweighted()
            .map(|(id, multiplier)| DownweightedItem {
                id: id.clone(),
                multiplier: *multiplier,
            })
            .collect(),
        reweighted: report.multipliers.len(),
        total,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
    }))
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().get(..19))
        .is_some_and(|v| v.eq_ignore_ascii_case("multipart/form-data"))
}

/// A multipart classify request: a file part `image` (or a text part
/// `embedding` holding a JSON array) and optional text parts `k`,
/// `aggregation`, `ef`.
async fn read_multipart(
    mut multipart: Multipart,
) -> Result<(ClassifyRequest, Option<Vec<u8>>), ApiError> {
    let mut req = ClassifyRequest::default();
    let mut image: Option<Vec<u8>> = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(multipart_error)?;
        let text = || {
            std::str::from_utf8(&bytes)
                .map(str::trim)
                .map_err(|_| ApiError::bad_request(format!("part `{name}` is not UTF-8 text")))
        };
        let number = |what: &str| -> Result<usize, ApiError> {
            text()?
                .parse()
                .map_err(|_| ApiError::bad_request(format!("part `{what}` must be a whole number")))
        };
        match name.as_str() {
            "image" if image.is_some() => {
                return Err(ApiError::bad_request("send one `image` part"));
            }
            "image" => image = Some(bytes.to_vec()),
            "embedding" => {
                req.embedding = Some(serde_json::from_str(text()?).map_err(|e| {
                    ApiError::bad_request(format!(
                        "part `embedding` must be a JSON array of numbers: {e}"
                    ))
                })?)
            }
            "k" => req.k = Some(number("k")?),
            "ef" => req.ef = Some(number("ef")?),
            "aggregation" => req.aggregation = Some(text()?.to_string()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown part `{other}` (known: image, embedding, k, aggregation, ef)"
                )))
            }
        }
    }
    Ok((req, image))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the upload is larger than the configured limit",
        )
    } else {
        ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// Exactly one of a base64 image and an embedding. `prefix` names the
/// item in messages (`items[3].`).
fn input_of(
    image: Option<String>,
    embedding: Option<Vec<f32>>,
    prefix: &str,
) -> Result<VisualInput, ApiError> {
    match (image, embedding) {
        (Some(b64), None) => {
            let bytes = decode_base64(&b64).ok_or_else(|| {
                ApiError::bad_request(format!("{prefix}image is not valid base64"))
            })?;
            if bytes.is_empty() {
                return Err(ApiError::bad_request(format!("{prefix}image is empty")));
            }
            Ok(VisualInput::Image(bytes))
        }
        (None, Some(v)) => Ok(VisualInput::Embedding(v)),
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!(
            "send {prefix}image or {prefix}embedding, not both"
        ))),
        (None, None) => Err(ApiError::bad_request(format!(
            "send {prefix}image (base64 PNG/JPEG) or {prefix}embedding"
        ))),
    }
}

/// Standard alphabet, padding optional, line breaks ignored (MIME-style
/// wrapping); a data URL prefix is accepted.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let s = match s.find(";base64,") {
        Some(i) if s.starts_with("data:") => &s[i + ";base64,".len()..],
        _ => s,
    };
    let compact: String;
    let s = if s.bytes().any(|b| b.is_ascii_whitespace()) {
        compact = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        &compact
    } else {
        s
    };
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
        .ok()
}
