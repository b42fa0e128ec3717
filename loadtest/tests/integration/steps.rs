//! Step mode finds the rate where a server stops keeping up, and closed
//! loop is labelled as such.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use axum::routing::get;

use crate::common::{harness, report, scenarios, serve, start_trivial, SERIAL};

/// A server that takes 20 ms per request: over one connection it serves
/// at most 50 requests per second.
async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(20)).await;
    "ok"
}

/// Arguments of a constant-arrival step-mode run of the trivial scenario,
/// plus `extra`.
fn step_args(url: &str, json: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        "--target",
        url,
        "--arrival",
        "constant",
        "--step",
        "--step-factor",
        "2",
        "--slo-p99-ms",
        "1000",
    ]
    .iter()
    .chain(extra)
    .map(OsString::from)
    .collect();
    v.extend([
        "--scenario".into(),
        scenarios("trivial.toml").into_os_string(),
        "--json-report".into(),
        json.as_os_str().to_owned(),
    ]);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_mode_stops_where_the_server_falls_behind() {
    let _serial = SERIAL.lock().await;
    let url = serve(axum::Router::new().route("/", get(slow))).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let plots = dir.path().join("plots");
    let mut args = step_args(
        &url,
        &json,
        &[
            "--rate",
            "20",
            "--max-rate",
            "80",
            "--step-duration",
            "2s",
            "--connections",
            "1",
        ],
    );
    args.extend(["--plots".into(), plots.clone().into_os_string()]);
    let v = report(&harness(args).await, &json);
    let steps = v["steps"].as_array().expect("steps");
    // 20 and 40 req/s fit in one 20 ms connection; 80 does not.
    assert_eq!(steps.len(), 3, "{steps:#?}");
    assert_eq!(steps[0]["passed"], true, "{:#}", steps[0]);
    assert_eq!(steps[1]["passed"], true, "{:#}", steps[1]);
    assert_eq!(steps[2]["passed"], false, "{:#}", steps[2]);
    assert!(!steps[2]["reasons"].as_array().unwrap().is_empty());
    assert_eq!(v["sustainable_rate"], 40.0);
    assert_eq!(v["slo_p99_ms"], 1000.0);
    assert!(std::fs::metadata(plots.join("steps.svg")).unwrap().len() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_mode_on_a_trivial_endpoint_reaches_max_rate() {
    let _serial = SERIAL.lock().await;
    let url = format!("http://{}", start_trivial().await);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let args = step_args(
        &url,
        &json,
        &[
            "--rate",
            "100",
            "--max-rate",
            "400",
            "--step-duration",
            "1s",
        ],
    );
    let v = report(&harness(args).await, &json);
    let steps = v["steps"].as_array().expect("steps");
    let rates: Vec<f64> = steps
        .iter()
        .map(|s| s["offered_rate"].as_f64().unwrap())
        .collect();
    assert_eq!(rates, [100.0, 200.0, 400.0], "{steps:#?}");
    assert!(steps.iter().all(|s| s["passed"] == true), "{steps:#?}");
    assert_eq!(v["sustainable_rate"], 400.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_is_labelled() {
    let _serial = SERIAL.lock().await;
    let url = format!("http://{}", start_trivial().await);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let trivial = scenarios("trivial.toml");
    let out = harness([
        "--target".as_ref(),
        url.as_ref(),
        "--scenario".as_ref(),
        trivial.as_os_str(),
        "--closed".as_ref(),
        "2".as_ref(),
        "--duration".as_ref(),
        "1s".as_ref(),
        "--json-report".as_ref(),
        json.as_os_str(),
    ] as [&std::ffi::OsStr; 10])
    .await;
    let v = report(&out, &json);
    assert_eq!(v["mode"], "closed");
    assert_eq!(v["closed_workers"], 2);
    assert!(v["offered_rate"].is_null());
    assert!(v["requests"]["get:/"]["ok"].as_u64().unwrap() > 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("closed loop"));
}
