//! `/v1/visual/*` and `/v1/admin/visual/*` through the router, over a real
//! visual memory (write-ahead log in a temp dir) and, when installed, the
//! real EfficientNet-Lite0 encoder.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use mnemos_config::Loader;
use mnemos_engine::Engine;
use mnemos_gateway::{app, AppState};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::common::{vision_dir, TOKEN};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/vision/tests/fixtures"
);

struct Harness {
    app: axum::Router,
    _dir: tempfile::TempDir,
}

/// An embeddings-only memory of `dim` dimensions, or (`dim` = None) one
/// with the image encoder; `None` when that model is not installed.
async fn harness(dim: Option<usize>) -> Option<Harness> {
    harness_with(dim, None).await
}

/// [`harness`] with `visual.ann_above` set.
async fn harness_with(dim: Option<usize>, ann_above: Option<usize>) -> Option<Harness> {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Loader::new().build().unwrap();
    s.server.data_dir = dir.path().to_path_buf();
    s.server.admin_token = Some(TOKEN.into());
    s.server.max_body_bytes = 256 * 1024;
    s.dense.enabled = false;
    s.search.default_backends = vec!["bm25".into()];
    match dim {
        Some(d) => {
            s.visual.encoder = false;
            s.visual.dim = d;
        }
        None => s.visual.model_dir = vision_dir()?,
    }
    if let Some(n) = ann_above {
        s.visual.ann_above = n;
    }
    let state = Arc::new(AppState::new(&s));
    let (engine, _) = Engine::open(s).await.unwrap();
    state.set_engine(Arc::new(engine));
    state.mark_ready();
    Some(Harness {
        app: app(state),
        _dir: dir,
    })
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json)
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"));
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        self.send(req.unwrap()).await
    }

    /// Stores `items`, which must succeed; returns the answer.
    async fn upsert(&self, items: Vec<Value>) -> Value {
        let body = Some(json!({"items": items}));
        let (st, body) = self.call("POST", "/v1/admin/visual/memories", body).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        body
    }

    async fn classify(&self, body: Value) -> (StatusCode, Value) {
        self.call("POST", "/v1/visual/classify", Some(body)).await
    }

    async fn total(&self) -> u64 {
        let (_, stats) = self.call("GET", "/v1/stats", None).await;
        stats["visual"]["items"].as_u64().unwrap()
    }
}

fn axis(i: usize, dim: usize, jitter: f32) -> Vec<f32> {
    let mut v = vec![jitter; dim];
    v[i] = 1.0;
    v
}

/// 3 classes × 5 samples on the first three axes of a 4-d space.
async fn seeded() -> Harness {
    let h = harness(Some(4)).await.unwrap();
    let items: Vec<Value> = (0..3)
        .flat_map(|c| {
            (0..5).map(move |i| {
                json!({"id": format!("{c}-{i}"), "label": format!("L{c}"),
                       "embedding": axis(c, 4, 0.02 * i as f32), "metadata": {"i": i}})
            })
        })
        .collect();
    let body = h.upsert(items).await;
    assert_eq!(body["total"], 15);
    h
}

fn neighbor_ids(resp: &Value) -> Vec<String> {
    resp["neighbors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn classify_explains_its_decision() {
    let h = seeded().await;
    let (st, resp) = h
        .classify(json!({"embedding": axis(1, 4, 0.1), "k": 7}))
        .await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert_eq!(resp["label"], "L1");
    assert_eq!(resp["aggregation"], "rank_voting");
    let neighbors = resp["neighbors"].as_array().unwrap();
    assert_eq!(neighbors.len(), 7);
    // RankVoting: weight 1/(rank + 2), nearest first.
    for (rank, n) in neighbors.iter().enumerate() {
        let w = n["weight"].as_f64().unwrap();
        assert!((w - 1.0 / (rank as f64 + 2.0)).abs() < 1e-6, "{resp}");
    }
    let d: Vec<f64> = neighbors
        .iter()
        .map(|n| n["distance"].as_f64().unwrap())
        .collect();
    assert!(d.windows(2).all(|w| w[0] <= w[1]), "{d:?}");
    let l1: f64 = neighbors
        .iter()
        .filter(|n| n["label"] == "L1")
        .map(|n| n["weight"].as_f64().unwrap())
        .sum();
    assert!(
        (resp["scores"]["L1"].as_f64().unwrap() - l1).abs() < 1e-5,
        "{resp}"
    );

    for agg in ["plurality", "distance", "softmax", "rank_voting"] {
        let (st, resp) = h
            .classify(json!({"embedding": axis(2, 4, 0.0), "k": 5, "aggregation": agg}))
            .await;
        assert_eq!(
            (st, &resp["label"]),
            (StatusCode::OK, &json!("L2")),
            "{agg}: {resp}"
        );
    }
}

#[tokio::test]
async fn unlearning_is_immediate_and_total() {
    let h = seeded().await;
    let (st, body) = h
        .call("DELETE", "/v1/admin/visual/memories/1-0", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 14);
    let (_, resp) = h
        .classify(json!({"embedding": axis(1, 4, 0.0), "k": 15}))
        .await;
    assert!(!neighbor_ids(&resp).contains(&"1-0".to_string()), "{resp}");
    let (st, _) = h
        .call("DELETE", "/v1/admin/visual/memories/1-0", None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (st, body) = h.call("DELETE", "/v1/admin/visual/classes/L1", None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["removed"].as_array().unwrap().len(), 4);
    let (_, resp) = h
        .classify(json!({"embedding": axis(1, 4, 0.0), "k": 50}))
        .await;
    assert_ne!(resp["label"], "L1", "{resp}");
    assert!(resp["neighbors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["label"] != "L1"));
    assert!(resp["scores"].get("L1").is_none(), "{resp}");
    let (st, _) = h.call("DELETE", "/v1/admin/visual/classes/L1", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A new class needs no training: one sample and it wins near itself.
    let item = json!({"items": [{"id": "new", "label": "L9", "embedding": axis(3, 4, 0.0)}]});
    let (st, _) = h
        .call("POST", "/v1/admin/visual/memories", Some(item))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, resp) = h
        .classify(json!({"embedding": axis(3, 4, 0.01), "k": 1}))
        .await;
    assert_eq!(resp["label"], "L9", "{resp}");
}

/// Past `visual.ann_above` the graph is built off the write lock: the
/// upsert that crosses the threshold returns without building it,
/// searches stay exact and correct until the switch, and an edit made
/// meanwhile is kept after it.
#[tokio::test]
async fn the_graph_is_built_in_the_background_past_the_threshold() {
    let h = harness_with(Some(8), Some(40)).await.unwrap();
    let items: Vec<Value> = (0..60)
        .map(|i| {
            json!({"id": format!("g{i}"), "label": format!("L{}", i % 8),
                   "embedding": axis(i % 8, 8, 0.001 * i as f32)})
        })
        .collect();
    h.upsert(items).await;
    let (st, _) = h.call("DELETE", "/v1/admin/visual/memories/g7", None).await;
    assert_eq!(st, StatusCode::OK);
    let near_g7 = json!({"embedding": axis(7, 8, 0.007), "k": 20});
    let (_, resp) = h.classify(near_g7.clone()).await;
    assert!(!neighbor_ids(&resp).contains(&"g7".to_string()), "{resp}");
    assert_eq!(resp["label"], "L7", "{resp}");
    let search = || async {
        let (_, stats) = h.call("GET", "/v1/stats", None).await;
        stats["visual"]["search"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while search().await != "hnsw" {
        assert!(
            std::time::Instant::now() < deadline,
            "the graph never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, resp) = h.classify(near_g7).await;
    assert!(!neighbor_ids(&resp).contains(&"g7".to_string()), "{resp}");
    assert_eq!(resp["label"], "L7", "{resp}");
    assert_eq!(h.total().await, 59);
}

#[tokio::test]
async fn pruning_reports_what_it_did() {
    let h = seeded().await;
    // A mislabelled sample in the middle of class L0.
    let bad = json!({"items": [{"id": "liar", "label": "L2", "embedding": axis(0, 4, 0.03)}]});
    h.call("POST", "/v1/admin/visual/memories", Some(bad)).await;
    let (st, report) = h
        .call(
            "POST",
            "/v1/admin/visual/prune",
            Some(json!({"mode": "soft", "k": 3})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{report}");
    assert_eq!(report["examined"], 16);
    let down = report["downweighted"].as_array().unwrap();
    assert!(down.iter().any(|d| d["id"] == "liar"), "{report}");
    // SPECS §3: every item is reweighted; clean ones to 1.75.
    assert_eq!(report["reweighted"], 16, "{report}");
    assert!(down.len() < 16, "{report}");
    assert_eq!(report["total"], 16);

    let (st, report) = h
        .call(
            "POST",
            "/v1/admin/visual/prune",
            Some(json!({"mode": "hard", "k": 3, "threshold": 2})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{report}");
    let removed = report["removed"].as_array().unwrap();
    assert!(
        removed
            .iter()
            .any(|r| r["id"] == "liar" && r["label"] == "L2"),
        "{report}"
    );
    assert_eq!(report["total"], 16 - removed.len() as u64);
    let (_, resp) = h
        .classify(json!({"embedding": axis(0, 4, 0.03), "k": 20}))
        .await;
    assert!(!neighbor_ids(&resp).contains(&"liar".to_string()), "{resp}");

    for bad in [
        json!({"mode": "medium"}),
        json!({"mode": "hard", "k": 0}),
        json!({"mode": "soft", "threshold": 2}),
    ] {
        let (st, body) = h.call("POST", "/v1/admin/visual/prune", Some(bad)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    }
}

#[tokio::test]
async fn bad_input_is_a_4xx_and_changes_nothing() {
    let h = seeded().await;
    let cases = [
        json!({"embedding": [1.0, 0.0]}),
        json!({"embedding": [0.0, 0.0, 0.0, 0.0]}),
        json!({"embedding": axis(0, 4, 0.0), "aggregation": "majority"}),
        json!({"embedding": axis(0, 4, 0.0), "k": 0}),
        json!({"embedding": axis(0, 4, 0.0), "k": 5000}),
        json!({"embedding": axis(0, 4, 0.0), "ef": 0}),
        json!({"embedding": axis(0, 4, 0.0), "image": "AAAA"}),
        json!({}),
        json!({"embedding": axis(0, 4, 0.0), "colour": "red"}),
        json!({"image": "iVBORw0KGgo="}),
    ];
    for body in cases {
        let (st, resp) = h.classify(body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body} -> {resp}");
        assert!(
            resp["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{resp}"
        );
    }
    // NaN is not JSON: the body is refused as malformed.
    let req = Request::builder()
        .method("POST")
        .uri("/v1/visual/classify")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"embedding": [NaN, 1, 0, 0]}"#))
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::BAD_REQUEST);

    // One bad item rejects the whole batch.
    let batches = [
        json!({"items": [{"id": "ok", "label": "L0", "embedding": axis(0, 4, 0.0)},
                         {"id": "bad", "label": "L0", "embedding": [1.0, 2.0]}]}),
        json!({"items": [{"id": "ok", "label": "L0", "embedding": axis(0, 4, 0.0)},
                         {"id": "", "label": "L0", "embedding": axis(0, 4, 0.0)}]}),
        json!({"items": [{"id": "ok", "label": "", "embedding": axis(0, 4, 0.0)}]}),
        json!({"items": [{"id": "ok", "label": "L0", "embedding": [1e39, 0, 0, 0]}]}),
        json!({"items": [{"id": "ok", "label": "L0"}]}),
    ];
    for body in batches {
        let (st, resp) = h
            .call("POST", "/v1/admin/visual/memories", Some(body.clone()))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body} -> {resp}");
    }
    assert_eq!(h.total().await, 15);

    // Oversize body: 413 with a JSON error.
    let big = json!({"embedding": vec![0.5f32; 80_000]});
    let (st, resp) = h.classify(big).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{resp}");
    assert_eq!(resp["error"]["code"], "payload_too_large");

    // Admin routes need the token.
    let req = Request::builder()
        .method("DELETE")
        .uri("/v1/admin/visual/classes/L0")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(h.total().await, 15);
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn multipart(parts: &[(&str, &[u8])]) -> Request<Body> {
    let boundary = "mnemos-test-boundary";
    let mut body = Vec::new();
    for (name, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if *name == "image" {
            body.extend_from_slice(
                b"Content-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\
                  Content-Type: image/png\r\n\r\n",
            );
        } else {
            body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Request::builder()
        .method("POST")
        .uri("/v1/visual/classify")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn images_are_embedded_stored_and_classified() {
    let Some(h) = harness(None).await else { return };
    let honeycomb = fixture("honeycomb.png");
    let screen = fixture("window_screen.png");
    let spiral = fixture("spiral.png");
    let items = json!({"items": [
        {"id": "h", "label": "honeycomb", "image": b64(&honeycomb)},
        {"id": "w", "label": "screen", "image": b64(&screen)},
        {"id": "s", "label": "spiral", "image": b64(&spiral)},
    ]});
    let (st, body) = h
        .call("POST", "/v1/admin/visual/memories", Some(items))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // The same image comes back as its own nearest neighbour (distance ~0).
    let (st, resp) = h.classify(json!({"image": b64(&screen), "k": 3})).await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert_eq!(resp["label"], "screen");
    assert!(
        resp["neighbors"][0]["distance"].as_f64().unwrap() < 1e-3,
        "{resp}"
    );

    // MIME-wrapped base64 (line breaks every 76 characters) is fine.
    let wrapped: String = b64(&screen)
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n");
    let (st, resp) = h.classify(json!({"image": wrapped, "k": 1})).await;
    assert_eq!(
        (st, &resp["label"]),
        (StatusCode::OK, &json!("screen")),
        "{resp}"
    );

    // Multipart upload, with options as text parts.
    let (st, resp) = h
        .send(multipart(&[
            ("image", &honeycomb),
            ("k", b"1"),
            ("aggregation", b"plurality"),
        ]))
        .await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert_eq!(
        (&resp["label"], &resp["k"]),
        (&json!("honeycomb"), &json!(1))
    );

    // Undecodable, empty, truncated images and unknown parts are 400s.
    let mut truncated = spiral.clone();
    truncated.truncate(spiral.len() / 3);
    for body in [
        json!({"image": b64(b"definitely not an image")}),
        json!({"image": ""}),
        json!({"image": b64(&truncated)}),
        json!({"image": "%%%not base64%%%"}),
    ] {
        let (st, resp) = h.classify(body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{resp}");
    }
    for req in [
        multipart(&[("image", b"garbage")]),
        multipart(&[("image", b"")]),
        multipart(&[("photo", &honeycomb)]),
        multipart(&[("image", &honeycomb), ("k", b"many")]),
    ] {
        let (st, resp) = h.send(req).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{resp}");
    }
    // A bad image in a batch stores nothing, and names the item.
    let items = json!({"items": [
        {"id": "h2", "label": "honeycomb", "image": b64(&honeycomb)},
        {"id": "x", "label": "junk", "image": b64(b"junk")},
    ]});
    let (st, resp) = h
        .call("POST", "/v1/admin/visual/memories", Some(items))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{resp}");
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap()
            .contains("items[1]"),
        "{resp}"
    );
    assert_eq!(h.total().await, 3);

    // Oversize upload: 413.
    let (st, _) = h
        .send(multipart(&[("image", &vec![7u8; 300 * 1024])]))
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
}
