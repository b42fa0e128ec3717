//! Integration tests of the MiniLM encoder against the real weights.
//!
//! Tests that need the model skip (with a message) when it is not
//! installed; see `support::model_dir`.

mod support;

use std::path::Path;

use mnemos_text::{Encoder, EncoderOptions, MiniLmEncoder, ModelError, Pooling};
use serde::Deserialize;

/// `tests/fixtures/minilm_reference.json`, written by
/// `tests/fixtures/make_reference.py` (an independent numpy implementation).
#[derive(Deserialize)]
struct Fixture {
    max_tokens: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    tokens: usize,
    embedding: Vec<f32>,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/minilm_reference.json");
    serde_json::from_str(text).expect("fixture is valid JSON")
}

fn load(dir: &Path) -> MiniLmEncoder {
    MiniLmEncoder::load(dir, EncoderOptions::default()).expect("model loads")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn matches_independent_reference() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    let encoder = load(&dir);
    let fixture = fixture();
    assert_eq!(encoder.max_tokens(), fixture.max_tokens);
    assert_eq!(encoder.dim(), 384);
    assert_eq!(encoder.pooling(), Pooling::Mean);
    assert!(encoder.normalizes());

    let texts: Vec<&str> = fixture.cases.iter().map(|c| c.text.as_str()).collect();
    let vectors = encoder.embed(&texts).expect("embed");
    assert_eq!(vectors.len(), texts.len());
    for (case, vector) in fixture.cases.iter().zip(&vectors) {
        let short: String = case.text.chars().take(40).collect();
        let tokens = encoder.count_tokens(&case.text).expect("tokenize");
        assert_eq!(tokens, case.tokens, "token count of {short:?}");
        let cos = cosine(vector, &case.embedding);
        eprintln!("cosine {cos:.7}  tokens {tokens:3}  {short:?}");
        assert!(cos >= 0.999, "cosine {cos} for {short:?}");
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
}

#[test]
fn batching_does_not_change_vectors() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    // A small max_batch makes the 7 texts run as several padded groups.
    let encoder = MiniLmEncoder::load(
        &dir,
        EncoderOptions {
            max_batch: 3,
            ..EncoderOptions::default()
        },
    )
    .expect("model loads");
    let long = "a much longer sentence about retrieval, ranking and indexes ".repeat(8);
    let texts = [
        "short",
        long.as_str(),
        "",
        "a medium length sentence with a few more words in it",
        "short",
        "Ünïcödé café",
        "two words",
    ];
    let batched = encoder.embed(&texts).expect("batched");
    for (text, vector) in texts.iter().zip(&batched) {
        let single = encoder.embed(&[text]).expect("single");
        let max_diff = vector
            .iter()
            .zip(&single[0])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 1e-5, "{text:?}: max abs diff {max_diff}");
    }
    // Identical inputs in one call give identical outputs.
    assert_eq!(batched[0], batched[4]);
}

#[test]
fn token_states_mean_pool_to_the_embeddings() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    // max_batch 2 runs the 5 texts as three groups of different lengths.
    let encoder = MiniLmEncoder::load(
        &dir,
        EncoderOptions {
            max_batch: 2,
            ..EncoderOptions::default()
        },
    )
    .expect("model loads");
    let long = "a longer sentence about hypernetworks that score documents ".repeat(4);
    let texts = ["short", long.as_str(), "", "what is a q-net?", "short"];
    let states = encoder.token_states(&texts).expect("token states");
    let (seq_len, dim) = (states.seq_len, states.dim);
    assert_eq!((states.rows, dim), (texts.len(), 384));
    assert_eq!(states.states.len(), texts.len() * seq_len * dim);
    assert_eq!(states.mask.len(), texts.len() * seq_len);
    let embedded = encoder.embed(&texts).expect("embed");
    for (i, text) in texts.iter().enumerate() {
        let mask = &states.mask[i * seq_len..(i + 1) * seq_len];
        let real = mask.iter().filter(|&&m| m > 0.0).count();
        assert_eq!(
            real,
            encoder.count_tokens(text).expect("tokens"),
            "{text:?}"
        );
        // Padding is on the right and its states are zero.
        assert!(mask[..real].iter().all(|&m| m == 1.0) && mask[real..].iter().all(|&m| m == 0.0));
        let mut mean = vec![0f32; dim];
        let row = &states.states[i * seq_len * dim..(i + 1) * seq_len * dim];
        for (&m, state) in mask.iter().zip(row.chunks_exact(dim)) {
            if m == 0.0 {
                assert!(state.iter().all(|&x| x == 0.0), "padding state of {text:?}");
            }
            mean.iter_mut()
                .zip(state)
                .for_each(|(acc, x)| *acc += m * x);
        }
        let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt();
        let pooled: Vec<f32> = mean.iter().map(|x| x / norm).collect();
        let max_diff = pooled
            .iter()
            .zip(&embedded[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 1e-5, "{text:?}: max abs diff {max_diff}");
    }
    let none = encoder.token_states(&[]).expect("empty batch");
    assert_eq!((none.rows, none.seq_len), (0, 0));
}

#[test]
fn edge_inputs_do_not_panic() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    let encoder = load(&dir);
    assert!(encoder.embed(&[]).expect("empty batch").is_empty());
    let vectors = encoder
        .embed(&["", " ", "\u{0}\u{200b}"])
        .expect("odd inputs");
    for vector in vectors {
        assert_eq!(vector.len(), 384);
        assert!(vector.iter().all(|x| x.is_finite()));
    }
    // Far past max_tokens: truncated, not an error.
    let huge = "word ".repeat(5_000);
    assert_eq!(encoder.count_tokens(&huge).expect("tokenize"), 256);
    assert_eq!(encoder.embed(&[&huge]).expect("long input")[0].len(), 384);
}

#[test]
fn cls_pooling_and_no_normalisation_are_honoured() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    let opts = EncoderOptions {
        pooling: Some(Pooling::Cls),
        normalize: Some(false),
        ..EncoderOptions::default()
    };
    let encoder = MiniLmEncoder::load(&dir, opts).expect("model loads");
    let text = ["The quick brown fox jumps over the lazy dog."];
    let raw = &encoder.embed(&text).expect("embed")[0];
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() > 1e-2, "not normalised, norm {norm}");
    let mean = &load(&dir).embed(&text).expect("embed")[0];
    assert!(cosine(raw, mean) < 0.99, "cls differs from mean pooling");
}

#[test]
fn missing_directory_is_a_clear_error() {
    let err = MiniLmEncoder::load(Path::new("/no/such/model"), EncoderOptions::default())
        .err()
        .expect("load fails");
    assert!(matches!(err, ModelError::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("install-models.sh"), "{err}");
}

#[test]
fn missing_and_broken_files_are_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = MiniLmEncoder::load(dir.path(), EncoderOptions::default())
        .err()
        .expect("empty dir");
    assert!(
        matches!(&err, ModelError::MissingFile { path, .. } if path.ends_with("config.json")),
        "{err}"
    );

    std::fs::write(dir.path().join("config.json"), "{ not json").expect("write");
    let err = MiniLmEncoder::load(dir.path(), EncoderOptions::default())
        .err()
        .expect("bad config");
    assert!(matches!(err, ModelError::Config { .. }), "{err}");

    let Some(real) = support::model_dir() else {
        return;
    };
    for name in ["config.json", "tokenizer.json"] {
        std::fs::copy(real.join(name), dir.path().join(name)).expect("copy");
    }
    let err = MiniLmEncoder::load(dir.path(), EncoderOptions::default())
        .err()
        .expect("no weights");
    assert!(
        matches!(&err, ModelError::MissingFile { path, .. } if path.ends_with("model.safetensors")),
        "{err}"
    );

    std::fs::write(dir.path().join("model.safetensors"), b"garbage").expect("write");
    let err = MiniLmEncoder::load(dir.path(), EncoderOptions::default())
        .err()
        .expect("bad weights");
    assert!(matches!(err, ModelError::Config { .. }), "{err}");

    let opts = EncoderOptions {
        max_tokens: 10_000,
        ..EncoderOptions::default()
    };
    let err = MiniLmEncoder::load(&real, opts)
        .err()
        .expect("too many tokens");
    assert!(matches!(err, ModelError::InvalidInput(_)), "{err}");
}
