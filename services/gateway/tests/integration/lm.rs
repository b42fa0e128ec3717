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
    let state = Arc::new(AppState::new(&s));
    let (engine, _) = Engine::open(s).await.unwrap();
    state.set_engine(Arc::new(engine));
    state.mark_ready();
    (app(state), models, dir)
}

/// The trained models only: the anchor has tests of its own below.
async fn harness() -> (axum::Router, Vec<(String, usize)>, tempfile::TempDir) {
    start(None).await
}

async fn post(
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
            ok(json!({"stream": true})),
            400,
            "stream",
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

/// A small bank over four documents, built with the real encoder, whose
/// blocks are untrained but active (non-zero `up`): enough to see routing,
/// fetching and the effect on the anchor through the API.
fn write_bank(dir: &std::path::Path, encoder_dir: &std::path::Path) -> Vec<String> {
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
    let nodes: Vec<_> = bank
        .tree()
        .nodes()
        .filter(|n| !n.id().is_root())
        .map(|n| n.id().clone())
        .collect();
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
fn bank_settings(dir: &std::path::Path) -> Option<mnemos_config::Settings> {
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

async fn serve(s: mnemos_config::Settings) -> axum::Router {
    let state = Arc::new(AppState::new(&s));
    let (engine, _) = Engine::open(s).await.unwrap();
    state.set_engine(Arc::new(engine));
    state.mark_ready();
    app(state)
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

#[tokio::test]
async fn the_committed_experiment_models_are_served_under_their_names() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/trained/lm");
    let data = tempfile::tempdir().unwrap();
    let mut s = Loader::new().build().unwrap();
    s.server.data_dir = data.path().join("data");
    s.dense.enabled = false;
    s.hypencoder.enabled = false;
    s.visual.enabled = false;
    s.search.default_backends = vec!["bm25".into()];
    s.lm.models_dir = dir;
    s.lm.anchor_dir = data.path().join("no-anchor");
    let app = serve(s).await;
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
