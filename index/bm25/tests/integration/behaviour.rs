//! The read/write contract of `Bm25Index` on hand-made corpora.

use std::collections::HashMap;

use mnemos_bm25::{Bm25Error, Bm25Index, Bm25Params};
use mnemos_index_core::{Document, Hit, IndexError, IndexRead, IndexWrite, Seq};

fn doc(title: &str, text: &str) -> Document {
    Document {
        id: String::new(),
        title: title.to_owned(),
        text: text.to_owned(),
        metadata: serde_json::Value::Null,
    }
}

fn ids(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

fn index_with(docs: &[(&str, Seq, &str)]) -> Bm25Index {
    let index = Bm25Index::in_ram(Bm25Params::default()).expect("in-RAM index");
    let docs: Vec<(&str, Seq, Document)> = docs
        .iter()
        .map(|&(id, seq, text)| (id, seq, doc("", text)))
        .collect();
    let entries: Vec<(&str, Seq, &Document)> =
        docs.iter().map(|(id, seq, d)| (*id, *seq, d)).collect();
    index.upsert(&entries).expect("upsert");
    index
}

#[test]
fn writes_are_visible_when_they_return() {
    let index = index_with(&[
        ("cat", 1, "the cat sat on the mat"),
        ("dog", 2, "a dog chased the cat"),
        ("fish", 3, "fish swim in water"),
    ]);
    assert_eq!(index.len(), 3);
    assert_eq!(index.doc_count(), 3);
    let hits = index.search("cat", 10).unwrap();
    let mut found = ids(&hits);
    found.sort_unstable();
    assert_eq!(found, ["cat", "dog"]);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

    index.remove(&["cat", "no-such-id"]).unwrap();
    assert_eq!(ids(&index.search("cat", 10).unwrap()), ["dog"]);
    assert_eq!(index.len(), 2);
    assert!(index.search("mat", 10).unwrap().is_empty());

    index.remove(&[]).unwrap();
    index.upsert(&[]).unwrap();
    index.persist().unwrap();
    assert_eq!(index.len(), 2);
}

#[test]
fn upserting_an_id_again_replaces_its_document() {
    let index = index_with(&[("a", 1, "apple orchard"), ("b", 2, "pear tree")]);
    let newer = doc("Bananas", "banana plantation");
    index.upsert(&[("a", 7, &newer)]).unwrap();

    assert!(index.search("apple", 10).unwrap().is_empty());
    assert_eq!(ids(&index.search("banana", 10).unwrap()), ["a"]);
    assert_eq!(index.len(), 2);
    let versions = index.indexed_versions().unwrap();
    assert_eq!(versions, HashMap::from([("a".into(), 7), ("b".into(), 2)]));

    // Twice in one batch: the later entry wins.
    let first = doc("", "first version");
    let second = doc("", "second version");
    index
        .upsert(&[("c", 8, &first), ("c", 9, &second)])
        .unwrap();
    assert!(index.search("first", 10).unwrap().is_empty());
    assert_eq!(ids(&index.search("second", 10).unwrap()), ["c"]);
    assert_eq!(index.indexed_versions().unwrap()["c"], 9);
}

#[test]
fn a_batch_with_an_unindexable_id_is_refused_whole() {
    let index = index_with(&[]);
    let long_id = "x".repeat(70_000);
    let d = doc("", "some text");
    let err = index
        .upsert(&[("ok", 1, &d), (&long_id, 2, &d)])
        .unwrap_err();
    assert!(matches!(err, IndexError::InvalidArgument(_)), "{err}");
    assert_eq!(index.len(), 0);
}

#[test]
fn reopening_from_disk_keeps_documents_and_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bm25");
    {
        let index = Bm25Index::open(&path, Bm25Params::default()).unwrap();
        let d1 = doc("Aspirin", "reduces the risk of stroke");
        let d2 = doc("Statins", "lower cholesterol");
        index.upsert(&[("d1", 10, &d1), ("d2", 11, &d2)]).unwrap();
        index.remove(&["d2"]).unwrap();
        index.persist().unwrap();
        // While it is open, nobody else may write to the directory.
        let second = Bm25Index::open(&path, Bm25Params::default());
        assert!(
            matches!(second, Err(Bm25Error::Locked { .. })),
            "{:?}",
            second.err()
        );
    }
    let index = Bm25Index::open(&path, Bm25Params::default()).unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(
        index.indexed_versions().unwrap(),
        HashMap::from([("d1".into(), 10)])
    );
    assert_eq!(ids(&index.search("strokes", 5).unwrap()), ["d1"]);
    assert_eq!(ids(&index.search("aspirin", 5).unwrap()), ["d1"]);
}

#[test]
fn a_directory_that_is_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = Bm25Index::open(&file, Bm25Params::default()).err().unwrap();
    assert!(matches!(err, Bm25Error::Directory { .. }), "{err}");
}

#[test]
fn scores_follow_the_bm25_formula_for_any_k1_and_b() {
    // Contents are title + "\n" + text, title empty: lengths 2 and 4 tokens.
    let index = index_with(&[
        ("short", 1, "apple banana"),
        ("long", 2, "apple apple cherry date"),
    ]);
    let expected = |p: Bm25Params, tf: f32, dl: f32| {
        let (n, df, avgdl) = (2.0f32, 2.0f32, 3.0f32);
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        idf * tf * (p.k1 + 1.0) / (tf + p.k1 * (1.0 - p.b + p.b * dl / avgdl))
    };
    for params in [
        Bm25Params::default(),
        Bm25Params::LUCENE_CLASSIC,
        Bm25Params { k1: 0.0, b: 0.0 },
        Bm25Params { k1: 3.0, b: 1.0 },
    ] {
        let hits = index.search_with_params("apple", 10, params).unwrap();
        let score: HashMap<&str, f32> = hits.iter().map(|h| (h.id.as_str(), h.score)).collect();
        assert!(
            (score["short"] - expected(params, 1.0, 2.0)).abs() < 1e-5,
            "{params:?}"
        );
        assert!(
            (score["long"] - expected(params, 2.0, 4.0)).abs() < 1e-5,
            "{params:?}"
        );
    }
    // Without saturation or length normalisation, tf alone orders them …
    let tf_only = Bm25Params { k1: 10.0, b: 0.0 };
    assert_eq!(
        ids(&index.search_with_params("apple", 10, tf_only).unwrap())[0],
        "long"
    );
    // … and with k1 = 0 only the presence of a term counts.
    let binary = Bm25Params { k1: 0.0, b: 0.5 };
    let hits = index.search_with_params("apple", 10, binary).unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].score, hits[1].score);
    let bad = Bm25Params { k1: -1.0, b: 0.5 };
    assert!(index.search_with_params("apple", 10, bad).is_err());
}

#[test]
fn queries_are_analysed_like_documents() {
    let index = index_with(&[
        ("runner", 1, "She runs every morning"),
        ("possessive", 2, "Alzheimer's disease progression"),
        ("number", 3, "p < 0.05 in the treated group"),
    ]);
    assert_eq!(ids(&index.search("running", 10).unwrap()), ["runner"]);
    assert_eq!(ids(&index.search("ALZHEIMER", 10).unwrap()), ["possessive"]);
    assert_eq!(ids(&index.search("0.05", 10).unwrap()), ["number"]);
    // Nothing indexable, or nothing asked for: no hits, no error.
    for query in ["", "   ", "the of and to be", "?!(*)", "unknownword"] {
        assert!(index.search(query, 10).unwrap().is_empty(), "{query:?}");
    }
    assert!(index.search("runs", 0).unwrap().is_empty());
    assert_eq!(index.analyze("The Runner's shoes"), ["runner", "shoe"]);
}

#[test]
fn repeated_query_terms_weigh_more() {
    let index = index_with(&[("a", 1, "heart attack"), ("b", 2, "brain stroke")]);
    let once = index.search("heart brain", 10).unwrap();
    assert!((once[0].score - once[1].score).abs() < 1e-6);
    let twice = index.search("heart heart brain", 10).unwrap();
    assert_eq!(twice[0].id, "a");
    assert!((twice[0].score - 2.0 * twice[1].score).abs() < 1e-5);
}

#[test]
fn k_limits_results_to_the_best() {
    let texts: Vec<String> = (0..50)
        .map(|i| format!("word {}", "x ".repeat(i)))
        .collect();
    let docs: Vec<Document> = texts.iter().map(|t| doc("", t)).collect();
    let index = Bm25Index::in_ram(Bm25Params::default()).unwrap();
    let names: Vec<String> = (0..50).map(|i| format!("d{i}")).collect();
    let entries: Vec<(&str, Seq, &Document)> = names
        .iter()
        .zip(&docs)
        .map(|(n, d)| (n.as_str(), 1, d))
        .collect();
    index.upsert(&entries).unwrap();
    // Shorter documents score higher for the same tf: d0 is the best.
    assert_eq!(ids(&index.search("word", 3).unwrap()), ["d0", "d1", "d2"]);
    assert_eq!(index.search("word", usize::MAX).unwrap().len(), 50);
}

#[test]
fn searches_run_while_another_thread_writes() {
    let index = index_with(&[("base", 0, "stable document about rivers")]);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..20u64 {
                let d = doc("", &format!("river delta number {i}"));
                let id = format!("w{i}");
                index.upsert(&[(id.as_str(), i, &d)]).unwrap();
            }
        });
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..50 {
                    let hits = index.search("rivers", 5).unwrap();
                    assert!(!hits.is_empty());
                }
            });
        }
    });
    assert_eq!(index.len(), 21);
}
