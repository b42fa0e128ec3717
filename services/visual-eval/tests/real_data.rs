//! The evaluation on a few hundred real images: MNIST and the digits from
//! the shared data folder, embedded by the installed EfficientNet-Lite0.
//!
//! Both are found through [`inputs`]; where either is absent (a user's
//! machine) the tests skip with a message saying why.

use std::path::{Path, PathBuf};

use mnemos_vision::{EncoderOptions, ImageEncoder};
use mnemos_visual::Aggregation;
use mnemos_visual_eval::{data, encode, knn, run, EvalOptions, Split, KS};

/// `(model dir, data dir)`: `$MNEMOS_VISION_MODEL_DIR`, else the checkout's
/// `models/weights/efficientnet-lite0` (where `scripts/install-models.sh`
/// puts it); `$MNEMOS_SHARED_DATA`, else `shared/data` beside the
/// workspace. `None`, after printing why, when either is missing.
fn inputs() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = std::env::var_os("MNEMOS_VISION_MODEL_DIR").map_or_else(
        || root.join("models/weights/efficientnet-lite0"),
        PathBuf::from,
    );
    let data = std::env::var_os("MNEMOS_SHARED_DATA")
        .map_or_else(|| root.join("../shared/data"), PathBuf::from);
    let has_weights = std::fs::read_dir(&model).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x == "pth" || x == "safetensors")
        })
    });
    if !has_weights {
        eprintln!(
            "skipping: EfficientNet-Lite0 weights not found in {}; run scripts/install-models.sh \
             or set MNEMOS_VISION_MODEL_DIR",
            model.display()
        );
        return None;
    }
    if !data.join("mnist").is_dir() || !data.join("digits").is_dir() {
        eprintln!(
            "skipping: mnist/ and digits/ not found in {}; set MNEMOS_SHARED_DATA",
            data.display()
        );
        return None;
    }
    Some((model, data))
}

/// The evaluation scores every k from one search for the largest; that
/// must agree with classifying at each k directly.
#[test]
fn grid_scoring_matches_classify() {
    let Some((model, data_dir)) = inputs() else {
        return;
    };
    let mut set = data::load_digits(&data_dir.join("digits")).unwrap();
    assert_eq!(set.len(), 1797, "the shipped digits have no header row");
    set.truncate(180);
    let encoder = ImageEncoder::load(&model, EncoderOptions::default()).unwrap();
    let embeddings = encode::embed_all(&encoder, &set, 2, &|_, _| {}).unwrap();
    let split = Split::new("digits", embeddings, &set.labels, 3);
    let memory = split.memory().unwrap();
    let grid: Vec<(Aggregation, usize)> = Aggregation::ALL
        .iter()
        .flat_map(|&a| KS.iter().map(move |&k| (a, k)))
        .collect();
    let queries = split.query_refs();
    let correct = knn::correctness(
        &memory,
        memory.distance_range(),
        &queries,
        &split.query_labels,
        &grid,
        2,
    )
    .unwrap();
    for (cell, &(aggregation, k)) in grid.iter().enumerate() {
        for (q, query) in queries.iter().enumerate() {
            let decision = memory.classify(query, k, aggregation).unwrap();
            let right = decision.label == Some(knn::label(split.query_labels[q]));
            assert_eq!(correct[cell][q], right, "{aggregation:?} k={k} query {q}");
        }
    }
}

#[test]
fn quick_run_reports_every_figure() {
    let Some((model_dir, data_dir)) = inputs() else {
        return;
    };
    let report = run(&EvalOptions {
        model_dir,
        data_dir,
        threads: 2,
        limit: Some(250),
    })
    .unwrap();
    let json = serde_json::to_value(&report).unwrap();
    for name in ["mnist", "digits"] {
        let set = &json["datasets"][name];
        assert_eq!(set["images"], 250, "{name}");
        for a in Aggregation::ALL {
            for k in KS {
                let acc = set["accuracy"][a.name()][k.to_string()].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&acc), "{name} {a:?} {k}: {acc}");
            }
        }
        // Even 200 memory items of either set classify far above chance.
        let rank_voting = set["accuracy"]["rank_voting"]["10"].as_f64().unwrap();
        assert!(rank_voting > 0.5, "{name}: {rank_voting}");
        assert!(set["linear_probe"]["accuracy"].as_f64().unwrap() > 0.5);
        // Cross-validation queries every image once, and its last fold is
        // the fixed split.
        let cv = &set["cross_validated"];
        assert_eq!(cv["queries"], 250, "{name}");
        let cv_rank_voting = cv["accuracy"]["rank_voting"]["10"].as_f64().unwrap();
        assert!(cv_rank_voting > 0.5, "{name}: {cv_rank_voting}");
        let d = &cv["rank_voting_vs_plurality"]["10"];
        let p = d["p_value"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{d}");

        let unlearn = &set["unlearn"];
        assert!(unlearn["removed"].as_u64().unwrap() > 0);
        // The durable memory holds the same items as the grid's memory.
        assert_eq!(
            unlearn["before"]["overall"],
            set["accuracy"]["rank_voting"]["10"]
        );
        assert_eq!(unlearn["class_accuracy_after"], 0.0, "{name}");
        assert_eq!(unlearn["class_accuracy_after_reopen"], 0.0, "{name}");
        let recovery = unlearn["recovery"].as_array().unwrap();
        let added: Vec<u64> = recovery
            .iter()
            .map(|r| r["added"].as_u64().unwrap())
            .collect();
        assert_eq!(added[0], 1);
        assert!(added.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            recovery.last().unwrap()["added"],
            unlearn["removed"],
            "fewer than 100 of the class in a 200-item memory: all come back"
        );

        let pruning = &set["pruning"];
        assert_eq!(
            pruning["before"]["rank_voting"],
            set["accuracy"]["rank_voting"]["10"]
        );
    }
    assert_eq!(report.encode.images, 500);
    assert!(report.encode.images_per_s > 0.0);
}
