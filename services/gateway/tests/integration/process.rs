//! The real `mnemos` binary: a removal acknowledged just before `kill -9`
//! stays removed after restart, in every backend; upserts survive too.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::{docs_json, model_dir};
use crate::server::Server;

/// Set once doc-1 has been replaced; from then on only its new text may be
/// served.
static REPLACED: AtomicBool = AtomicBool::new(false);

/// `Server::search`, also checking that a replaced document is served with
/// its new text only.
fn search(server: &Server, query: &str, backend: &str) -> Vec<String> {
    let (ids, resp) = server.search_full(query, backend);
    for hit in resp["hits"].as_array().into_iter().flatten() {
        if hit["id"] == "doc-1" && REPLACED.load(Ordering::SeqCst) {
            assert_eq!(hit["text"], "A glacier calved into the sea.", "{resp}");
        }
    }
    ids
}

fn backends() -> Vec<&'static str> {
    if model_dir().is_some() {
        vec!["bm25", "dense"]
    } else {
        vec!["bm25"]
    }
}

#[test]
fn removal_survives_kill_9_right_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let docs: Vec<(String, String, String)> = (0..40)
        .map(|i| {
            (
                format!("doc-{i}"),
                format!("Aurora report {i}"),
                format!("Aurora borealis sighting number {i} over the northern fjords."),
            )
        })
        .collect();
    let refs: Vec<(&str, &str, &str)> = docs
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    let (st, body) = server.post("/v1/admin/documents", &docs_json(&refs), true);
    assert_eq!(st, 200, "{body}");
    for b in backends() {
        assert!(search(&server, "aurora borealis sighting", b).contains(&"doc-7".to_string()));
    }
    // Replace one document, remove others, and kill the process the moment
    // the last acknowledgement arrives.
    let (st, _) = server.post(
        "/v1/admin/documents",
        &docs_json(&[("doc-1", "Glacier note", "A glacier calved into the sea.")]),
        true,
    );
    assert_eq!(st, 200);
    REPLACED.store(true, Ordering::SeqCst);
    let (st, body) = server.post(
        "/v1/admin/documents/delete",
        &serde_json::json!({"ids": ["doc-3", "doc-4", "doc-5"]}),
        true,
    );
    assert_eq!((st, body["removed"].as_u64()), (200, Some(3)), "{body}");
    let (st, body) = server.delete("/v1/admin/documents/doc-7");
    assert_eq!(st, 200, "{body}");
    server.kill9();

    let server = Server::start(dir.path());
    let removed = ["doc-3", "doc-4", "doc-5", "doc-7"];
    for b in backends() {
        let ids = search(&server, "aurora borealis sighting northern fjords", b);
        for r in removed {
            assert!(
                !ids.contains(&r.to_string()),
                "{b} served removed {r}: {ids:?}"
            );
        }
        assert!(ids.contains(&"doc-8".to_string()), "{b}: {ids:?}");
        if b == "bm25" {
            assert!(
                !ids.contains(&"doc-1".to_string()),
                "{b} matched stale doc-1: {ids:?}"
            );
        }
        assert_eq!(
            search(&server, "glacier calved", b)
                .first()
                .map(String::as_str),
            Some("doc-1")
        );
    }
    // A remove acknowledged again after restart still answers 404 for gone ids.
    let (st, _) = server.delete("/v1/admin/documents/doc-7");
    assert_eq!(st, 404);
    server.stop();

    // A clean restart after SIGTERM (indexes persisted) serves the same.
    let server = Server::start(dir.path());
    for b in backends() {
        let ids = search(&server, "aurora borealis sighting northern fjords", b);
        assert!(
            removed.iter().all(|r| !ids.contains(&r.to_string())),
            "{b}: {ids:?}"
        );
        assert_eq!(
            ids.iter().filter(|i| *i != "doc-1").count(),
            35,
            "{b}: {ids:?}"
        );
    }
    server.stop();
}

/// The visual memory's unlearning through the real binary: samples and a
/// whole class removed just before `kill -9` are never returned after the
/// restart; samples added before it are. Embeddings only (the encoder is
/// covered by the router tests), so this runs without the image model.
#[test]
fn visual_unlearning_survives_kill_9_right_after_ack() {
    let env = [
        ("MNEMOS__VISUAL__ENCODER", "false"),
        ("MNEMOS__VISUAL__DIM", "8"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &env);
    // Three classes around three axes, 20 samples each.
    let item = |class: usize, i: usize| {
        let mut v = vec![0.05 * (i as f32 % 5.0); 8];
        v[class] = 1.0 + 0.01 * i as f32;
        serde_json::json!({"id": format!("c{class}-{i}"), "label": format!("class-{class}"), "embedding": v})
    };
    let items: Vec<_> = (0..3)
        .flat_map(|c| (0..20).map(move |i| item(c, i)))
        .collect();
    let (st, body) = server.post(
        "/v1/admin/visual/memories",
        &serde_json::json!({"items": items}),
        true,
    );
    assert_eq!((st, body["total"].as_u64()), (200, Some(60)), "{body}");
    let classify = |server: &Server, axis: usize| {
        let mut v = vec![0.0f32; 8];
        v[axis] = 1.0;
        let body = serde_json::json!({"embedding": v, "k": 50, "aggregation": "plurality"});
        let (st, resp) = server.post("/v1/visual/classify", &body, false);
        assert_eq!(st, 200, "{resp}");
        resp
    };
    assert_eq!(classify(&server, 0)["label"], "class-0");

    let (st, body) = server.delete("/v1/admin/visual/classes/class-0");
    assert_eq!(
        (st, body["removed"].as_array().map(Vec::len)),
        (200, Some(20)),
        "{body}"
    );
    let (st, body) = server.delete("/v1/admin/visual/memories/c1-3");
    assert_eq!(st, 200, "{body}");
    let late = item(2, 99);
    let (st, _) = server.post(
        "/v1/admin/visual/memories",
        &serde_json::json!({"items": [late]}),
        true,
    );
    assert_eq!(st, 200);
    server.kill9();

    let server = Server::start_with(dir.path(), &env);
    for axis in 0..3 {
        let resp = classify(&server, axis);
        assert_ne!(resp["label"], "class-0", "{resp}");
        for n in resp["neighbors"].as_array().unwrap() {
            let id = n["id"].as_str().unwrap();
            assert!(
                !id.starts_with("c0-") && id != "c1-3",
                "served removed {id}: {resp}"
            );
        }
    }
    let resp = classify(&server, 2);
    assert!(
        resp["neighbors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == "c2-99"),
        "{resp}"
    );
    let (st, _) = server.delete("/v1/admin/visual/memories/c1-3");
    assert_eq!(st, 404);
    let stats: serde_json::Value = Server::agent()
        .get(&format!("{}/v1/stats", server.base))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(stats["visual"]["items"], 40, "{stats}");
    assert_eq!(stats["visual"]["classes"], 2, "{stats}");
    server.stop();
}
