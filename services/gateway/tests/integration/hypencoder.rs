//! The `hypencoder` backend through the router and across a restart, with
//! the real MiniLM, the committed trained hyperheads and real index files.

use std::sync::Arc;

use axum::http::StatusCode;
use mnemos_config::Loader;
use mnemos_engine::{Backend, Engine};
use serde_json::json;

use crate::common::{docs_json, hit_ids, hypencoder_dir, model_dir, TOKEN};
use crate::router::{call, harness, DOCS};

/// Exhaustive search, and a graph walk that must reach every document from
/// one entry point through the neighbour lists.
fn modes() -> [serde_json::Value; 2] {
    [
        json!({"search": "exhaustive"}),
        json!({"search": "graph", "entry_points": 1, "candidates": 1, "max_rounds": 3, "seed": 5}),
    ]
}

async fn search(app: &axum::Router, body: serde_json::Value) -> serde_json::Value {
    let (st, resp) = call(app, "POST", "/v1/search", None, Some(body.to_string())).await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    resp
}

#[tokio::test]
async fn hypencoder_ranks_alone_and_fused_and_never_returns_removed_documents() {
    let h = harness().await;
    if !h.hypencoder {
        eprintln!("skipping: no dense model or trained hypencoder");
        return;
    }
    let (st, body) = call(
        &h.app,
        "POST",
        "/v1/admin/documents",
        Some(TOKEN),
        Some(docs_json(DOCS).to_string()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");

    let query = "cardiac arrest of the heart muscle";
    for mode in modes() {
        let resp = search(
            &h.app,
            json!({"query": query, "k": 3, "backends": ["hypencoder"], "hypencoder": mode}),
        )
        .await;
        let ids = hit_ids(&resp);
        assert_eq!(ids.len(), 3, "{mode}: {resp}");
        assert!(ids[0] == "heart" || ids[0] == "mi", "{mode}: {ids:?}");
        assert_eq!(ids[2], "tea", "{mode}: the off-topic document ranks last");
        assert_eq!(resp["hits"][0]["sources"]["hypencoder"]["rank"], 1);
    }

    // All three backends fused: every backend contributes to the top hit.
    for fusion in [json!({"method": "rrf"}), json!({"method": "linear"})] {
        let resp = search(
            &h.app,
            json!({"query": query, "k": 3, "backends": ["bm25", "dense", "hypencoder"],
                   "fusion": fusion}),
        )
        .await;
        let sources = resp["hits"][0]["sources"].as_object().expect("sources");
        for b in ["bm25", "dense", "hypencoder"] {
            assert!(sources.contains_key(b), "{fusion}: {resp}");
        }
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
    for mode in modes() {
        let resp = search(
            &h.app,
            json!({"query": query, "k": 3, "backends": ["hypencoder"], "hypencoder": mode}),
        )
        .await;
        let ids = hit_ids(&resp);
        assert!(!ids.contains(&"heart".to_string()), "{mode}: {ids:?}");
        assert_eq!(ids.len(), 2, "{mode}: {ids:?}");
    }
    let (_, stats) = call(&h.app, "GET", "/v1/stats", None, None).await;
    assert_eq!(stats["backends"]["hypencoder"], 2, "{stats}");

    // An exact rebuild after the removal: admin only, then the same answers.
    let rebuild = "/v1/admin/hypencoder/rebuild-graph";
    let (st, _) = call(&h.app, "POST", rebuild, None, None).await;
    assert!(
        st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN,
        "{st}"
    );
    let (st, body) = call(&h.app, "POST", rebuild, Some(TOKEN), None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["documents"], 2, "{body}");
    assert_eq!(
        body["edges"], 2,
        "each of two documents lists the other: {body}"
    );
    for mode in modes() {
        let resp = search(
            &h.app,
            json!({"query": query, "k": 3, "backends": ["hypencoder"], "hypencoder": mode}),
        )
        .await;
        assert_eq!(hit_ids(&resp), ["mi", "tea"], "{mode}");
    }
}

#[tokio::test]
async fn bad_hypencoder_options_are_400s_that_name_the_option() {
    let h = harness().await;
    if !h.hypencoder {
        eprintln!("skipping: no dense model or trained hypencoder");
        return;
    }
    for (options, named) in [
        (json!({"search": "fast"}), "hypencoder.search"),
        (json!({"search": "graph", "max_rounds": 0}), "max_rounds"),
        (json!({"entry_points": 0}), "entry_points"),
        (json!({"rounds": 3}), "rounds"),
    ] {
        let body = json!({"query": "x", "backends": ["hypencoder"], "hypencoder": options});
        let (st, resp) = call(&h.app, "POST", "/v1/search", None, Some(body.to_string())).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{options}: {resp}");
        let message = resp["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{options}: {resp}");
    }
}

async fn open(dir: &std::path::Path, model: &std::path::Path, hyp: &std::path::Path) -> Engine {
    let mut s = Loader::new().build().unwrap();
    s.server.data_dir = dir.to_path_buf();
    s.dense.model_dir = model.to_path_buf();
    s.hypencoder.model_dir = hyp.to_path_buf();
    s.visual.enabled = false;
    Engine::open(s).await.unwrap().0
}

async fn hypencoder_ids(engine: &Engine, query: &str) -> Vec<String> {
    engine
        .backend_hits(Backend::Hypencoder, query, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect()
}

/// Writes reach the hypencoder index through the store even when the index
/// never persisted them (a crash): start-up takes the vectors from the
/// dense index, and a removal survives a restart.
#[tokio::test]
async fn the_hypencoder_index_is_reconciled_with_the_store_on_start() {
    let (Some(model), Some(hyp)) = (model_dir(), hypencoder_dir()) else {
        eprintln!("skipping: no dense model or trained hypencoder");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<mnemos_index_core::Document> = DOCS
        .iter()
        .map(|(id, title, text)| mnemos_index_core::Document {
            id: id.to_string(),
            title: title.to_string(),
            text: text.to_string(),
            metadata: serde_json::Value::Null,
        })
        .collect();
    {
        let engine = Arc::new(open(dir.path(), &model, &hyp).await);
        engine.upsert(docs).await.unwrap();
        // Dropped without persist: the hypencoder files hold nothing.
    }
    let engine = open(dir.path(), &model, &hyp).await;
    let ids = hypencoder_ids(&engine, "green tea leaves").await;
    assert_eq!(ids.first().map(String::as_str), Some("tea"), "{ids:?}");
    assert_eq!(ids.len(), 3);
    engine.remove(vec!["tea".into()]).await.unwrap();
    drop(engine);
    let engine = open(dir.path(), &model, &hyp).await;
    let ids = hypencoder_ids(&engine, "green tea leaves").await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(!ids.contains(&"tea".to_string()));
}
