//! Hostile input, property-based (proptest): every route driven through
//! `app()` over a real engine (BM25, dense, Hypencoder, visual memory with
//! its image model, the committed language models) with random and
//! adversarial bodies, headers and paths. The property: no panic, no 5xx,
//! every refusal a JSON error naming the problem, and no request makes a
//! file outside the data directory's own layout.
//!
//! `MNEMOS_FUZZ_CASES` sets the cases per route (default 200; the figures
//! in RELIABILITY.md use 1,000).

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::common::{vision_dir, TOKEN};
use crate::router::harness_with;

/// A route: method, path (`{id}` is replaced by a generated id) and a
/// valid body that mutations start from.
struct Route {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
}

fn routes(dim: usize) -> Vec<Route> {
    let r = |method, path, body| Route { method, path, body };
    let embedding: Vec<f32> = (0..dim).map(|i| ((i % 7) as f32 - 3.0) / 10.0).collect();
    let png = base64::engine::general_purpose::STANDARD.encode(demo_png());
    vec![
        r(
            "POST",
            "/v1/search",
            Some(json!({"query": "heart attack", "k": 5,
            "backends": ["bm25", "dense", "hypencoder"],
            "fusion": {"method": "linear", "weights": {"bm25": 0.3, "dense": 0.7}}})),
        ),
        r(
            "POST",
            "/v1/admin/documents",
            Some(json!({"documents": [
            {"id": "{id}", "title": "Fuzz", "text": "a document under fuzzing", "metadata": {"k": [1, 2]}}]})),
        ),
        r(
            "POST",
            "/v1/admin/documents/delete",
            Some(json!({"ids": ["{id}", "x"]})),
        ),
        r("GET", "/v1/admin/documents/{id}", None),
        r("DELETE", "/v1/admin/documents/{id}", None),
        r(
            "POST",
            "/v1/admin/hypencoder/rebuild-graph",
            Some(json!({})),
        ),
        r("GET", "/v1/lm/models", None),
        r(
            "POST",
            "/v1/lm/generate",
            Some(json!({"model": "tiny-2l", "prompt": "The river",
            "max_tokens": 2, "temperature": 0.7, "top_p": 0.9, "seed": 3})),
        ),
        r(
            "POST",
            "/v1/lm/score",
            Some(json!({"model": "tiny-2l-pkm", "text": "The river runs"})),
        ),
        r("GET", "/v1/admin/lm/memory/jobs", None),
        r("GET", "/v1/admin/tiers", None),
        r(
            "POST",
            "/v1/visual/classify",
            Some(json!({"image": png, "k": 3, "aggregation": "softmax"})),
        ),
        r(
            "POST",
            "/v1/visual/classify",
            Some(json!({"embedding": embedding, "k": 3})),
        ),
        r(
            "POST",
            "/v1/admin/visual/memories",
            Some(json!({"items": [
            {"id": "{id}", "label": "fuzz", "embedding": embedding, "metadata": {"s": 1}}]})),
        ),
        r("DELETE", "/v1/admin/visual/memories/{id}", None),
        r("DELETE", "/v1/admin/visual/classes/{id}", None),
        r(
            "POST",
            "/v1/admin/visual/prune",
            Some(json!({"mode": "hard", "k": 3})),
        ),
        r("GET", "/healthz", None),
        r("GET", "/readyz", None),
        r("GET", "/metrics", None),
        r("GET", "/openapi.json", None),
        r("GET", "/v1/stats", None),
        r("POST", "/{id}", Some(json!({}))),
    ]
}

fn demo_png() -> Vec<u8> {
    include_bytes!("../../../../config/demo/visual/spiral.png").to_vec()
}

/// The demo PNG with its header claiming `side` × `side` pixels (its CRC
/// fixed, so only the size check can refuse it): a decompression bomb in
/// all but the payload.
fn huge_png(side: u32) -> Vec<u8> {
    let mut png = demo_png();
    // Signature (8), then the IHDR chunk: length (4), type (4), data (13), CRC.
    png[16..20].copy_from_slice(&side.to_be_bytes());
    png[20..24].copy_from_slice(&side.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// Ids that must never become paths, and other odd ones.
fn hostile_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just("../../etc/passwd".to_string()),
        Just("a%2Fb".to_string()),
        Just("%2E%2E%2F%2E%2E%2Fescape".to_string()),
        Just("nul%00byte".to_string()),
        Just("%FF%FE".to_string()),
        Just("sp%20ace".to_string()),
        Just("%C3%A9t%C3%A9".to_string()),
        "[a-z0-9]{1,12}",
        (1usize..12_000).prop_map(|n| "x".repeat(n)),
        "[A-Za-z0-9._~-]{0,40}",
    ]
}

/// A random JSON value, nested up to a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN/inf", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// How a valid body is spoiled.
#[derive(Debug, Clone)]
enum Spoil {
    Keep,
    /// Replace the value at a path (object keys / array indices, chosen by
    /// number) with a random value.
    Replace(Vec<usize>, Value),
    /// Replace with raw JSON text the typed model cannot hold.
    RawNumber(Vec<usize>, &'static str),
    Remove(Vec<usize>),
    Whole(Value),
    Nested(usize),
    Bytes(Vec<u8>),
    Truncate(usize),
    LongString(Vec<usize>, usize),
    Image(u8),
}

fn spoil() -> impl Strategy<Value = Spoil> {
    let path = prop::collection::vec(0usize..8, 1..4);
    prop_oneof![
        2 => Just(Spoil::Keep),
        4 => (path.clone(), any_json()).prop_map(|(p, v)| Spoil::Replace(p, v)),
        2 => (path.clone(), prop_oneof![
            Just("1e999"), Just("-1e999"), Just("NaN"), Just("Infinity"), Just("-1"),
            Just("18446744073709551616"), Just("1.5"), Just("-0"), Just("99999999999999999999999")
        ]).prop_map(|(p, n)| Spoil::RawNumber(p, n)),
        2 => path.clone().prop_map(Spoil::Remove),
        2 => any_json().prop_map(Spoil::Whole),
        1 => (1usize..20_000).prop_map(Spoil::Nested),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Spoil::Bytes),
        1 => (0usize..400).prop_map(Spoil::Truncate),
        1 => (path, 1usize..20_000).prop_map(|(p, n)| Spoil::LongString(p, n)),
        1 => (0u8..4).prop_map(Spoil::Image),
    ]
}

/// Walks `path` (each step picks among the keys or items present, by
/// number) down to a value; stops early at a leaf.
fn pick<'a>(v: &'a mut Value, path: &[usize]) -> &'a mut Value {
    let Some((&step, rest)) = path.split_first() else {
        return v;
    };
    let len = match &*v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    if len == 0 {
        return v;
    }
    match v {
        Value::Object(m) => {
            let key = m.keys().nth(step % len).unwrap().clone();
            pick(m.get_mut(&key).unwrap(), rest)
        }
        Value::Array(a) => pick(&mut a[step % len], rest),
        _ => unreachable!("only containers have a length"),
    }
}

const MARK: &str = "@@MARK@@";

fn body_bytes(template: &Value, id: &str, how: &Spoil) -> Vec<u8> {
    let mut v = template.clone();
    // The id is placed as a JSON string, percent-decoding not applied.
    let text = v.to_string().replace("{id}", &id.replace('"', "'"));
    v = serde_json::from_str(&text).unwrap_or(v);
    match how {
        Spoil::Keep => {}
        Spoil::Replace(p, new) => *pick(&mut v, p) = new.clone(),
        Spoil::RawNumber(p, n) => {
            *pick(&mut v, p) = Value::String(MARK.into());
            return v
                .to_string()
                .replace(&format!("\"{MARK}\""), n)
                .into_bytes();
        }
        Spoil::Remove(p) => {
            if let (Some(last), parent) = (p.last(), &p[..p.len() - 1]) {
                match pick(&mut v, parent) {
                    Value::Object(m) if !m.is_empty() => {
                        let key = m.keys().nth(last % m.len()).unwrap().clone();
                        m.remove(&key);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        let n = a.len();
                        a.remove(last % n);
                    }
                    _ => {}
                }
            }
        }
        Spoil::Whole(new) => v = new.clone(),
        Spoil::Nested(depth) => {
            return format!("{}{}", "[".repeat(*depth), "]".repeat(*depth)).into_bytes()
        }
        Spoil::Bytes(b) => return b.clone(),
        Spoil::Truncate(n) => {
            let s = v.to_string().into_bytes();
            return s[..(*n).min(s.len())].to_vec();
        }
        Spoil::LongString(p, n) => *pick(&mut v, p) = Value::String("é".repeat(*n)),
        Spoil::Image(kind) => {
            let bytes = match kind {
                0 => huge_png(60_000),
                1 => huge_png(1 << 31),
                2 => demo_png()[..100].to_vec(),
                _ => b"GIF89a not really".to_vec(),
            };
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            if let Value::Object(m) = &mut v {
                m.insert("image".into(), Value::String(b64.clone()));
                m.remove("embedding");
            }
            if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
                for item in items {
                    item["image"] = Value::String(b64.clone());
                    if let Some(o) = item.as_object_mut() {
                        o.remove("embedding");
                    }
                }
            }
        }
    }
    v.to_string().into_bytes()
}

fn headers() -> impl Strategy<Value = (Option<&'static str>, Option<String>)> {
    let content_type = prop_oneof![
        6 => Just(Some("application/json")),
        1 => Just(None),
        1 => Just(Some("text/plain")),
        1 => Just(Some("multipart/form-data; boundary=zz")),
        1 => Just(Some("application/json; charset=latin1")),
    ];
    let auth = prop_oneof![
        6 => Just(Some(format!("Bearer {TOKEN}"))),
        1 => Just(None),
        1 => "[ -~]{0,60}".prop_map(Some),
        1 => Just(Some(format!("Bearer {TOKEN}{TOKEN}"))),
    ];
    (content_type, auth)
}

#[test]
fn hostile_input_on_every_route_never_panics_or_5xx() {
    let cases: u32 = std::env::var("MNEMOS_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let vision = vision_dir();
    let h = rt.block_on(harness_with(|s| {
        // A data directory one level down, so anything a request might
        // write beside it shows in the temp dir.
        s.server.data_dir = s.server.data_dir.join("data");
        s.visual.enabled = true;
        match &vision {
            Some(dir) => s.visual.model_dir = dir.clone(),
            None => {
                s.visual.encoder = false;
                s.visual.dim = 16;
            }
        }
        s.lm.enabled = true;
        s.lm.models_dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/trained/lm");
        s.lm.anchor_dir = s.server.data_dir.join("no-anchor");
        s.lm.max_tokens = 4;
        s.server.max_body_bytes = 256 * 1024;
    }));
    let data_dir = h.root().join("data");
    let before = layout(&data_dir);
    let dim = if vision.is_some() { 1280 } else { 16 };
    let tally: Mutex<BTreeMap<String, BTreeMap<u16, u32>>> = Mutex::default();
    for route in routes(dim) {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = (hostile_id(), spoil(), headers());
        let by_image = route
            .body
            .as_ref()
            .is_some_and(|b| b.get("image").is_some());
        let label = format!(
            "{} {}{}",
            route.method,
            route.path,
            if by_image { " (image)" } else { "" }
        );
        let result = runner.run(&strategy, |(id, how, (ctype, auth))| {
            let uri = route.path.replace("{id}", &id);
            let mut req = Request::builder().method(route.method).uri(&uri);
            if let Some(c) = ctype {
                req = req.header("content-type", c);
            }
            if let Some(a) = &auth {
                req = req.header("authorization", a.as_str());
            }
            let body = route
                .body
                .as_ref()
                .map(|t| body_bytes(t, &id, &how))
                .unwrap_or_default();
            let Ok(req) = req.body(Body::from(body)) else {
                return Ok(()); // not a request a client can send
            };
            let (status, bytes) = rt.block_on(async {
                let resp = h.app.clone().oneshot(req).await.unwrap();
                let status = resp.status().as_u16();
                let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .unwrap();
                (status, bytes)
            });
            *tally
                .lock()
                .unwrap()
                .entry(label.clone())
                .or_default()
                .entry(status)
                .or_default() += 1;
            let text = String::from_utf8_lossy(&bytes);
            prop_assert!(status < 500, "{uri} {how:?}: {status} {text}");
            if status >= 400 {
                let json: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    TestCaseError::fail(format!("{uri}: {status} not JSON: {e}: {text}"))
                })?;
                prop_assert!(json["error"]["code"].is_string(), "{uri}: {text}");
                prop_assert!(json["error"]["message"].is_string(), "{uri}: {text}");
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{label}: {e}");
        }
    }
    assert_eq!(
        layout(h.root()),
        vec!["data/".to_string()],
        "beside the data dir"
    );
    let after = layout(&data_dir);
    let new: Vec<_> = after.iter().filter(|p| !before.contains(*p)).collect();
    assert!(
        new.iter().all(|p| expected_new(p)),
        "requests created unexpected paths: {new:?}"
    );
    let tally = tally.into_inner().unwrap();
    let total: u32 = tally.values().flat_map(|m| m.values()).sum();
    for (route, statuses) in &tally {
        eprintln!("fuzz {route}: {statuses:?}");
    }
    eprintln!(
        "fuzz: {} routes, {cases} cases each, {total} requests, 0 panics, 0 5xx",
        tally.len()
    );
}

/// The entries of `dir` (directories end in `/`).
fn layout(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if e.path().is_dir() {
            out.push(format!("{name}/"));
        } else {
            out.push(name);
        }
    }
    out
}

/// Top-level entries writes may create (the store's log and snapshots,
/// index directories); anything else came from a request.
fn expected_new(p: &str) -> bool {
    [
        "store/",
        "bm25/",
        "dense/",
        "hypencoder/",
        "visual/",
        "memory-bank/",
        "pkm-pages/",
    ]
    .iter()
    .any(|k| p.starts_with(k))
}
