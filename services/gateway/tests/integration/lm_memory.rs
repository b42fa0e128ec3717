//! The anchor's memory bank through the router: routing and fetching,
//! unlearning (disabled at once, durably, then retrained in the
//! background), adding, and the jobs route. A small bank over four
//! documents, built with the real encoder and anchor; skipped, with a
//! message, when either is not installed.

use axum::http::StatusCode;
use mnemos_config::Loader;
use serde_json::json;

use crate::lm::{post, serve};
use crate::router::call;

/// A small bank over four documents, built with the real encoder, whose
/// blocks are untrained but active (non-zero `up`): enough to see routing,
/// fetching and the effect on the anchor through the API.
pub(crate) fn write_bank(dir: &std::path::Path, encoder_dir: &std::path::Path) -> Vec<String> {
    use mnemos_membank::{Bank, BankConfig, BlockMeta, Tree, TreeParams};
    use mnemos_models_core::Encoder;
    let docs = [
        (
            "heart",
            "Myocardial infarction follows occlusion of a coronary artery.",
        ),
        (
            "insulin",
            "Insulin resistance precedes type 2 diabetes in obese adults.",
        ),
        (
            "tumour",
            "Tumour suppressor p53 mutations are common in human cancers.",
        ),
        (
            "virus",
            "Influenza virus haemagglutinin binds sialic acid receptors.",
        ),
    ];
    let encoder =
        mnemos_text::MiniLmEncoder::load(encoder_dir, Default::default()).expect("encoder");
    let texts: Vec<&str> = docs.iter().map(|d| d.1).collect();
    let vectors = encoder.embed(&texts).expect("embed").concat();
    let ids: Vec<String> = docs.iter().map(|d| d.0.to_string()).collect();
    let params = TreeParams {
        levels: 2,
        branching: 2,
        ..TreeParams::default()
    };
    let tree = Tree::build(&vectors, 384, &ids, params).expect("tree");
    let config = BankConfig {
        anchor: "smollm2-135m".into(),
        dim: 576,
        layers: vec![28, 29],
        units_per_level: vec![8, 4],
        tree: params,
        training: Vec::new(),
        max_tokens: 0,
    };
    let mut bank = Bank::create(dir, config, tree).expect("bank");
    // No texts in the bank, as shipped: the served copy reads them from
    // the corpus (`lm.memory_bank_corpus`).
    let corpus: Vec<String> = docs
        .iter()
        .map(|(id, t)| json!({"_id": id, "title": "", "text": t}).to_string())
        .collect();
    std::fs::write(dir.with_file_name("corpus.jsonl"), corpus.join("\n")).expect("corpus");
    // One quick epoch, so that retraining jobs finish within a test.
    let quick = mnemos_membank::LevelTraining {
        epochs: 1,
        learning_rate: 1e-3,
        batch: 2,
    };
    bank.set_training(vec![quick.clone(), quick], 32)
        .expect("training");
    let nodes = bank.tree().block_nodes();
    for node in nodes {
        let mut units = bank.init_block(&node, 3).expect("init");
        for u in units.layers.values_mut() {
            // Active units: a fresh block's `up` is zero and changes nothing.
            u.up = (u.gate.clone() * 20.0).expect("scale");
        }
        let meta = BlockMeta {
            node: node.clone(),
            trained_on: bank.tree().documents_under(&node),
            steps: 0,
            final_loss: None,
            train_secs: 0.0,
            disabled: false,
            version: 0,
        };
        bank.save_block(&node, &units, meta).expect("save");
    }
    ids
}

/// Settings serving the anchor with the bank of [`write_bank`].
pub(crate) fn bank_settings(dir: &std::path::Path) -> Option<mnemos_config::Settings> {
    let (anchor, encoder) = (crate::common::smollm_dir()?, crate::common::model_dir()?);
    write_bank(&dir.join("bank"), &encoder);
    let mut s = Loader::new().build().unwrap();
    s.server.data_dir = dir.join("data");
    s.server.admin_token = Some("admin-secret".into());
    s.dense.model_dir = encoder;
    s.hypencoder.enabled = false;
    s.visual.enabled = false;
    s.lm.models_dir = dir.join("lm");
    s.lm.anchor_dir = anchor;
    s.lm.memory_bank_dir = dir.join("bank");
    s.lm.memory_bank_corpus = dir.join("corpus.jsonl");
    s.lm.memory_min_similarity = vec![0.2, -1.0];
    Some(s)
}

#[tokio::test]
async fn the_memory_bank_is_routed_fetched_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s) = bank_settings(dir.path()) else {
        return;
    };
    let app = serve(s).await;
    let text = "Occlusion of a coronary artery causes myocardial infarction in patients.";
    let score = |memory: &'static str| {
        let app = app.clone();
        async move {
            post(
                &app,
                "/v1/lm/score",
                json!({"model": "smollm2-135m", "text": text, "memory": memory}),
            )
            .await
        }
    };
    let (st, auto) = score("auto").await;
    assert_eq!(st, StatusCode::OK, "{auto}");
    let path: Vec<&str> = auto["memory"]["path"]
        .as_array()
        .expect("path")
        .iter()
        .map(|n| n.as_str().expect("node id"))
        .collect();
    // One node per level, top down (a one-document node is a leaf early).
    assert!(!path.is_empty() && path.len() <= 2, "{auto}");
    assert!(!path[0].contains('.'), "{auto}");
    // 2 layers x 3 matrices x 576 x the units of each level on the path.
    let units: usize = path
        .iter()
        .map(|n| if n.contains('.') { 4 } else { 8 })
        .sum();
    assert_eq!(auto["memory"]["params"], 2 * 3 * 576 * units, "{auto}");
    let (_, none) = score("none").await;
    assert_eq!(
        none["memory"]["path"].as_array().map(Vec::len),
        Some(0),
        "{none}"
    );
    assert_eq!(none["memory"]["params"], 0);
    let (a, n) = (auto["nll"].as_f64().unwrap(), none["nll"].as_f64().unwrap());
    assert!(
        (a - n).abs() > 1e-3,
        "memory changed nothing: {auto} vs {none}"
    );

    // Text unlike the bank's falls below the threshold: no memory.
    let (_, far) = post(
        &app,
        "/v1/lm/score",
        json!({"model": "smollm2-135m",
               "text": "The quarterback threw three touchdown passes in the final quarter."}),
    )
    .await;
    assert_eq!(
        far["memory"]["path"].as_array().map(Vec::len),
        Some(0),
        "{far}"
    );

    let (st, g) = post(
        &app,
        "/v1/lm/generate",
        json!({"model": "smollm2-135m", "prompt": text, "max_tokens": 4, "temperature": 0}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{g}");
    assert_eq!(g["memory"]["path"], auto["memory"]["path"], "{g}");
}

async fn score_with(app: &axum::Router, text: &str, memory: &str) -> serde_json::Value {
    let (st, body) = post(
        app,
        "/v1/lm/score",
        json!({"model": "smollm2-135m", "text": text, "memory": memory}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

/// Polls the jobs route until nothing is pending or running.
async fn jobs_settled(app: &axum::Router) -> serde_json::Value {
    for _ in 0..300 {
        let (st, jobs) = call(
            app,
            "GET",
            "/v1/admin/lm/memory/jobs",
            Some("admin-secret"),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{jobs}");
        if jobs["pending"].as_array().is_some_and(Vec::is_empty) && jobs["running"].is_null() {
            return jobs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("memory jobs did not finish in 60 s");
}

#[tokio::test]
async fn removing_a_document_disables_its_blocks_at_once_durably_and_retrains_them() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s) = bank_settings(dir.path()) else {
        return;
    };
    let app = serve(s.clone()).await;
    let texts = [
        (
            "heart",
            "Occlusion of a coronary artery causes myocardial infarction.",
        ),
        (
            "insulin",
            "Obese adults develop insulin resistance before diabetes.",
        ),
        (
            "tumour",
            "Mutations of the p53 tumour suppressor drive human cancers.",
        ),
        (
            "virus",
            "The haemagglutinin of influenza binds sialic acid on cells.",
        ),
    ];
    let mut before = Vec::new();
    for (_, t) in texts {
        before.push(score_with(&app, t, "auto").await);
    }
    let heart_path: Vec<String> =
        serde_json::from_value(before[0]["memory"]["path"].clone()).expect("path");
    assert!(!heart_path.is_empty(), "{}", before[0]);

    // `heart` is only in the bank, not in the document store: the same
    // admin call removes it, and says so.
    let (st, body) = call(
        &app,
        "DELETE",
        "/v1/admin/documents/heart",
        Some("admin-secret"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // At once: the blocks trained on it are disabled and never fetched —
    // unless the worker has already retrained one without it (fast here:
    // tiny texts, one epoch), which the jobs report then shows as done.
    let after = score_with(&app, texts[0].1, "auto").await;
    let used: Vec<String> = serde_json::from_value(after["memory"]["path"].clone()).expect("path");
    // Settled, so a block served above and retrained is listed as done.
    let jobs = jobs_settled(&app).await;
    for node in used.iter().filter(|n| heart_path.contains(n)) {
        let retrained = jobs["finished"].as_array().is_some_and(|f| {
            f.iter()
                .any(|j| j["node"] == node.as_str() && j["state"] == "done")
        });
        assert!(
            retrained,
            "block {node}, trained on the removed document, was served: {after} (jobs {jobs})"
        );
    }
    // Documents whose paths share no block with it are unchanged.
    for (i, (_, t)) in texts.iter().enumerate().skip(1) {
        let path: Vec<String> =
            serde_json::from_value(before[i]["memory"]["path"].clone()).expect("path");
        if path.iter().all(|n| !heart_path.contains(n)) {
            let now = score_with(&app, t, "auto").await;
            assert_eq!(now["nll"], before[i]["nll"], "{t}");
        }
    }

    // Retrained without it in the background, then served again.
    let jobs = jobs_settled(&app).await;
    let finished = jobs["finished"].as_array().expect("finished");
    for node in &heart_path {
        assert!(
            finished
                .iter()
                .any(|j| j["node"] == node.as_str()
                    && (j["state"] == "done" || j["state"] == "dropped")),
            "{node} not retrained: {jobs}"
        );
    }
    assert!(
        jobs["disabled"].as_array().is_some_and(Vec::is_empty),
        "{jobs}"
    );
    let manifest = std::fs::read(dir.path().join("data/memory-bank/manifest.json")).unwrap();
    let manifest = String::from_utf8_lossy(&manifest);
    assert!(
        !manifest.contains("\"heart\""),
        "still recorded as trained on: {manifest}"
    );
    // The shipped bank was never touched: edits go to the data directory.
    let shipped = std::fs::read(dir.path().join("bank/manifest.json")).unwrap();
    assert!(String::from_utf8_lossy(&shipped).contains("\"heart\""));

    // A restart serves the edited bank, not the shipped one.
    drop(app);
    let app = serve(s).await;
    let again = score_with(&app, texts[0].1, "auto").await;
    let texts_file = std::fs::read(dir.path().join("data/memory-bank/texts.json")).unwrap();
    assert!(!String::from_utf8_lossy(&texts_file).contains("Myocardial infarction follows"));
    assert!(again["memory"]["params"].as_u64().is_some(), "{again}");

    // Adding a document through the same admin API trains it in.
    let doc = json!({"documents": [{"id": "stroke", "title": "Stroke",
        "text": "Occlusion of a cerebral artery causes ischaemic stroke."}]});
    let (st, body) = call(
        &app,
        "POST",
        "/v1/admin/documents",
        Some("admin-secret"),
        Some(doc.to_string()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let jobs = jobs_settled(&app).await;
    let added: Vec<&serde_json::Value> = jobs["finished"]
        .as_array()
        .expect("finished")
        .iter()
        .filter(|j| j["reason"] == "add")
        .collect();
    assert!(!added.is_empty(), "{jobs}");
    assert!(added.iter().all(|j| j["state"] == "done"), "{jobs}");
    assert!(
        added.iter().all(|j| j["steps"].as_u64() > Some(0)),
        "{jobs}"
    );
    let manifest = std::fs::read(dir.path().join("data/memory-bank/manifest.json")).unwrap();
    assert!(String::from_utf8_lossy(&manifest).contains("\"stroke\""));
    // Without an admin token the jobs route is refused.
    let (st, _) = call(&app, "GET", "/v1/admin/lm/memory/jobs", None, None).await;
    assert!(
        st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN,
        "{st}"
    );
}
