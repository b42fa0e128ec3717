//! `/v1/lm/*` through the router, over real (small, untrained) models and
//! a real byte-level BPE tokenizer written to disk in the hub layout.

use std::sync::Arc;

use axum::http::StatusCode;
use candle_core::DType;
use mnemos_config::Loader;
use mnemos_engine::Engine;
use mnemos_gateway::{app, AppState};
use mnemos_lm::{Lm, LmConfig, LmTokenizer, MemoryConfig, TOKENIZER_FILE};
use serde_json::json;

use crate::router::call;

const TEXT: &str = "The memory layer stores values. The keys select the values. \
    A product key splits the query in two halves. Each half picks its best keys.";

/// Two models: a plain one and one with a product-key memory.
fn write_models(dir: &std::path::Path) -> Vec<(String, usize)> {
    let tokenizer = LmTokenizer::train_from_texts([TEXT; 4].iter(), 300).expect("tokenizer");
    let base = LmConfig {
        vocab_size: 300,
        dim: 32,
        layers: 2,
        heads: 2,
        ffn_hidden: 64,
        max_seq_len: 64,
        ..LmConfig::default()
    };
    let pkm = LmConfig {
        memory: Some(MemoryConfig {
            layers: vec![1],
            n_keys: 16,
            k: 4,
            heads: 2,
            key_dim: 16,
            ..MemoryConfig::default()
        }),
        ..base.clone()
    };
    let mut out = Vec::new();
    for (name, cfg) in [("tiny-a", base), ("tiny-pkm", pkm)] {
        let path = dir.join(name);
        let model = Lm::new(cfg, 7).expect("model");
        model.save(&path, DType::F32).expect("save");
        tokenizer
            .save(&path.join(TOKENIZER_FILE))
            .expect("save tokenizer");
        out.push((name.to_string(), model.num_parameters()));
    }
    out
}

/// The two trained models, and the anchor from `anchor` if given.
async fn start(
    anchor: Option<std::path::PathBuf>,
) -> (axum::Router, Vec<(String, usize)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let models = write_models(&dir.path().join("lm"));
    let mut s = Loader::new().build().unwrap();
    s.server.data_dir = dir.path().join("data");
    s.dense.enabled = false;
    s.hypencoder.enabled = false;
    s.visual.enabled = false;
    s.search.default_backends = vec!["bm25".into()];
    s.lm.models_dir = dir.path().join("lm");
    s.lm.anchor_dir = anchor.unwrap_or_else(|| dir.path().join("no-anchor"));
    s.lm.max_tokens = 32;
    (serve(s).await, models, dir)
}

/// The router over an engine opened with `s`.
pub(crate) async fn serve(s: mnemos_config::Settings) -> axum::Router {
    let state = Arc::new(AppState::new(&s));
    let (engine, _) = Engine::open(s).await.unwrap();
    state.set_engine(Arc::new(engine));
    state.mark_ready();
    app(state)
}

/// The trained models only: the anchor has tests of its own below.
async fn harness() -> (axum::Router, Vec<(String, usize)>, tempfile::TempDir) {
    start(None).await
}

pub(crate) async fn post(
    app: &axum::Router,
    uri: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    call(app, "POST", uri, None, Some(body.to_string())).await
}

#[tokio::test]
async fn models_are_listed_with_their_parameter_counts() {
    let (app, written, _dir) = harness().await;
    let (st, body) = call(&app, "GET", "/v1/lm/models", None, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let models = body["models"].as_array().expect("models");
    assert_eq!(models.len(), 2, "{body}");
    for ((name, params), m) in written.iter().zip(models) {
        assert_eq!(m["name"], name.as_str());
        assert_eq!(m["parameters"], *params);
        assert_eq!(m["max_seq_len"], 64);
    }
    assert!(models[0]["memory"].is_null());
    assert_eq!(models[1]["memory"], "pkm");
    assert_eq!(models[1]["memory_values"], 256);
}

#[tokio::test]
async fn generation_is_bounded_and_repeatable_and_scoring_reports_perplexity() {
    let (app, _, _dir) = harness().await;
    for model in ["tiny-a", "tiny-pkm"] {
        let req = json!({"model": model, "prompt": "The keys", "max_tokens": 12,
                         "temperature": 0.9, "seed": 4});
        let (st, a) = post(&app, "/v1/lm/generate", req.clone()).await;
        assert_eq!(st, StatusCode::OK, "{a}");
        let (_, b) = post(&app, "/v1/lm/generate", req).await;
        assert_eq!(a["text"], b["text"], "same seed, same text");
        assert!(a["tokens"].as_u64().unwrap() <= 12, "{a}");
        assert!(a["prompt_tokens"].as_u64().unwrap() >= 1, "{a}");
        assert!(a["tokens_per_s"].as_f64().unwrap() > 0.0, "{a}");

        let (st, s) = post(&app, "/v1/lm/score", json!({"model": model, "text": TEXT})).await;
        assert_eq!(st, StatusCode::OK, "{s}");
        let nll = s["nll"].as_f64().unwrap();
        let ppl = s["perplexity"].as_f64().unwrap();
        assert!(nll.is_finite() && nll > 0.0, "{s}");
        assert!((ppl - nll.exp()).abs() < 1e-6 * ppl, "{s}");
        assert!(s["tokens"].as_u64().unwrap() > 10, "{s}");
    }
}

/// `(event, data)` pairs of a server-sent-event body.
fn sse_events(body: &str) -> Vec<(String, serde_json::Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(str::trim).map(str::to_string))
            };
            let data = field("data:")?;
            Some((
                field("event:")?,
                serde_json::from_str(&data).expect("JSON data"),
            ))
        })
        .collect()
}

#[tokio::test]
async fn streamed_generation_sends_the_same_text_token_by_token() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let (app, _, _dir) = harness().await;
    for model in ["tiny-a", "tiny-pkm"] {
        let req = json!({"model": model, "prompt": "The keys", "max_tokens": 12,
                         "temperature": 0.9, "seed": 4});
        let (st, whole) = post(&app, "/v1/lm/generate", req.clone()).await;
        assert_eq!(st, StatusCode::OK, "{whole}");

        let mut streamed = req;
        streamed["stream"] = json!(true);
        let request = Request::post("/v1/lm/generate")
            .header("content-type", "application/json")
            .body(Body::from(streamed.to_string()))
            .unwrap();
        let resp = app.clone().oneshot(request).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let events = sse_events(std::str::from_utf8(&bytes).unwrap());

        let (last, tokens) = events.split_last().expect("events");
        assert_eq!(last.0, "done", "{events:?}");
        assert_eq!(last.1["text"], whole["text"], "same seed, same text");
        assert_eq!(last.1["tokens"], whole["tokens"]);
        assert!(!tokens.is_empty(), "{events:?}");
        assert!(tokens.iter().all(|(name, _)| name == "token"), "{events:?}");
        let pieces: String = tokens
            .iter()
            .map(|(_, t)| t["text"].as_str().unwrap())
            .collect();
        assert_eq!(pieces, whole["text"].as_str().unwrap(), "{events:?}");
        // Token counts rise and never pass the total.
        let counts: Vec<u64> = tokens
            .iter()
            .map(|(_, t)| t["tokens"].as_u64().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
        assert!(counts.last().copied().unwrap_or(0) <= whole["tokens"].as_u64().unwrap());
    }
}

#[tokio::test]
async fn bad_requests_are_4xx_that_name_the_problem() {
    let (app, _, _dir) = harness().await;
    let ok = |extra: serde_json::Value| {
        let mut base = json!({"model": "tiny-a", "prompt": "The keys"});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    };
    for (uri, body, status, named) in [
        (
            "/v1/lm/generate",
            json!({"model": "gpt-9", "prompt": "x"}),
            404,
            "tiny-a, tiny-pkm",
        ),
        ("/v1/lm/generate", ok(json!({"prompt": ""})), 400, "prompt"),
        (
            "/v1/lm/generate",
            ok(json!({"max_tokens": 0})),
            400,
            "max_tokens",
        ),
        (
            "/v1/lm/generate",
            ok(json!({"max_tokens": 33})),
            400,
            "max_tokens",
        ),
        (
            "/v1/lm/generate",
            ok(json!({"temperature": -1.0})),
            400,
            "temperature",
        ),
        ("/v1/lm/generate", ok(json!({"top_p": 0.0})), 400, "top_p"),
        (
            "/v1/lm/generate",
            ok(json!({"prompt": "keys ".repeat(200)})),
            400,
            "tokens",
        ),
        (
            "/v1/lm/generate",
            ok(json!({"stream": "yes"})),
            400,
            "stream",
        ),
        (
            "/v1/lm/generate",
            ok(json!({"stream": true, "max_tokens": 33})),
            400,
            "max_tokens",
        ),
        (
            "/v1/lm/generate",
            ok(json!({"stream": true, "prompt": "keys ".repeat(200)})),
            400,
            "tokens",
        ),
        (
            "/v1/lm/score",
            json!({"model": "tiny-a", "text": "T"}),
            400,
            "2 tokens",
        ),
        ("/v1/lm/generate", ok(json!({"chat": true})), 400, "chat"),
        (
            "/v1/lm/generate",
            ok(json!({"memory": "some"})),
            400,
            "memory",
        ),
        (
            "/v1/lm/score",
            json!({"model": "nope", "text": TEXT}),
            404,
            "unknown model",
        ),
    ] {
        let (st, resp) = post(&app, uri, body.clone()).await;
        assert_eq!(st.as_u16(), status, "{body}: {resp}");
        let message = resp["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{body}: {resp}");
    }
}

/// The pretrained anchor (SmolLM2-135M-Instruct, GGUF) next to the trained
/// models; `None` when it is not installed.
async fn anchor_harness() -> Option<(axum::Router, tempfile::TempDir)> {
    let anchor = crate::common::smollm_dir()?;
    let (app, _, dir) = start(Some(anchor)).await;
    Some((app, dir))
}

#[tokio::test]
async fn the_anchor_is_served_answers_in_chat_and_scores_text() {
    let Some((app, _dir)) = anchor_harness().await else {
        return;
    };
    let (st, body) = call(&app, "GET", "/v1/lm/models", None, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let models = body["models"].as_array().expect("models");
    let anchor = models
        .iter()
        .find(|m| m["name"] == "smollm2-135m")
        .unwrap_or_else(|| panic!("no anchor in {body}"));
    assert_eq!(anchor["format"], "gguf");
    assert_eq!(anchor["chat"], true);
    assert_eq!(anchor["layers"], 30);
    assert!(
        anchor["parameters"].as_u64().unwrap() > 130_000_000,
        "{anchor}"
    );
    assert_eq!(models.len(), 3, "trained models are still served: {body}");

    let (st, g) = post(
        &app,
        "/v1/lm/generate",
        json!({"model": "smollm2-135m", "prompt": "What is the capital of France?",
               "chat": true, "temperature": 0, "max_tokens": 12, "memory": "none"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{g}");
    assert!(g["text"].as_str().unwrap().contains("Paris"), "{g}");
    assert!(
        g["prompt_tokens"].as_u64().unwrap() > 20,
        "chat template applied: {g}"
    );

    let text = "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.";
    let (st, s) = post(
        &app,
        "/v1/lm/score",
        json!({"model": "smollm2-135m", "text": text}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{s}");
    let ppl = s["perplexity"].as_f64().unwrap();
    assert!(ppl > 1.0 && ppl < 100.0, "{s}");
    let reversed: Vec<&str> = text.split(' ').rev().collect();
    let (_, r) = post(
        &app,
        "/v1/lm/score",
        json!({"model": "smollm2-135m", "text": reversed.join(" ")}),
    )
    .await;
    assert!(r["perplexity"].as_f64().unwrap() > 2.0 * ppl, "{r} vs {s}");
}

/// Settings serving the committed experiment models only (no anchor, BM25
/// only), with `data` as the data directory's parent.
fn committed_models(data: &std::path::Path) -> mnemos_config::Settings {
    let mut s = Loader::new().build().unwrap();
    s.server.data_dir = data.join("data");
    s.dense.enabled = false;
    s.hypencoder.enabled = false;
    s.visual.enabled = false;
    s.search.default_backends = vec!["bm25".into()];
    s.lm.models_dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/trained/lm");
    s.lm.anchor_dir = data.join("no-anchor");
    s
}

#[tokio::test]
async fn the_committed_experiment_models_are_served_under_their_names() {
    let data = tempfile::tempdir().unwrap();
    let app = serve(committed_models(data.path())).await;
    let (st, body) = call(&app, "GET", "/v1/lm/models", None, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["tiny-2l", "tiny-2l-memplus", "tiny-2l-pkm", "tiny-4l"]
    );
    let pkm = &body["models"][2];
    assert_eq!(pkm["memory"], "pkm");
    assert_eq!(pkm["memory_values"], 36_864);
    for name in names {
        // Trained on WikiText: far better than chance (4,096) on its style.
        let (st, r) = post(
            &app,
            "/v1/lm/score",
            json!({"model": name, "text": " The city was founded in the 12th century by a group of monks ."}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{r}");
        assert!(r["perplexity"].as_f64().unwrap() < 1000.0, "{name}: {r}");
    }
}

#[tokio::test]
async fn paged_memory_values_score_exactly_like_values_in_ram() {
    let text = " The city was founded in the 12th century by a group of monks .";
    let mut nll = Vec::new();
    for page_rows in [0, 64] {
        let data = tempfile::tempdir().unwrap();
        let mut s = committed_models(data.path());
        s.tiers.pkm_page_rows = page_rows;
        let app = serve(s).await;
        let mut row = Vec::new();
        for name in ["tiny-2l-pkm", "tiny-2l-memplus"] {
            let (st, r) = post(&app, "/v1/lm/score", json!({"model": name, "text": text})).await;
            assert_eq!(st, StatusCode::OK, "{r}");
            row.push(r["nll"].as_f64().unwrap());
        }
        if page_rows > 0 {
            // 36,864 values in pages of 64 rows: one table per PKM layer,
            // one shared table for Memory+.
            for name in ["tiny-2l-pkm", "tiny-2l-memplus"] {
                let pages =
                    std::fs::read_dir(data.path().join(format!("data/pkm-pages/{name}/values")))
                        .unwrap()
                        .flat_map(|layer| std::fs::read_dir(layer.unwrap().path()).unwrap())
                        .count();
                assert_eq!(pages, 36_864 / 64, "{name}");
            }
        }
        nll.push(row);
    }
    for (ram, paged) in nll[0].iter().zip(&nll[1]) {
        assert!((ram - paged).abs() < 1e-4, "{nll:?}");
    }
}
