//! Bad input ends with a clear message and a non-zero exit, never a panic.

use crate::common::{harness, scenarios, stderr};

async fn fails_with(args: &[&str], expected: &str) {
    let out = harness(args).await;
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(
        err.contains(expected),
        "{args:?}: expected `{expected}` in:\n{err}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
}

#[tokio::test]
async fn bad_input_is_reported() {
    let trivial = scenarios("trivial.toml");
    let trivial = trivial.to_str().unwrap();
    let mixed = scenarios("mixed.toml");
    let mixed = mixed.to_str().unwrap();
    let target = "http://127.0.0.1:1";
    let base = ["--target", target, "--scenario", trivial];
    let with = |extra: &[&'static str]| -> Vec<String> {
        base.iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "--target URL is required"),
        (with(&["--rate", "abc"]), "invalid value 'abc'"),
        (with(&["--rate=-5"]), "--rate must be a positive number"),
        (with(&["--rate", "10", "--duration", "5x"]), "unknown unit"),
        (
            with(&["--rate", "10", "--closed", "3"]),
            "no meaning with --closed",
        ),
        (
            vec![
                "--target".into(),
                "https://x:1".into(),
                "--scenario".into(),
                trivial.into(),
                "--rate".into(),
                "1".into(),
            ],
            "https is not supported",
        ),
        (
            vec![
                "--target".into(),
                target.into(),
                "--scenario".into(),
                "/nonexistent/s.toml".into(),
                "--rate".into(),
                "1".into(),
            ],
            "cannot read",
        ),
        (
            vec![
                "--target".into(),
                target.into(),
                "--scenario".into(),
                mixed.into(),
                "--rate".into(),
                "1".into(),
            ],
            "need a token",
        ),
        (
            with(&["--rate", "10", "--duration", "1s"]),
            "cannot connect",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails_with(&args, expected).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[request]]\nname = \"x\"\nkind = \"get\"\nweight = 1\nwieght = 2\n",
    )
    .unwrap();
    let bad = bad.to_str().unwrap();
    fails_with(
        &["--target", target, "--scenario", bad, "--rate", "1"],
        "unknown field `wieght`",
    )
    .await;
    let missing_dir = dir.path().join("no/such/dir/r.json");
    fails_with(
        &[
            "--target",
            target,
            "--scenario",
            trivial,
            "--rate",
            "1",
            "--json-report",
            missing_dir.to_str().unwrap(),
        ],
        "directory does not exist",
    )
    .await;
}

/// Ctrl-C (SIGINT) ends a long run early, and the reports are still
/// written, marked interrupted, covering only the time run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_early_and_still_reports() {
    // Its load would make the timing-sensitive tests' harness lag.
    let _serial = crate::common::SERIAL.lock().await;
    let url = format!("http://{}", crate::common::start_trivial().await);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let md = dir.path().join("r.md");
    let scenario = scenarios("trivial.toml");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mnemos-loadtest"))
        .args([
            "--target",
            &url,
            "--rate",
            "200",
            "--duration",
            "60s",
            "--quiet",
        ])
        .arg("--scenario")
        .arg(&scenario)
        .arg("--json-report")
        .arg(&json)
        .arg("--md-report")
        .arg(&md)
        .env_remove("MNEMOS_ADMIN_TOKEN")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("starting mnemos-loadtest");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let pid = child.id().expect("still running").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill -INT");
    assert!(kill.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("the harness stops within seconds of Ctrl-C, not after 60 s")
        .expect("waiting for the harness");
    assert!(status.success(), "exit status {status}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON report written"))
            .expect("the JSON report parses");
    assert_eq!(report["interrupted"], true);
    let ran = report["duration_s"].as_f64().unwrap();
    assert!(ran > 0.5 && ran < 20.0, "duration_s {ran}");
    assert!(report["ok"].as_u64().unwrap() > 0);
    let summary = std::fs::read_to_string(&md).expect("Markdown report written");
    assert!(summary.contains("Interrupted"));
}
