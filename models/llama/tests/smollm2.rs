//! The real SmolLM2-135M-Instruct GGUF file (installed by
//! `scripts/install-models.sh`): tokenizer, forward pass, cache, scoring,
//! generation and appended units. Skipped, with a message, when the file
//! is absent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use mnemos_llama::{chat_prompt, generate, score, FfnUnits, Llama, LlamaCache, UnitWeights};
use mnemos_lm::GenerateOptions;
use mnemos_models_core::rng::SplitMix64;

/// `$MNEMOS_SMOLLM_DIR`, else `<workspace>/models/weights/smollm2-135m`.
fn model() -> Option<&'static Llama> {
    static MODEL: OnceLock<Option<Llama>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = std::env::var_os("MNEMOS_SMOLLM_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../weights/smollm2-135m")
                });
            match mnemos_llama::find_gguf(&dir) {
                Ok(_) => Some(Llama::load(&dir).expect("load SmolLM2")),
                Err(_) => {
                    eprintln!(
                        "skipping: no SmolLM2 GGUF in {}; run scripts/install-models.sh",
                        dir.display()
                    );
                    None
                }
            }
        })
        .as_ref()
}

const WIKI: &str =
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, \
France. It is named after the engineer Gustave Eiffel, whose company designed and built the tower \
from 1887 to 1889. Locally nicknamed \"La dame de fer\", it was constructed as the centrepiece of \
the 1889 World's Fair, and to crown the centennial anniversary of the French Revolution.";

#[test]
fn metadata_shape_and_tokenizer() {
    let Some(m) = model() else { return };
    let c = m.config();
    assert_eq!((c.layers, c.dim, c.heads, c.kv_heads), (30, 576, 9, 3));
    assert_eq!((c.vocab_size, c.ffn_hidden), (49152, 1536));
    assert!((134_000_000..135_000_000).contains(&m.num_parameters()));
    // Control tokens are whole tokens; digits are split one by one.
    assert_eq!(m.encode("<|im_start|>").expect("encode"), [1]);
    assert_eq!(m.special_tokens().eos, Some(2));
    let digits = m.encode("2024").expect("encode");
    assert_eq!(digits.len(), 4, "{digits:?}");
    let text = "Hello, world! Ünïcödé and  two spaces.\n";
    let ids = m.encode(text).expect("encode");
    assert_eq!(m.decode(&ids).expect("decode"), text);
}

#[test]
fn answers_a_fact_and_the_cache_matches_a_full_pass() {
    let Some(m) = model() else { return };
    let prompt = m
        .encode(&chat_prompt("What is the capital of France?"))
        .expect("encode");
    let greedy = GenerateOptions {
        max_new_tokens: 12,
        temperature: 0.0,
        ..GenerateOptions::default()
    };
    let out = generate(m, &prompt, &greedy, None).expect("generate");
    let answer = m.decode(&out).expect("decode");
    assert!(answer.contains("Paris"), "{answer:?}");

    // Prompt then one token at a time gives the logits of one full pass.
    let ids = m.encode(WIKI).expect("encode");
    let n = 24;
    let mut full_cache = LlamaCache::new();
    let full = m
        .forward_hidden(&ids[..n], &mut full_cache, None)
        .expect("full");
    let mut cache = LlamaCache::new();
    m.forward_hidden(&ids[..n - 3], &mut cache, None)
        .expect("prefix");
    let mut last = None;
    for &id in &ids[n - 3..n] {
        last = Some(m.forward_hidden(&[id], &mut cache, None).expect("step"));
    }
    assert_eq!(cache.len(), n);
    let stepped = m.logits(&last.expect("ran")).expect("logits");
    let whole = m
        .logits(&full.narrow(0, n - 1, 1).expect("row"))
        .expect("logits");
    let diff = (stepped - whole)
        .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
        .expect("diff");
    assert!(diff < 1e-3, "cached and full logits differ by {diff}");
}

#[test]
fn scores_wikipedia_text_like_a_language_model() {
    let Some(m) = model() else { return };
    let ids = m.encode(WIKI).expect("encode");
    let s = score(m, &ids, 512, None).expect("score");
    assert_eq!(s.tokens, ids.len() - 1);
    // A 135M model on a famous encyclopaedic paragraph: far below chance
    // (49,152) and below the ~20 it gets on average WikiText.
    assert!(s.perplexity > 1.5 && s.perplexity < 20.0, "{s:?}");
    // Shuffled words read much worse.
    let mut words: Vec<&str> = WIKI.split(' ').collect();
    words.reverse();
    let shuffled = m.encode(&words.join(" ")).expect("encode");
    let worse = score(m, &shuffled, 512, None).expect("score");
    assert!(worse.perplexity > 3.0 * s.perplexity, "{worse:?} vs {s:?}");
    // Windows: each starts without context, so small windows score worse.
    let small = score(m, &ids, 8, None).expect("score");
    assert_eq!(small.tokens, s.tokens);
    assert!(small.perplexity > s.perplexity);
}

#[test]
fn appended_units_are_inert_at_zero_and_change_the_model_otherwise() {
    let Some(m) = model() else { return };
    let ids = m.encode(WIKI).expect("encode");
    let base = score(m, &ids, 512, None).expect("score");
    let dev = &Device::Cpu;
    let dim = m.config().dim;
    // Seeded, so the check does not depend on a lucky draw: random units
    // move the mean NLL up or down by chance, sometimes by almost nothing,
    // so the hidden states are what must move.
    let block = |up_scale: f64| {
        let mut rng = SplitMix64::new(7);
        let mut layers = BTreeMap::new();
        for l in [27, 29] {
            let gate = rng.normal_tensor((16, dim), 0.02, dev).expect("gate");
            let up = rng.normal_tensor((16, dim), up_scale, dev).expect("up");
            let down = rng.normal_tensor((dim, 16), 0.02, dev).expect("down");
            layers.insert(l, UnitWeights { gate, up, down });
        }
        FfnUnits { layers }
    };
    let hidden = |units: Option<&FfnUnits>| {
        m.forward_hidden(&ids, &mut LlamaCache::new(), units)
            .expect("forward")
    };
    let moved = |a: &Tensor, b: &Tensor| -> f32 {
        (a - b)
            .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
            .expect("diff")
    };
    let plain = hidden(None);
    let inert = block(0.0);
    assert_eq!(moved(&hidden(Some(&inert)), &plain), 0.0);
    let inert = score(m, &ids, 512, Some(&inert)).expect("score");
    assert!((inert.nll - base.nll).abs() < 1e-6, "{inert:?} vs {base:?}");
    let active = block(1.0);
    let shift = moved(&hidden(Some(&active)), &plain);
    assert!(
        shift > 1e-2,
        "active units moved the hidden states by {shift}"
    );
    let active = score(m, &ids, 512, Some(&active)).expect("score");
    assert!(active.nll != base.nll, "{active:?} vs {base:?}");
    // Units for a block the model does not have are an input error.
    let mut bad = block(1.0);
    let u = bad.layers.remove(&29).expect("units");
    bad.layers.insert(30, u);
    assert!(score(m, &ids, 512, Some(&bad)).is_err());
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let Some(m) = model() else { return };
    let mut cache = LlamaCache::new();
    assert!(m.forward_hidden(&[], &mut cache, None).is_err());
    assert!(m.forward_hidden(&[49_152], &mut cache, None).is_err());
    assert!(score(m, &[1], 16, None).is_err());
    let options = GenerateOptions {
        top_p: 0.0,
        ..GenerateOptions::default()
    };
    assert!(generate(m, &[1, 2], &options, None).is_err());
    assert!(generate(m, &[], &GenerateOptions::default(), None).is_err());
}

#[test]
fn training_units_lowers_the_loss_and_moves_every_matrix() {
    let Some(m) = model() else { return };
    let ids = m.encode(WIKI).expect("encode");
    let ids = &ids[..32];
    let first = 28;
    let text = mnemos_llama::TrainText::prepare(m, ids, first).expect("prepare");
    let dev = &Device::Cpu;
    let dim = m.config().dim;
    let mut rng = SplitMix64::new(11);
    let mut layers = BTreeMap::new();
    for l in first..m.config().layers {
        layers.insert(
            l,
            UnitWeights {
                gate: rng.normal_tensor((8, dim), 0.02, dev).expect("gate"),
                up: Tensor::zeros((8, dim), candle_core::DType::F32, dev).expect("zeros"),
                down: rng.normal_tensor((dim, 8), 0.02, dev).expect("down"),
            },
        );
    }
    let init = FfnUnits { layers };
    let config = mnemos_llama::UnitTraining {
        epochs: 8,
        batch: 1,
        learning_rate: 1e-2,
        ..Default::default()
    };
    let mut losses = Vec::new();
    let (trained, report) =
        mnemos_llama::train_units(m, &[&text], first, None, &init, &config, |_, l| {
            losses.push(l)
        })
        .expect("train");
    assert_eq!(report.steps, 8);
    assert_eq!(losses.len(), 8);
    assert!(
        report.last_epoch_loss < report.first_epoch_loss - 0.1,
        "{report:?}"
    );
    // The training loss is the anchor's own: scoring agrees before training.
    let base = score(m, ids, 512, None).expect("score");
    assert!(
        (losses[0] - base.nll).abs() < 1e-3,
        "{} vs {}",
        losses[0],
        base.nll
    );
    let after = score(m, ids, 512, Some(&trained)).expect("score");
    assert!(after.nll < base.nll - 0.1, "{after:?} vs {base:?}");
    for (l, u) in &trained.layers {
        let before = &init.layers[l];
        for (a, b) in [
            (&u.gate, &before.gate),
            (&u.up, &before.up),
            (&u.down, &before.down),
        ] {
            let moved = (a - b)
                .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
                .expect("diff");
            assert!(moved > 0.0, "block {l}: a matrix received no gradient");
        }
    }
}
