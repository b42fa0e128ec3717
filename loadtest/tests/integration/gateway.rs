//! A mixed read/write run with removes against a real gateway: no removed
//! document is served after its removal was acknowledged, every upsert is
//! readable, every request type succeeds, and the reports are complete.

use crate::common::{demo, harness, report, start_gateway, stderr, SERIAL, TOKEN};

const SCENARIO: &str = r#"
name = "it-mixed"
# The first 40 demo documents: title searches keep meeting their copies.
corpus_limit = 40

[[request]]
name = "search:bm25"
kind = "search"
weight = 4
backends = ["bm25"]
k = 10

[[request]]
name = "search:titles"
kind = "search"
weight = 3
backends = ["bm25"]
k = 10
query_source = "titles"

[[request]]
name = "upsert"
kind = "upsert"
weight = 2

[[request]]
name = "remove"
kind = "remove"
weight = 1

[[request]]
name = "remove:batch"
kind = "remove"
weight = 0.5
batch = 3

[[request]]
name = "healthz"
kind = "get"
weight = 0.5
path = "/healthz"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_churn_against_a_real_gateway_is_correct() {
    let _serial = SERIAL.lock().await;
    let gateway = start_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("mixed.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let json = dir.path().join("report.json");
    let md = dir.path().join("report.md");
    let plots = dir.path().join("plots");
    let out = harness([
        "--target".as_ref(),
        gateway.url.as_ref(),
        "--scenario".as_ref(),
        scenario.as_os_str(),
        "--rate".as_ref(),
        "150".as_ref(),
        "--duration".as_ref(),
        "4s".as_ref(),
        "--admin-token".as_ref(),
        TOKEN.as_ref(),
        "--queries".as_ref(),
        demo("queries.jsonl").as_os_str(),
        "--corpus".as_ref(),
        demo("corpus.jsonl").as_os_str(),
        "--connections".as_ref(),
        "16".as_ref(),
        "--json-report".as_ref(),
        json.as_os_str(),
        "--md-report".as_ref(),
        md.as_os_str(),
        "--plots".as_ref(),
        plots.as_os_str(),
        "--cleanup".as_ref(),
    ] as [&std::ffi::OsStr; 23])
    .await;
    let v = report(&out, &json);

    // Correctness under churn.
    let c = &v["correctness"];
    assert_eq!(v["violations"], 0, "{c:#}");
    assert_eq!(v["missing_after_upsert"], 0, "{c:#}");
    assert!(c["removes_acknowledged"].as_u64().unwrap() > 10, "{c:#}");
    assert!(c["searches_checked"].as_u64().unwrap() > 50, "{c:#}");
    // The check met the run's own documents, so it could have failed.
    assert!(c["own_hits"].as_u64().unwrap() > 0, "{c:#}");
    assert_eq!(
        c["upserts_verified"], c["upserts_acknowledged"],
        "every acknowledged upsert was looked up: {c:#}"
    );
    assert_eq!(c["remove_not_found"], 0, "{c:#}");

    // The contract fields, and every request type worked.
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["mode"], "open");
    assert_eq!(v["offered_rate"], 150.0);
    assert!(v["achieved_rate"].as_f64().unwrap() > 0.0);
    assert!(v["duration_s"].as_f64().unwrap() > 3.9);
    assert!(v["harness"]["behind_schedule"].is_boolean());
    assert!(v["harness"]["lag_p99_ms"].is_number());
    for ty in [
        "search:bm25",
        "search:titles",
        "upsert",
        "remove",
        "remove:batch",
        "healthz",
    ] {
        let t = &v["requests"][ty];
        assert!(
            t["ok"].as_u64().unwrap() > 0,
            "{ty}: {t:#}\n{}",
            stderr(&out)
        );
        assert_eq!(t["errors"], 0, "{ty}: {t:#}\n{:#}", v["error_samples"]);
        for key in ["sent", "p50_ms", "p99_ms", "p999_ms", "max_ms", "timeouts"] {
            assert!(t.get(key).is_some(), "{ty} lacks {key}");
        }
        assert!(!v["series"][ty].as_array().unwrap().is_empty(), "{ty}");
    }

    // Markdown on stdout and in the file; non-empty SVG plots.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| search:titles |"), "{stdout}");
    assert!(std::fs::read_to_string(&md)
        .unwrap()
        .contains("**0 violations**"));
    for plot in [
        "timeline-search-bm25.svg",
        "timeline-remove-batch.svg",
        "spectrum.svg",
    ] {
        let svg = std::fs::read_to_string(plots.join(plot)).expect(plot);
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{plot}"
        );
    }
    // --cleanup removed what the run left behind.
    assert!(
        stderr(&out).contains("cleanup: removed"),
        "{}",
        stderr(&out)
    );
}
