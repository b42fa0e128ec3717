//! Bearer-token checks. Tokens are compared in constant time and never
//! logged; a server without an admin token refuses admin routes outright
//! (403) rather than leaving them open.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

/// Middleware: checks the token a route needs before anything else reads
/// the request, so an unauthenticated client learns nothing about the body
/// schema and costs no parsing or queue slot. Handlers check again; this
/// layer is what guarantees the order.
pub async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let checked = if path.starts_with("/v1/admin/") {
        check_admin(req.headers(), state.admin_token.as_deref())
    } else if path == "/v1/search" || path.starts_with("/v1/lm/") || path.starts_with("/v1/visual/")
    {
        check_read(req.headers(), state.read_token.as_deref())
    } else {
        Ok(())
    };
    match checked {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.as_bytes();
    let rest = value.strip_prefix(b"Bearer ")?;
    Some(rest.trim_ascii())
}

fn matches(given: &[u8], expected: &str) -> bool {
    // ConstantTimeEq on slices of different lengths returns false at once,
    // leaking only the length, which is not secret in any useful sense.
    given.ct_eq(expected.as_bytes()).into()
}

/// Admin routes: 403 when no token is configured, 401 when missing/wrong.
pub fn check_admin(headers: &HeaderMap, token: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "admin routes are disabled: set MNEMOS_ADMIN_TOKEN or server.admin_token",
        ));
    };
    check(headers, expected)
}

/// Search routes: open unless a read token is configured.
pub fn check_read(headers: &HeaderMap, token: Option<&str>) -> Result<(), ApiError> {
    match token {
        None => Ok(()),
        Some(expected) => check(headers, expected),
    }
}

fn check(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    match bearer(headers) {
        Some(given) if matches(given, expected) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is not valid",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing `Authorization: Bearer <token>` header",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn admin_rules() {
        let t = Some("s3cret-token");
        assert!(check_admin(&headers("Bearer s3cret-token"), t).is_ok());
        assert_eq!(
            check_admin(&headers("Bearer wrong"), t).unwrap_err().status,
            401
        );
        assert_eq!(check_admin(&HeaderMap::new(), t).unwrap_err().status, 401);
        assert_eq!(
            check_admin(&headers("Basic s3cret-token"), t)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            check_admin(&headers("Bearer s3cret-token"), None)
                .unwrap_err()
                .status,
            403
        );
        assert!(check_read(&HeaderMap::new(), None).is_ok());
    }
}
