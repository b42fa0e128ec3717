//! The command-line contract: `mnemos eval --json` prints exactly one JSON
//! object with every method's metrics, here on the demo collection shipped
//! in `config/demo` (BEIR layout).

use std::path::PathBuf;
use std::process::Command;

use crate::common::model_dir;

#[test]
fn eval_json_on_the_demo_collection() {
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/demo");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mnemos"));
    cmd.arg("eval").arg("--beir").arg(&demo).arg("--json");
    let methods: &[&str] = match model_dir() {
        Some(m) => {
            cmd.arg("--model-dir").arg(m);
            &["bm25", "dense", "rrf", "linear"]
        }
        None => {
            cmd.args(["--no-dense", "--backends", "bm25"]);
            &["bm25"]
        }
    };
    let out = cmd
        .env("RUST_LOG", "warn")
        .output()
        .expect("running mnemos eval");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "exactly one line on stdout: {stdout}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for m in methods {
        for metric in ["ndcg@10", "recall@100", "mrr@10"] {
            let v = json[m][metric].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&v), "{m} {metric}: {json}");
        }
        // The demo queries were written to be answerable: every method must
        // find most of the relevant documents.
        assert!(
            json[m]["recall@100"].as_f64().unwrap() >= 0.8,
            "{m}: {json}"
        );
        assert!(json[m]["ndcg@10"].as_f64().unwrap() >= 0.5, "{m}: {json}");
    }

    // Unknown methods are refused with a message naming them.
    let out = Command::new(env!("CARGO_BIN_EXE_mnemos"))
        .args(["eval", "--no-dense", "--backends", "splade", "--beir"])
        .arg(&demo)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("splade"));
}

/// `mnemos eval-visual --json` on 60 images of each data set: one JSON
/// object keyed by data set, with the accuracy grid, the linear probe,
/// unlearning and pruning.
#[test]
fn eval_visual_json_on_a_few_images() {
    let Some(model) = crate::common::vision_dir() else {
        return;
    };
    let data = std::env::var_os("MNEMOS_SHARED_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    if !data.join("mnist").is_dir() || !data.join("digits").is_dir() {
        eprintln!(
            "skipping: mnist/ and digits/ not found in {}; set MNEMOS_SHARED_DATA",
            data.display()
        );
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_mnemos"))
        .args(["eval-visual", "--json", "--limit", "60", "--threads", "2"])
        .arg("--model-dir")
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running mnemos eval-visual");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one line on stdout: {stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for set in ["mnist", "digits"] {
        let report = &json["datasets"][set];
        let acc = report["accuracy"]["rank_voting"]["10"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{set}: {json}");
        assert!(report["linear_probe"]["accuracy"].is_f64(), "{set}");
        assert_eq!(report["unlearn"]["class_accuracy_after"], 0.0, "{set}");
        assert!(report["pruning"]["soft"]["accuracy"].is_object(), "{set}");
    }
    assert_eq!(json["encode"]["images"], 120);

    // A data directory that is not there is a message, not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_mnemos"))
        .args([
            "eval-visual",
            "--data",
            "/nonexistent-mnemos-data",
            "--model-dir",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-mnemos-data"));
}
