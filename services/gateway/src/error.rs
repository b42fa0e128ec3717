//! The one place where errors become HTTP responses. Every body has the
//! shape `{"error": {"code", "message"}}`, including axum's own rejections
//! (bad JSON, body too large), which would otherwise answer in plain text.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mnemos_api::{ErrorDetail, ErrorResponse};
use mnemos_engine::EngineError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `Retry-After` seconds; every 503 carries one (1 s unless set).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    pub fn no_document(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no document `{id}`"),
        )
    }

    pub fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the server is still loading its indexes",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        let retry = match self.status {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                Some(self.retry_after_s.unwrap_or(1))
            }
            _ => self.retry_after_s,
        };
        if let Some(seconds) = retry {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        resp
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        use StatusCode as S;
        if storage_full(&e) {
            tracing::warn!(error = %e, "a write failed: the data directory's disk is full");
            // The store rolls a failed log append back; an index update
            // fails after the log record is durable, so that write stands.
            let outcome = match &e {
                EngineError::Store(_) => "the write was not applied",
                _ => "the write was saved to the log but an index could not be updated; it is indexed at the next start",
            };
            return ApiError::new(
                S::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                format!("the data directory's disk is full; {outcome} (reads still work): {e}"),
            );
        }
        let (status, code) = match &e {
            EngineError::InvalidArgument(_) => (S::BAD_REQUEST, "invalid_argument"),
            EngineError::NotFound(_) => (S::NOT_FOUND, "not_found"),
            EngineError::Overloaded(_) => (S::SERVICE_UNAVAILABLE, "overloaded"),
            EngineError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable"),
            EngineError::StorageFull(_) => (S::INSUFFICIENT_STORAGE, "insufficient_storage"),
            EngineError::Store(mnemos_store::StoreError::InvalidId(_)) => {
                (S::BAD_REQUEST, "invalid_argument")
            }
            EngineError::Store(mnemos_store::StoreError::RecordTooLarge { .. }) => {
                (S::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            EngineError::Store(mnemos_store::StoreError::Poisoned) => {
                (S::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            EngineError::Store(_) => (S::INTERNAL_SERVER_ERROR, "store_error"),
            EngineError::Index(_) => (S::INTERNAL_SERVER_ERROR, "index_error"),
            EngineError::Model(_) => (S::INTERNAL_SERVER_ERROR, "model_error"),
            EngineError::Config(_) => (S::INTERNAL_SERVER_ERROR, "config_error"),
            EngineError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() && status != S::SERVICE_UNAVAILABLE {
            tracing::error!(error = %e, "request failed");
        }
        ApiError::new(status, code, e.to_string())
    }
}

/// Whether `e` comes from a full disk (`ENOSPC`, or `EDQUOT` for a quota),
/// found through its source chain or, for errors that were turned into
/// text on the way up, the OS error number in the message.
pub fn storage_full(e: &EngineError) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    // Only I/O-bearing errors: the others may quote what the client sent
    // (an unknown model name), which must not turn into a 507.
    if !matches!(
        e,
        EngineError::Store(_) | EngineError::Index(_) | EngineError::Internal(_)
    ) {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull
                || matches!(io.raw_os_error(), Some(ENOSPC | EDQUOT))
            {
                return true;
            }
        }
        source = err.source();
    }
    let text = e.to_string();
    [
        "(os error 28)",
        "(os error 122)",
        "No space left on device",
        "StorageFull",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_io_errors_can_mean_a_full_disk() {
        let quoted = EngineError::NotFound("no model `No space left on device`".into());
        assert!(!storage_full(&quoted));
        assert_eq!(ApiError::from(quoted).status, StatusCode::NOT_FOUND);
        let io = std::io::Error::from_raw_os_error(28);
        let index = EngineError::Index(mnemos_index_core::IndexError::Io(io));
        let err = ApiError::from(index);
        assert_eq!(err.status, StatusCode::INSUFFICIENT_STORAGE);
        assert!(
            err.message.contains("indexed at the next start"),
            "{}",
            err.message
        );
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the configured limit",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            _ => ApiError::bad_request(format!("malformed JSON body: {}", r.body_text())),
        }
    }
}

/// `axum::Json` whose rejections answer in our error shape.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(format!("bad path segment: {}", r.body_text()))
    }
}

/// `axum::extract::Path` whose rejections (an id that is not UTF-8 after
/// percent-decoding, say) answer in our error shape.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);
