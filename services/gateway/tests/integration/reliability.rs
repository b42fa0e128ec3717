//! Security and overload behaviour of the router, in-process over a real
//! engine: response headers, CORS, token separation route by route, and
//! admission control shedding with `Retry-After` and recovering.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use tower::ServiceExt;

use crate::common::TOKEN;
use crate::router::{harness_with, upsert_docs};

const READ: &str = "read-token-for-tests";

/// One request; the status, headers and JSON body.
async fn raw(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (StatusCode, HeaderMap, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

#[tokio::test]
async fn security_headers_everywhere_and_no_cors_by_default() {
    let h = harness_with(|_| {}).await;
    let origin = [("origin", "https://evil.example")];
    for (method, uri, body) in [
        ("GET", "/healthz", None),
        ("GET", "/metrics", None),
        ("GET", "/no/such/route", None),
        (
            "POST",
            "/v1/search",
            Some(r#"{"query": "heart", "k": 3}"#.to_string()),
        ),
        ("POST", "/v1/search", Some("{not json".to_string())),
        ("DELETE", "/v1/admin/documents/x", None),
    ] {
        let (st, headers, _) = raw(&h.app, method, uri, &origin, body).await;
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-store"),
        ] {
            assert_eq!(
                headers.get(name).map(|v| v.to_str().unwrap()),
                Some(value),
                "{method} {uri} ({st}): {name}"
            );
        }
        assert!(headers.contains_key("content-security-policy"));
        assert!(
            !headers.contains_key("access-control-allow-origin"),
            "{method} {uri}: CORS must be off by default"
        );
    }
    // A preflight gets no CORS approval either.
    let (_, headers, _) = raw(
        &h.app,
        "OPTIONS",
        "/v1/search",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ],
        None,
    )
    .await;
    assert!(!headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn cors_answers_only_listed_origins() {
    let h =
        harness_with(|s| s.server.cors_allow_origins = vec!["https://app.example".into()]).await;
    let preflight = |origin: &'static str| {
        [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type",
            ),
        ]
    };
    let (_, ok, _) = raw(
        &h.app,
        "OPTIONS",
        "/v1/search",
        &preflight("https://app.example"),
        None,
    )
    .await;
    assert_eq!(
        ok.get("access-control-allow-origin").unwrap(),
        "https://app.example"
    );
    let (_, no, _) = raw(
        &h.app,
        "OPTIONS",
        "/v1/search",
        &preflight("https://evil.example"),
        None,
    )
    .await;
    assert!(!no.contains_key("access-control-allow-origin"));
}

/// Which token a route takes.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Needs {
    Nothing,
    Read,
    Admin,
}

fn routes() -> Vec<(&'static str, &'static str, Option<&'static str>, Needs)> {
    use Needs::*;
    let search = Some(r#"{"query": "heart", "k": 3}"#);
    let docs = Some(r#"{"documents": [{"id": "t1", "text": "token test"}]}"#);
    vec![
        ("GET", "/healthz", None, Nothing),
        ("GET", "/readyz", None, Nothing),
        ("GET", "/metrics", None, Nothing),
        ("GET", "/openapi.json", None, Nothing),
        ("GET", "/v1/stats", None, Nothing),
        ("POST", "/v1/search", search, Read),
        ("GET", "/v1/lm/models", None, Read),
        ("POST", "/v1/lm/generate", Some(r#"{"prompt": "a"}"#), Read),
        ("POST", "/v1/lm/score", Some(r#"{"text": "a"}"#), Read),
        (
            "POST",
            "/v1/visual/classify",
            Some(r#"{"embedding": [1.0]}"#),
            Read,
        ),
        ("POST", "/v1/admin/documents", docs, Admin),
        ("GET", "/v1/admin/documents/t1", None, Admin),
        ("DELETE", "/v1/admin/documents/t1", None, Admin),
        (
            "POST",
            "/v1/admin/documents/delete",
            Some(r#"{"ids": ["t1"]}"#),
            Admin,
        ),
        ("POST", "/v1/admin/hypencoder/rebuild-graph", None, Admin),
        ("GET", "/v1/admin/lm/memory/jobs", None, Admin),
        ("GET", "/v1/admin/tiers", None, Admin),
        (
            "POST",
            "/v1/admin/visual/memories",
            Some(r#"{"items": []}"#),
            Admin,
        ),
        ("DELETE", "/v1/admin/visual/memories/x", None, Admin),
        ("DELETE", "/v1/admin/visual/classes/x", None, Admin),
        ("POST", "/v1/admin/visual/prune", Some("{}"), Admin),
    ]
}

#[tokio::test]
async fn read_and_admin_tokens_are_separate_on_every_route() {
    let h = harness_with(|s| s.server.read_token = Some(READ.into())).await;
    let admin = format!("Bearer {TOKEN}");
    let read = format!("Bearer {READ}");
    for (method, uri, body, needs) in routes() {
        for (given, token) in [
            ("none", None),
            ("read", Some(read.as_str())),
            ("admin", Some(admin.as_str())),
            ("wrong", Some("Bearer not-a-token")),
        ] {
            let headers: Vec<(&str, &str)> =
                token.map(|t| ("authorization", t)).into_iter().collect();
            let (st, _, json) = raw(&h.app, method, uri, &headers, body.map(String::from)).await;
            let allowed = match needs {
                Needs::Nothing => true,
                Needs::Read => given == "read",
                Needs::Admin => given == "admin",
            };
            if allowed {
                assert!(
                    st != StatusCode::UNAUTHORIZED && st != StatusCode::FORBIDDEN,
                    "{method} {uri} with the {given} token: {st} {json}"
                );
            } else {
                assert_eq!(
                    st,
                    StatusCode::UNAUTHORIZED,
                    "{method} {uri} with the {given} token: {json}"
                );
                assert_eq!(json["error"]["code"], "unauthorized", "{method} {uri}");
            }
        }
    }
}

#[tokio::test]
async fn tokens_are_checked_before_the_body_is_parsed() {
    let h = harness_with(|s| s.server.read_token = Some(READ.into())).await;
    for uri in ["/v1/search", "/v1/admin/documents", "/v1/lm/score"] {
        let (st, _, json) = raw(&h.app, "POST", uri, &[], Some("{not json".into())).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{uri}: {json}");
    }
}

#[tokio::test]
async fn admin_routes_are_closed_without_an_admin_token() {
    let h = harness_with(|s| s.server.admin_token = None).await;
    for (method, uri, body, needs) in routes() {
        if needs != Needs::Admin {
            continue;
        }
        let auth = [("authorization", "Bearer anything")];
        let (st, _, json) = raw(&h.app, method, uri, &auth, body.map(String::from)).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{method} {uri}: {json}");
        assert_eq!(json["error"]["code"], "admin_disabled");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_with_retry_after_then_recovers() {
    let h = harness_with(|s| {
        s.admission.search.concurrency = 1;
        s.admission.search.queue = 1;
        s.admission.search.queue_timeout_ms = 1;
        s.admission.retry_after_s = 2;
    })
    .await;
    upsert_docs(&h.app).await;
    let body = r#"{"query": "heart attack blood flow", "k": 3}"#;
    let burst = (0..32).map(|_| {
        let app = h.app.clone();
        async move { raw(&app, "POST", "/v1/search", &[], Some(body.into())).await }
    });
    let answers = futures_join_all(burst).await;
    let ok = answers.iter().filter(|a| a.0 == StatusCode::OK).count();
    let shed: Vec<_> = answers
        .iter()
        .filter(|a| a.0 == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(ok >= 1, "some requests must be served");
    assert!(!shed.is_empty(), "32 at once against 1 slot must shed");
    assert_eq!(ok + shed.len(), 32, "only 200 or 503");
    for (_, headers, json) in &shed {
        assert_eq!(json["error"]["code"], "overloaded", "{json}");
        assert_eq!(headers.get("retry-after").unwrap(), "2");
    }
    // Nothing piled up: the next request is served at once.
    let (st, _, _) = raw(&h.app, "POST", "/v1/search", &[], Some(body.into())).await;
    assert_eq!(st, StatusCode::OK);
    let (_, _, _) = raw(&h.app, "GET", "/healthz", &[], None).await;
    let (st, _, _) = raw(&h.app, "GET", "/metrics", &[], None).await;
    assert_eq!(st, StatusCode::OK);
    let metrics = metrics_text(&h.app).await;
    let counted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("mnemos_shed_total{class=\"search\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(counted as usize, shed.len(), "{metrics}");
    assert!(metrics.contains("mnemos_admission{class=\"search\",what=\"queued\"} 0"));
}

async fn metrics_text(app: &axum::Router) -> String {
    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Runs the futures concurrently on the runtime (spawned, so the burst
/// really arrives at once on both worker threads).
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn every_body_route_refuses_an_oversized_body_with_413() {
    let h = harness_with(|s| {
        s.server.read_token = Some(READ.into());
        // An embeddings-only visual memory, so its routes read their bodies.
        s.visual.enabled = true;
        s.visual.encoder = false;
        s.visual.dim = 8;
    })
    .await;
    // The harness allows 64 KiB; one byte more, as a JSON string.
    let big = format!("\"{}\"", "x".repeat(64 * 1024));
    for (method, uri, _, needs) in routes() {
        // The graph rebuild takes no body, so it never reads one.
        if method != "POST" || uri == "/v1/admin/hypencoder/rebuild-graph" {
            continue;
        }
        let token = match needs {
            Needs::Admin => format!("Bearer {TOKEN}"),
            _ => format!("Bearer {READ}"),
        };
        let auth = [("authorization", token.as_str())];
        let (st, _, json) = raw(&h.app, method, uri, &auth, Some(big.clone())).await;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {json}");
        assert_eq!(json["error"]["code"], "payload_too_large", "{uri}");
    }
}
