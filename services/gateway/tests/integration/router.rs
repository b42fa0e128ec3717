//! The router driven in-process with `oneshot`, over a real engine (real
//! store, tantivy and HNSW files in a temp dir, and the real model when it
//! is installed).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mnemos_config::Loader;
use mnemos_engine::Engine;
use mnemos_gateway::{app, AppState};
use tower::ServiceExt;

use crate::common::{docs_json, hit_ids, hypencoder_dir, model_dir, TOKEN};

pub(crate) struct Harness {
    pub app: axum::Router,
    pub dense: bool,
    /// The hypencoder backend is on (dense model and trained hyperheads
    /// installed).
    pub hypencoder: bool,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// The temp dir the data directory was made in.
    pub fn root(&self) -> &std::path::Path {
        self._dir.path()
    }
}

pub(crate) async fn harness() -> Harness {
    harness_with(|_| {}).await
}

/// [`harness`] with settings changed by `edit` before the engine opens.
pub(crate) async fn harness_with(edit: impl FnOnce(&mut mnemos_config::Settings)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Loader::new().build().unwrap();
    s.server.data_dir = dir.path().to_path_buf();
    s.server.admin_token = Some(TOKEN.into());
    s.server.max_body_bytes = 64 * 1024;
    let dense = match model_dir() {
        Some(m) => {
            s.dense.model_dir = m;
            true
        }
        None => {
            s.dense.enabled = false;
            s.search.default_backends = vec!["bm25".into()];
            false
        }
    };
    s.visual.enabled = false;
    let hypencoder = match hypencoder_dir() {
        Some(d) if dense => {
            s.hypencoder.model_dir = d;
            true
        }
        _ => {
            s.hypencoder.enabled = false;
            false
        }
    };
    edit(&mut s);
    let state = Arc::new(AppState::new(&s));
    let (engine, _) = Engine::open(s).await.unwrap();
    state.set_engine(Arc::new(engine));
    state.mark_ready();
    Harness {
        app: app(state),
        dense,
        hypencoder,
        _dir: dir,
    }
}

/// Upserts [`DOCS`] with the admin token; panics unless it answers 200.
pub(crate) async fn upsert_docs(app: &axum::Router) {
    let body = Some(docs_json(DOCS).to_string());
    let (st, resp) = call(app, "POST", "/v1/admin/documents", Some(TOKEN), body).await;
    assert_eq!(st, StatusCode::OK, "{resp}");
}

pub(crate) async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b))
            .unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn search_body(query: &str, backends: &[&str]) -> String {
    serde_json::json!({"query": query, "k": 5, "backends": backends}).to_string()
}

pub(crate) const DOCS: &[(&str, &str, &str)] = &[
    (
        "heart",
        "Heart attack",
        "A heart attack happens when blood flow to the heart muscle is blocked.",
    ),
    (
        "mi",
        "Myocardial infarction",
        "Myocardial infarction is the death of cardiac tissue from ischemia.",
    ),
    (
        "tea",
        "Green tea",
        "Green tea is made from unoxidised leaves of the tea plant.",
    ),
];

#[tokio::test]
async fn upsert_search_remove_round_trip() {
    let h = harness().await;
    let (st, body) = call(
        &h.app,
        "POST",
        "/v1/admin/documents",
        Some(TOKEN),
        Some(docs_json(DOCS).to_string()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["upserted"], 3);
    let seq = body["seq"].as_u64().unwrap();

    let (st, body) = call(
        &h.app,
        "POST",
        "/v1/search",
        None,
        Some(search_body("heart attack blood flow", &["bm25"])),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let ids = hit_ids(&body);
    assert_eq!(ids[0], "heart");
    assert_eq!(body["hits"][0]["sources"]["bm25"]["rank"], 1);
    assert!(body["took_ms"].as_f64().is_some());

    if h.dense {
        let req = serde_json::json!({"query": "cardiac arrest of the heart muscle", "k": 3,
            "backends": ["bm25", "dense"], "fusion": {"method": "rrf", "k": 60}});
        let (st, body) = call(&h.app, "POST", "/v1/search", None, Some(req.to_string())).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let top2: Vec<String> = hit_ids(&body).into_iter().take(2).collect();
        assert!(
            top2.contains(&"mi".to_string()) && top2.contains(&"heart".to_string()),
            "{body}"
        );
        let req = serde_json::json!({"query": "tea leaves", "k": 3, "backends": ["bm25", "dense"],
            "fusion": {"method": "linear", "weights": {"bm25": 0.3, "dense": 0.7}}});
        let (st, body) = call(&h.app, "POST", "/v1/search", None, Some(req.to_string())).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(hit_ids(&body)[0], "tea");
        assert!(body["hits"][0]["sources"]["dense"]["rank"].is_u64());
    }

    let (st, body) = call(
        &h.app,
        "DELETE",
        "/v1/admin/documents/heart",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["removed"], true);
    assert!(body["seq"].as_u64().unwrap() > seq);
    let backends: &[&str] = if h.dense {
        &["bm25", "dense"]
    } else {
        &["bm25"]
    };
    for b in backends {
        let (_, body) = call(
            &h.app,
            "POST",
            "/v1/search",
            None,
            Some(search_body("heart attack", &[b])),
        )
        .await;
        assert!(
            !hit_ids(&body).contains(&"heart".to_string()),
            "{b}: {body}"
        );
    }
    let (st, body) = call(
        &h.app,
        "DELETE",
        "/v1/admin/documents/heart",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");

    let (st, body) = call(
        &h.app,
        "POST",
        "/v1/admin/documents/delete",
        Some(TOKEN),
        Some(r#"{"ids": ["tea", "nope"]}"#.into()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["removed"], 1);
    assert_eq!(body["not_found"][0], "nope");

    let (st, body) = call(&h.app, "GET", "/v1/stats", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["documents"], 1);
    assert_eq!(body["backends"]["bm25"], 1);
}

#[tokio::test]
async fn upsert_replaces_and_reads_back() {
    let h = harness().await;
    let one = |text: &str| docs_json(&[("d1", "Title", text)]).to_string();
    call(
        &h.app,
        "POST",
        "/v1/admin/documents",
        Some(TOKEN),
        Some(one("zebras graze")),
    )
    .await;
    call(
        &h.app,
        "POST",
        "/v1/admin/documents",
        Some(TOKEN),
        Some(one("penguins swim")),
    )
    .await;
    let (_, body) = call(
        &h.app,
        "POST",
        "/v1/search",
        None,
        Some(search_body("zebras", &["bm25"])),
    )
    .await;
    assert!(hit_ids(&body).is_empty(), "{body}");
    let (_, body) = call(
        &h.app,
        "POST",
        "/v1/search",
        None,
        Some(search_body("penguins", &["bm25"])),
    )
    .await;
    assert_eq!(hit_ids(&body), vec!["d1"]);
    let (st, body) = call(&h.app, "GET", "/v1/admin/documents/d1", Some(TOKEN), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["text"], "penguins swim");
}

/// method, uri, token, body, expected status, expected error code.
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<String>,
    u16,
    &'static str,
);

#[tokio::test]
async fn bad_input_gets_json_errors() {
    let h = harness().await;
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/search",
            None,
            Some("{not json".into()),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/search",
            None,
            Some(r#"{"query": ""}"#.into()),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/search",
            None,
            Some(r#"{"query": "   "}"#.into()),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/search",
            None,
            Some(r#"{"query": "x", "k": 0}"#.into()),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/search",
            None,
            Some(r#"{"query": "x", "k": 1001}"#.into()),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/search",
            None,
            Some(r#"{"query": "x", "k": -3}"#.into()),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/search",
            None,
            Some(r#"{"query": "x", "backends": ["splade"]}"#.into()),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/search",
            None,
            Some(r#"{"query": "x", "backends": []}"#.into()),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/search",
            None,
            Some(r#"{"query": "x", "fusion": {"method": "magic"}}"#.into()),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/search",
            None,
            Some(
                r#"{"query": "x", "fusion": {"method": "linear", "weights": {"bm25": -1}}}"#.into(),
            ),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/search",
            None,
            Some(format!(r#"{{"query": "{}"}}"#, "a".repeat(70_000))),
            413,
            "payload_too_large",
        ),
        (
            "POST",
            "/v1/admin/documents",
            None,
            Some(docs_json(DOCS).to_string()),
            401,
            "unauthorized",
        ),
        (
            "POST",
            "/v1/admin/documents",
            Some("wrong-token"),
            Some(docs_json(DOCS).to_string()),
            401,
            "unauthorized",
        ),
        (
            "POST",
            "/v1/admin/documents",
            Some(TOKEN),
            Some(r#"{"documents": []}"#.into()),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/admin/documents",
            Some(TOKEN),
            Some(docs_json(&[("", "t", "x")]).to_string()),
            400,
            "invalid_argument",
        ),
        ("GET", "/v1/nothing", None, None, 404, "not_found"),
        ("GET", "/v1/search", None, None, 405, "method_not_allowed"),
    ];
    for (method, uri, token, body, status, code) in cases {
        let shown = body
            .as_deref()
            .map(|b| b.chars().take(80).collect::<String>());
        let (st, json) = call(&h.app, method, uri, token, body).await;
        assert_eq!(st.as_u16(), status, "{method} {uri} {shown:?}: {json}");
        assert_eq!(
            json["error"]["code"], code,
            "{method} {uri} {shown:?}: {json}"
        );
        assert!(json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // Nothing bad was stored.
    let (_, body) = call(&h.app, "GET", "/v1/stats", None, None).await;
    assert_eq!(body["documents"], 0);
}

#[tokio::test]
async fn admin_disabled_without_token_and_metrics_and_openapi() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Loader::new().build().unwrap();
    s.server.data_dir = dir.path().to_path_buf();
    s.dense.enabled = false;
    s.visual.enabled = false;
    s.search.default_backends = vec!["bm25".into()];
    let state = Arc::new(AppState::new(&s));
    let app = app(Arc::clone(&state));
    let (st, _) = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (st, _) = call(
        &app,
        "POST",
        "/v1/search",
        None,
        Some(search_body("x", &["bm25"])),
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);

    let (engine, _) = Engine::open(s).await.unwrap();
    state.set_engine(Arc::new(engine));
    state.mark_ready();
    let (st, _) = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = call(
        &app,
        "POST",
        "/v1/admin/documents",
        Some(TOKEN),
        Some(docs_json(DOCS).to_string()),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "admin_disabled");

    call(
        &app,
        "POST",
        "/v1/search",
        None,
        Some(search_body("x", &["bm25"])),
    )
    .await;
    let resp = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("mnemos_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/v1/search\""), "{text}");
    assert!(text.contains("mnemos_search_duration_seconds"), "{text}");
    assert!(text.contains("index_entries_bm25"), "{text}");

    let (st, body) = call(&app, "GET", "/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body["paths"]["/v1/search"]["post"].is_object(), "{body}");
    assert!(body["components"]["schemas"]["SearchRequest"].is_object());
}
