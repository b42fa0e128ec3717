//! Coordinated omission: a server that stalls every request for a second,
//! once, in the middle of an open-loop run. Requests that were due during
//! the stall must show it in their latency, because latency is measured
//! from each request's intended send time — a harness that measured from
//! when it got round to sending would report a p99 of a few milliseconds.

use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;

use crate::common::{harness, report, scenarios, serve, SERIAL};

/// The request that starts the stall: about one second into a 200 req/s run.
const STALL_AT: u64 = 200;
const STALL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Stall {
    seen: AtomicU64,
    until: Mutex<Option<Instant>>,
}

async fn stalling(State(s): State<Arc<Stall>>) -> &'static str {
    let n = s.seen.fetch_add(1, Ordering::Relaxed) + 1;
    let until = {
        let mut until = s.until.lock().unwrap();
        if until.is_none() && n >= STALL_AT {
            *until = Some(Instant::now() + STALL);
        }
        *until
    };
    if let Some(until) = until {
        tokio::time::sleep_until(until.into()).await;
    }
    "ok"
}

async fn run(extra: &[&str]) -> serde_json::Value {
    let url = serve(
        axum::Router::new()
            .route("/", get(stalling))
            .with_state(Arc::new(Stall::default())),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let mut args: Vec<OsString> = ["--target", &url, "--duration", "3s", "--connections", "4"]
        .iter()
        .chain(extra)
        .map(OsString::from)
        .collect();
    args.extend([
        "--scenario".into(),
        scenarios("trivial.toml").into_os_string(),
        "--json-report".into(),
        json.clone().into_os_string(),
    ]);
    report(&harness(args).await, &json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_latency_includes_a_stall() {
    let _serial = SERIAL.lock().await;
    // Four connections: during the stall only four requests are on the
    // wire; the other ~200 that fall due wait for a connection. A harness
    // that started their clocks when they got one would see four slow
    // requests out of 600, and a p99 of a few milliseconds.
    let v = run(&["--rate", "200", "--arrival", "constant"]).await;
    let t = &v["requests"]["get:/"];
    // About a third of the requests fell due during the stall and waited
    // between 0 and 1000 ms, so p99 is near a second.
    let p99 = t["p99_ms"].as_f64().unwrap();
    assert!(p99 >= 400.0, "p99 {p99} ms hides the stall: {t:#}");
    assert!(t["p90_ms"].as_f64().unwrap() >= 300.0, "{t:#}");
    assert_eq!(t["errors"], 0, "{t:#}");
    assert_eq!(v["mode"], "open");

    // The same stall seen by a closed loop, which stops sending while it
    // waits: only its four stuck requests are slow, and the percentiles
    // hide the second-long outage — what the open loop exists to avoid.
    let v = run(&["--closed", "4"]).await;
    let t = &v["requests"]["get:/"];
    assert_eq!(v["mode"], "closed");
    assert!(t["max_ms"].as_f64().unwrap() >= 800.0, "{t:#}");
    assert!(t["p99_ms"].as_f64().unwrap() < 400.0, "{t:#}");
}
