//! What each subcommand does: start the server (loading the engine in the
//! background so `/healthz` answers at once), ingest a collection, evaluate.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mnemos_config::Settings;
use mnemos_engine::visual::{VisualInput, VisualItem};
use mnemos_engine::{beir, eval, Engine, UpsertTimings};
use mnemos_index_core::Document;

use crate::{app, AppState};

/// The demo collection shipped in the binary, served on a fresh data dir.
pub const DEMO_CORPUS: &str = include_str!("../../../config/demo/corpus.jsonl");
const DEMO_MARKER: &str = ".demo-seeded";
/// The demo visual memory: four procedurally drawn images (made by
/// `models/vision/tests/fixtures/make_reference.py`), one class each.
const DEMO_IMAGES: [(&str, &str, &[u8]); 4] = [
    (
        "demo-honeycomb",
        "honeycomb",
        include_bytes!("../../../config/demo/visual/honeycomb.png"),
    ),
    (
        "demo-window-screen",
        "window screen",
        include_bytes!("../../../config/demo/visual/window_screen.png"),
    ),
    (
        "demo-spiral",
        "spiral",
        include_bytes!("../../../config/demo/visual/spiral.png"),
    ),
    (
        "demo-blobs",
        "blobs",
        include_bytes!("../../../config/demo/visual/blobs.png"),
    ),
];
const DEMO_VISUAL_MARKER: &str = ".demo-visual-seeded";

/// How often index state is written to disk while serving.
const PERSIST_EVERY: Duration = Duration::from_secs(30);

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    if settings.server.admin_token.is_none() {
        tracing::warn!(
            "no admin token configured: /v1/admin/* answers 403. Set MNEMOS_ADMIN_TOKEN to enable it"
        );
    }
    let state = Arc::new(AppState::new(&settings));
    let listener = tokio::net::TcpListener::bind(&settings.server.bind)
        .await
        .with_context(|| format!("cannot listen on {}", settings.server.bind))?;
    tracing::info!(bind = %settings.server.bind, data_dir = %settings.server.data_dir.display(), "listening");

    let loader = tokio::spawn(load(Arc::clone(&state), settings));
    let server =
        axum::serve(listener, app(Arc::clone(&state))).with_graceful_shutdown(shutdown_signal());
    server.await.context("server failed")?;
    loader.abort();
    if let Some(engine) = state.engine() {
        engine.persist().context("persisting indexes at shutdown")?;
        tracing::info!("indexes persisted; bye");
    }
    Ok(())
}

async fn load(state: Arc<AppState>, settings: Settings) {
    let started = Instant::now();
    let seed = settings.server.seed_demo;
    match Engine::open(settings).await {
        Ok((engine, loaded)) => {
            tracing::info!(?loaded, "engine opened");
            let engine = Arc::new(engine);
            if seed {
                if let Err(e) = seed_demo(&engine).await {
                    state.mark_failed(format!("seeding the demo collection failed: {e}"));
                    tracing::error!("seeding the demo collection failed: {e:#}");
                    return;
                }
            }
            state.set_engine(Arc::clone(&engine));
            if let Err(e) = warm_up(&engine).await {
                tracing::error!("warm-up query failed: {e}");
                state.mark_failed(format!("warm-up query failed: {e}"));
                return;
            }
            state.mark_ready();
            tracing::info!(seconds = started.elapsed().as_secs_f64(), "ready");
            persist_loop(engine).await;
        }
        Err(e) => {
            tracing::error!("start-up failed: {e}");
            state.mark_failed(format!("start-up failed: {e}"));
        }
    }
}

async fn warm_up(engine: &Engine) -> Result<(), mnemos_engine::EngineError> {
    let req = mnemos_api::SearchRequest {
        query: "warm up".into(),
        k: Some(1),
        backends: Some(engine.settings().search.default_backends.clone()),
        fusion: None,
        hypencoder: None,
    };
    engine.search(&req).await.map(|_| ())
}

async fn persist_loop(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(PERSIST_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let e = Arc::clone(&engine);
        match tokio::task::spawn_blocking(move || e.persist()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("periodic persist failed: {e}"),
            Err(e) => tracing::warn!("periodic persist task failed: {e}"),
        }
    }
}

/// Seeds an empty store once with the embedded demo collection, and, on
/// a fresh data dir only (never into a memory someone already uses), the
/// visual memory with the demo images. The images are a nicety: failing
/// to seed them is logged, not fatal.
async fn seed_demo(engine: &Engine) -> anyhow::Result<()> {
    let fresh = engine.store().is_empty() && !engine.data_dir().join(DEMO_MARKER).exists();
    seed_demo_documents(engine).await?;
    if fresh {
        if let Err(e) = seed_demo_images(engine).await {
            tracing::warn!("seeding the demo images failed: {e:#}");
        }
    }
    Ok(())
}

async fn seed_demo_images(engine: &Engine) -> anyhow::Result<()> {
    let Ok(visual) = engine.visual() else {
        return Ok(());
    };
    let marker = engine.data_dir().join(DEMO_VISUAL_MARKER);
    if !visual.has_encoder() || !visual.is_empty() || marker.exists() {
        return Ok(());
    }
    let items = DEMO_IMAGES
        .iter()
        .map(|(id, label, png)| VisualItem {
            id: id.to_string(),
            label: label.to_string(),
            input: VisualInput::Image(png.to_vec()),
            metadata: serde_json::json!({"demo": true}),
        })
        .collect();
    visual.upsert(items).await?;
    std::fs::write(&marker, b"the demo images were loaded once\n")?;
    tracing::info!(images = DEMO_IMAGES.len(), "seeded the demo visual memory");
    Ok(())
}

async fn seed_demo_documents(engine: &Engine) -> anyhow::Result<()> {
    let marker = engine.data_dir().join(DEMO_MARKER);
    if !engine.store().is_empty() || marker.exists() {
        return Ok(());
    }
    let mut docs = Vec::new();
    beir::read_corpus_from(
        DEMO_CORPUS.as_bytes(),
        Path::new("demo/corpus.jsonl"),
        &mut |d| {
            docs.push(d);
            Ok(())
        },
    )?;
    let n = docs.len();
    ingest_docs(engine, docs, 256, false).await?;
    engine.persist()?;
    std::fs::write(&marker, b"the demo collection was loaded once\n")?;
    tracing::info!(documents = n, "seeded the demo collection");
    Ok(())
}

/// Upserts documents in batches, with an optional progress bar on stderr.
pub async fn ingest_docs(
    engine: &Engine,
    docs: Vec<Document>,
    batch: usize,
    progress: bool,
) -> anyhow::Result<UpsertTimings> {
    let bar = if progress {
        let bar = indicatif::ProgressBar::new(docs.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} docs ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut timings = UpsertTimings::default();
    let mut docs = docs.into_iter().peekable();
    while docs.peek().is_some() {
        let chunk: Vec<Document> = docs.by_ref().take(batch.max(1)).collect();
        let n = chunk.len() as u64;
        // Retrieval demo data: the memory bank ships trained on SciFact.
        let out = engine.upsert_with(chunk, false).await?;
        timings += out.timings;
        bar.inc(n);
    }
    bar.finish_and_clear();
    Ok(timings)
}

fn read_collection(beir_dir: Option<&Path>, jsonl: Option<&Path>) -> anyhow::Result<Vec<Document>> {
    let path = match (beir_dir, jsonl) {
        (Some(dir), _) => dir.join("corpus.jsonl"),
        (None, Some(file)) => file.to_path_buf(),
        (None, None) => anyhow::bail!("pass --beir DIR or --jsonl FILE"),
    };
    let mut docs = Vec::new();
    beir::read_corpus(&path, |d| {
        docs.push(d);
        Ok(())
    })?;
    Ok(docs)
}

pub async fn ingest(
    mut settings: Settings,
    beir_dir: Option<&Path>,
    jsonl: Option<&Path>,
    batch: usize,
) -> anyhow::Result<()> {
    settings.server.seed_demo = false;
    // Documents only: no need to load the image model.
    settings.visual.enabled = false;
    let docs = read_collection(beir_dir, jsonl)?;
    let n = docs.len();
    let started = Instant::now();
    let (engine, _) = Engine::open(settings).await?;
    let opened = started.elapsed().as_secs_f64();
    let t = ingest_docs(&engine, docs, batch, true).await?;
    let persist_started = Instant::now();
    engine.persist()?;
    let persist_s = persist_started.elapsed().as_secs_f64();
    let total = started.elapsed().as_secs_f64();
    eprintln!(
        "ingested {n} documents into {} in {total:.1} s: open {opened:.1} s, embedding {:.1} s, \
         store {:.1} s, bm25 {:.1} s, hnsw {:.1} s, persist {persist_s:.1} s",
        engine.data_dir().display(),
        t.embed_s,
        t.store_s,
        t.bm25_s,
        t.hnsw_s
    );
    Ok(())
}

pub async fn evaluate(
    mut settings: Settings,
    beir_dir: &Path,
    methods: &[String],
    split: &str,
    json: bool,
    temporary: bool,
) -> anyhow::Result<()> {
    settings.server.seed_demo = false;
    settings.visual.enabled = false;
    if temporary {
        // A throwaway index can be rebuilt, so skip per-batch fsync.
        settings.store.fsync = false;
    }
    let (engine, _) = Engine::open(settings).await?;
    if engine.store().is_empty() {
        let docs = read_collection(Some(beir_dir), None)?;
        let started = Instant::now();
        let t = ingest_docs(&engine, docs, 256, !json).await?;
        eprintln!(
            "indexed in {:.1} s (embedding {:.1} s)",
            started.elapsed().as_secs_f64(),
            t.embed_s
        );
    }
    let results = eval::evaluate(&engine, beir_dir, split, methods).await?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&results)?)?;
    } else {
        writeln!(
            out,
            "{:<8} {:>9} {:>11} {:>8}",
            "method", "nDCG@10", "Recall@100", "MRR@10"
        )?;
        for (m, r) in &results {
            writeln!(
                out,
                "{m:<8} {:>9.4} {:>11.4} {:>8.4}",
                r.ndcg_10, r.recall_100, r.mrr_10
            )?;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
