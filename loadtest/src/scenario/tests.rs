//! Scenario parsing and validation.

use super::*;

fn parse(text: &str) -> Result<Scenario> {
    Scenario::parse(text, Path::new("/base"), Path::new("/base/s.toml"))
}

fn message(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const MIXED: &str = r#"
    name = "mixed"
    queries = "data/queries.jsonl"
    corpus = "/abs/corpus.jsonl"
    arrival = "constant"
    [[request]]
    name = "search:rrf"
    kind = "search"
    weight = 8
    backends = ["bm25", "dense"]
    k = 10
    fusion = { method = "rrf", k = 60 }
    [[request]]
    name = "upsert"
    kind = "upsert"
    weight = 1.5
    batch = 2
    [[request]]
    name = "remove"
    kind = "remove"
    weight = 1
"#;

#[test]
fn parses_a_mixed_scenario() {
    let s = parse(MIXED).unwrap();
    assert_eq!(s.name, "mixed");
    assert_eq!(
        s.queries.as_deref().unwrap(),
        Path::new("/base/data/queries.jsonl")
    );
    assert_eq!(s.corpus.as_deref().unwrap(), Path::new("/abs/corpus.jsonl"));
    assert_eq!(s.arrival, Some(Arrival::Constant));
    assert_eq!(s.requests.len(), 3);
    match &s.requests[0].op {
        Op::Search {
            backends,
            k,
            fusion: Some(FusionRequest::Rrf { k: Some(rk) }),
            hypencoder: None,
            source: QuerySource::Queries,
        } => {
            assert_eq!(backends.as_deref().unwrap(), ["bm25", "dense"]);
            assert_eq!(*k, Some(10));
            assert_eq!(*rk, 60.0);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(s.requests[1].op, Op::Upsert { batch: 2 }));
    assert!(matches!(s.requests[2].op, Op::Remove { batch: 1 }));
    assert!(s.needs_admin() && s.needs_corpus() && s.needs_queries());
}

#[test]
fn rejects_unknown_keys() {
    let m = message("nmae = \"x\"\n[[request]]\nname=\"a\"\nkind=\"get\"\nweight=1\n");
    assert!(m.contains("unknown field `nmae`"), "{m}");
    let m = message("[[request]]\nname=\"a\"\nkind=\"get\"\nweight=1\nwieght=2\n");
    assert!(m.contains("unknown field `wieght`"), "{m}");
    let m = message("[[request]]\nname=\"a\"\nkind=\"fetch\"\nweight=1\n");
    assert!(m.contains("unknown variant `fetch`"), "{m}");
}

#[test]
fn rejects_zero_and_negative_weights() {
    let m = message("[[request]]\nname=\"a\"\nkind=\"get\"\nweight=0\n");
    assert!(m.contains("`weight` must be a positive number"), "{m}");
    let m = message("[[request]]\nname=\"a\"\nkind=\"get\"\nweight=-1\n");
    assert!(m.contains("`weight` must be a positive number"), "{m}");
}

#[test]
fn rejects_remove_without_upsert() {
    let m = message("[[request]]\nname=\"rm\"\nkind=\"remove\"\nweight=1\n");
    assert!(m.contains("needs an `upsert` request"), "{m}");
}

#[test]
fn rejects_misplaced_fields_and_bad_values() {
    let m = message("[[request]]\nname=\"u\"\nkind=\"upsert\"\nweight=1\nk=3\n");
    assert!(m.contains("`k` does not apply to kind `upsert`"), "{m}");
    let m = message("[[request]]\nname=\"s\"\nkind=\"search\"\nweight=1\nk=0\n");
    assert!(m.contains("`k` must be at least 1"), "{m}");
    let m = message("[[request]]\nname=\"u\"\nkind=\"upsert\"\nweight=1\nbatch=0\n");
    assert!(m.contains("`batch` must be at least 1"), "{m}");
    let m = message("[[request]]\nname=\"g\"\nkind=\"get\"\nweight=1\npath=\"healthz\"\n");
    assert!(m.contains("must start with `/`"), "{m}");
    let m = message("name = \"empty\"\n");
    assert!(m.contains("no [[request]] entries"), "{m}");
    let m = message(
        "[[request]]\nname=\"a\"\nkind=\"get\"\nweight=1\n\
         [[request]]\nname=\"a\"\nkind=\"get\"\nweight=1\n",
    );
    assert!(m.contains("duplicate name"), "{m}");
    let m = message(
        "[[request]]\nname=\"s\"\nkind=\"search\"\nweight=1\n\
         fusion = { method = \"borda\" }\n",
    );
    assert!(m.contains("borda"), "{m}");
}

#[test]
fn runnable_needs_token_and_existing_files() {
    let s = parse(MIXED).unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let here = manifest.as_path();
    let m = s
        .check_runnable(None, Some(here), Some(here))
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("need a token") && m.contains("upsert, remove"),
        "{m}"
    );
    let m = s
        .check_runnable(Some("t"), Some(Path::new("/nope/q.jsonl")), Some(here))
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("queries file /nope/q.jsonl does not exist"),
        "{m}"
    );
    let m = s
        .check_runnable(Some("t"), Some(here), None)
        .unwrap_err()
        .to_string();
    assert!(m.contains("need a corpus file"), "{m}");
}

/// Every shipped scenario parses, and its data paths point where the
/// README says (SciFact under ../shared, relative to the repository).
#[test]
fn shipped_scenarios_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = Scenario::load(&path).unwrap();
            if s.needs_queries() {
                assert!(s.queries.is_some(), "{}", path.display());
            }
            names.push(s.name);
        }
    }
    names.sort();
    for expected in [
        "churn",
        "mixed",
        "search-bm25",
        "search-dense",
        "search-only",
        "search-rrf",
        "trivial",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
}

#[test]
fn parses_classify_requests() {
    let s = parse(
        r#"
        [[request]]
        name = "classify:image"
        kind = "classify"
        weight = 1
        images = "pics"
        k = 5
        aggregation = "plurality"
        [[request]]
        name = "classify:vector"
        kind = "classify"
        weight = 1
        embedding_dim = 1280
        "#,
    )
    .unwrap();
    assert!(matches!(
        &s.requests[0].op,
        Op::Classify { input: ClassifyInput::Images(dir), k: Some(5), aggregation: Some(a) }
            if dir == Path::new("/base/pics") && a == "plurality"
    ));
    assert!(matches!(
        s.requests[1].op,
        Op::Classify {
            input: ClassifyInput::Embeddings { dim: 1280 },
            ..
        }
    ));
    for (body, needle) in [
        ("images = \"p\"\nembedding_dim = 4", "exactly one"),
        ("k = 3", "exactly one"),
        ("embedding_dim = 0", "embedding_dim"),
        ("embedding_dim = 4\nbackends = [\"bm25\"]", "does not apply"),
        ("embedding_dim = 4\nk = 0", "at least 1"),
    ] {
        let text = format!("[[request]]\nname = \"c\"\nkind = \"classify\"\nweight = 1\n{body}\n");
        let m = message(&text);
        assert!(m.contains(needle), "{body}: {m}");
    }
}
