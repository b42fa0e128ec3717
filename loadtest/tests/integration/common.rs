//! Shared helpers: starting servers, running the binary, reading reports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use mnemos_gateway::{app, AppState};

pub const TOKEN: &str = "loadtest-admin-token";

/// Tests that measure time run one at a time, so they do not steal each
/// other's two cores and make the harness look late.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn demo(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/demo")
        .join(file)
}

pub fn scenarios(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(file)
}

/// Runs the harness binary to completion. The admin token from the
/// environment is removed so that only the test's own flags count.
pub async fn harness<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    tokio::process::Command::new(env!("CARGO_BIN_EXE_mnemos-loadtest"))
        .args(args)
        .env_remove("MNEMOS_ADMIN_TOKEN")
        .output()
        .await
        .expect("running mnemos-loadtest")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a successful run and returns its JSON report.
pub fn report(out: &Output, path: &Path) -> serde_json::Value {
    assert!(
        out.status.success(),
        "mnemos-loadtest failed ({}):\n{}\n{}",
        out.status,
        stderr(out),
        String::from_utf8_lossy(&out.stdout)
    );
    let text = std::fs::read_to_string(path).expect("reading the JSON report");
    serde_json::from_str(&text).expect("the JSON report parses")
}

/// A real gateway (BM25 only, to start fast) on 127.0.0.1, over a fresh data
/// directory holding the demo collection.
pub struct Gateway {
    pub url: String,
    _dir: tempfile::TempDir,
}

pub async fn start_gateway() -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let mut s = mnemos_config::Loader::new().build().unwrap();
    s.server.data_dir = dir.path().to_path_buf();
    s.server.admin_token = Some(TOKEN.into());
    s.server.seed_demo = false;
    s.dense.enabled = false;
    s.visual.enabled = false;
    s.search.default_backends = vec!["bm25".into()];
    let state = Arc::new(AppState::new(&s));
    let (engine, _) = mnemos_engine::Engine::open(s).await.unwrap();
    let mut docs = Vec::new();
    mnemos_engine::beir::read_corpus(&demo("corpus.jsonl"), |d| {
        docs.push(d);
        Ok(())
    })
    .unwrap();
    engine.upsert(docs).await.unwrap();
    state.set_engine(Arc::new(engine));
    state.mark_ready();
    let url = serve(app(state)).await;
    Gateway { url, _dir: dir }
}

/// Serves an axum router on an ephemeral port; returns its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

/// The harness's own trivial endpoint on an ephemeral port.
pub async fn start_trivial() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(mnemos_loadtest::trivial::serve(listener));
    addr
}
