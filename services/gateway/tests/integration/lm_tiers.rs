//! The anchor's memory bank served from object storage through the tiers:
//! a server with an empty data directory starts from a bank published to a
//! real S3 server (SeaweedFS on loopback), and keeps answering, flagged as
//! degraded, while the S3 server is down; it recovers when it returns.

use axum::http::StatusCode;
use serde_json::json;

use crate::lm::{post, serve};
use crate::lm_memory::bank_settings;
use crate::router::call;

const TEXTS: [&str; 4] = [
    "Myocardial infarction follows occlusion of a coronary artery.",
    "Insulin resistance precedes type 2 diabetes in obese adults.",
    "Tumour suppressor p53 mutations are common in human cancers.",
    "Influenza virus haemagglutinin binds sialic acid receptors.",
];

async fn score(app: &axum::Router, text: &str) -> serde_json::Value {
    let (st, body) = post(
        app,
        "/v1/lm/score",
        json!({"model": "smollm2-135m", "text": text}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn a_bank_in_object_storage_serves_through_an_outage() {
    use mnemos_tiers::seaweed::{Seaweed, ACCESS_KEY, SECRET_KEY};
    let dir = tempfile::tempdir().unwrap();
    let Some(mut s) = bank_settings(dir.path()) else {
        return;
    };
    let mut server = Seaweed::start(&dir.path().join("seaweed")).expect("SeaweedFS");
    // Publish the bank, then serve with no local copy of it.
    let bank = mnemos_membank::Bank::open(&dir.path().join("bank")).expect("bank");
    let mut publisher = mnemos_tiers::TiersConfig::new(1 << 20, dir.path().join("publish-scratch"));
    publisher.cold = Some(server.store("mnemos", "bank").expect("store"));
    let publisher = mnemos_tiers::Tiers::new(publisher).expect("tiers");
    bank.publish(&publisher).expect("publish");
    // The engine's S3 client reads the standard AWS_* variables (the
    // only credentials any test in this binary uses).
    std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    s.lm.memory_bank_dir = dir.path().join("no-local-bank");
    s.tiers.cold_url = Some("s3://mnemos/bank".into());
    s.tiers.s3_endpoint = Some(server.endpoint());
    s.tiers.fetch_timeout_ms = 1000;
    let app = serve(s).await;

    // Served from the bucket; level 1 pinned in RAM at start.
    let first = score(&app, TEXTS[0]).await;
    let path = first["memory"]["path"].as_array().expect("path").clone();
    assert!(!path.is_empty(), "{first}");
    assert_eq!(first["memory"]["degraded"], false, "{first}");
    assert_eq!(first["memory"]["tiers"][0], "hot", "{first}");
    let (st, tiers) = call(&app, "GET", "/v1/admin/tiers", Some("admin-secret"), None).await;
    assert_eq!(st, StatusCode::OK, "{tiers}");
    assert_eq!(tiers["summary"]["cold_url"], "s3://mnemos/bank", "{tiers}");
    assert!(
        tiers["summary"]["pinned_blocks"].as_u64() >= Some(1),
        "{tiers}"
    );
    let (st, _) = call(&app, "GET", "/v1/admin/tiers", None, None).await;
    assert!(st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN);

    // The S3 server goes away: every request is still answered; those
    // needing a block never fetched run on its parent path and say so.
    server.stop();
    let mut degraded = Vec::new();
    for text in TEXTS {
        let body = score(&app, text).await;
        let memory = &body["memory"];
        if memory["degraded"] == true {
            let missing = memory["missing"].as_array().expect("missing");
            assert_eq!(missing.len(), 1, "{body}");
            assert!(
                missing[0]["node"].as_str().is_some_and(|n| n.contains('.')),
                "{body}"
            );
            degraded.push(text);
        } else {
            assert!(memory["missing"].is_null(), "{body}");
        }
    }
    assert!(!degraded.is_empty(), "no request needed an unfetched block");
    let (_, tiers) = call(&app, "GET", "/v1/admin/tiers", Some("admin-secret"), None).await;
    assert_eq!(tiers["degraded_answers"], degraded.len(), "{tiers}");
    let failures = &tiers["summary"]["failures"];
    assert!(
        failures["unavailable"].as_u64().unwrap_or(0) + failures["timeouts"].as_u64().unwrap_or(0)
            >= degraded.len() as u64,
        "{tiers}"
    );
    let req = axum::http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app.clone(), req).await.unwrap();
    let text = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&text);
    let line = format!(
        "mnemos_tier{{tier=\"all\",what=\"degraded_answers\"}} {}",
        degraded.len()
    );
    assert!(text.contains(&line), "{line} not in /metrics");

    // Back: the same requests get their whole path.
    server.restart().expect("SeaweedFS restart");
    for text in degraded {
        let body = score(&app, text).await;
        assert_eq!(body["memory"]["degraded"], false, "{body}");
        assert!(
            body["memory"]["path"]
                .as_array()
                .is_some_and(|p| p.len() == 2),
            "{body}"
        );
    }
}

/// Settings for a BM25-only server over `data` (quick to start).
fn bm25_only(data: std::path::PathBuf) -> mnemos_config::Settings {
    let mut s = mnemos_config::Loader::new().build().unwrap();
    s.server.data_dir = data;
    s.server.admin_token = Some(crate::common::TOKEN.into());
    s.dense.enabled = false;
    s.hypencoder.enabled = false;
    s.visual.enabled = false;
    s.lm.enabled = false;
    s.search.default_backends = vec!["bm25".into()];
    s
}

#[tokio::test]
async fn a_fresh_server_starts_from_a_published_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let docs = crate::common::docs_json(&[
        (
            "heart",
            "Heart attack",
            "Blocked blood flow to the heart muscle.",
        ),
        ("flu", "Influenza", "A viral infection of the airways."),
        ("bone", "Fracture", "A break in the continuity of a bone."),
    ]);
    {
        let app = serve(bm25_only(dir.path().join("a"))).await;
        let (st, body) = call(
            &app,
            "POST",
            "/v1/admin/documents",
            Some(crate::common::TOKEN),
            Some(docs.to_string()),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let (st, _) = call(
            &app,
            "DELETE",
            "/v1/admin/documents/bone",
            Some(crate::common::TOKEN),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK);
    }
    // The first server is gone; its data directory goes to a bucket.
    let bucket = dir.path().join("bucket");
    let mut config = mnemos_tiers::TiersConfig::new(1 << 20, dir.path().join("scratch"));
    config.cold = Some(
        mnemos_tiers::ColdStore::open(
            &format!("file://{}", bucket.display()),
            &mnemos_tiers::ColdOptions::default(),
        )
        .unwrap(),
    );
    let stats = mnemos_tiers::Tiers::new(config)
        .unwrap()
        .publish_dir(&dir.path().join("a"), "snapshot")
        .unwrap();
    assert!(stats.files > 0);

    // A fresh server with an empty data directory starts from it.
    let mut s = bm25_only(dir.path().join("b"));
    s.tiers.data_url = Some(format!("file://{}", bucket.display()));
    let app = serve(s).await;
    let (st, body) = post(
        &app,
        "/v1/search",
        json!({"query": "heart attack blood flow", "k": 3}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["hits"][0]["id"], "heart", "{body}");
    // The removal came along: never served again.
    let (_, body) = post(
        &app,
        "/v1/search",
        json!({"query": "bone fracture break", "k": 3}),
    )
    .await;
    assert!(
        body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["id"] != "bone"),
        "{body}"
    );
    let (st, _) = call(
        &app,
        "GET",
        "/v1/admin/documents/bone",
        Some(crate::common::TOKEN),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}
