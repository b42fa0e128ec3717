//! Integration tests of the language model: gradients, KV-cache decoding,
//! persistence, tokenizer and a short training run.

use candle_core::{DType, Device, Tensor};
use mnemos_lm::train::{evaluate, Batch, TrainOptions, Trainer};
use mnemos_lm::{
    generate, GenerateOptions, Lm, LmConfig, LmError, LmTokenizer, MemoryConfig, MemoryVariant,
    SplitMix64,
};

fn config(variant: Option<MemoryVariant>, batch_norm: bool) -> LmConfig {
    LmConfig {
        vocab_size: 50,
        dim: 16,
        layers: 3,
        heads: 2,
        ffn_hidden: 24,
        max_seq_len: 24,
        memory: variant.map(|variant| MemoryConfig {
            layers: vec![1, 2],
            n_keys: 8,
            k: 3,
            heads: 2,
            key_dim: 8,
            query_batch_norm: batch_norm,
            variant,
        }),
        ..LmConfig::default()
    }
}

fn ids(rows: usize, len: usize, vocab: u32, seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let data: Vec<u32> = (0..rows * len)
        .map(|_| rng.below(vocab as usize) as u32)
        .collect();
    Tensor::from_vec(data, (rows, len), &Device::Cpu).expect("ids")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

#[test]
fn every_trainable_tensor_receives_a_gradient() -> mnemos_lm::Result<()> {
    for (variant, tie) in [
        (None, false),
        (Some(MemoryVariant::Pkm), true),
        (Some(MemoryVariant::MemoryPlus), true),
    ] {
        let cfg = LmConfig {
            tie_embeddings: tie,
            ..config(variant, true)
        };
        let model = Lm::new(cfg.clone(), 1)?;
        let trainer = Trainer::new(&model, TrainOptions::default())?;
        let tokens: Vec<u32> = ids(1, 200, 50, 2).flatten_all()?.to_vec1()?;
        let batch = Batch::random(&tokens, 3, 10, &mut SplitMix64::new(3))?;
        let grads = trainer.gradients(&batch)?;
        assert_eq!(grads.len(), model.params().len());
        for (name, grad) in &grads {
            let grad = grad
                .as_ref()
                .unwrap_or_else(|| panic!("{variant:?}: no gradient for {name}"));
            let norm = grad.sqr()?.sum_all()?.to_scalar::<f32>()?;
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{variant:?}: {name} gradient {norm}"
            );
            if name.ends_with("values") {
                // Only rows that were read get a gradient: at most
                // tokens × heads × k per memory layer that reads the table.
                let rows = grad.sqr()?.sum(1)?.to_vec1::<f32>()?;
                let touched = rows.iter().filter(|&&r| r > 0.0).count();
                let readers = if name.starts_with("memory") { 2 } else { 1 };
                assert!(
                    touched > 0 && touched <= readers * 30 * 2 * 3,
                    "{name}: {touched}"
                );
            }
        }
        let names: Vec<&str> = grads.iter().map(|(n, _)| n.as_str()).collect();
        if variant == Some(MemoryVariant::MemoryPlus) {
            assert!(names.contains(&"memory.values"), "one shared table");
            assert!(names.contains(&"layers.1.memory.gate"));
            assert!(!names.contains(&"layers.1.memory.values"));
        }
        assert_eq!(model.num_parameters(), cfg.num_parameters());
    }
    Ok(())
}

#[test]
fn kv_cache_decoding_matches_the_full_forward() -> mnemos_lm::Result<()> {
    for variant in [
        None,
        Some(MemoryVariant::Pkm),
        Some(MemoryVariant::MemoryPlus),
    ] {
        let model = Lm::new(config(variant, true), 4)?;
        let seq = ids(2, 12, 50, 5);
        let full = model.forward(&seq)?;
        let mut cache = mnemos_lm::KvCache::new();
        // A 5-token prefill, then one token at a time.
        let mut parts = vec![model.forward_cached(&seq.narrow(1, 0, 5)?, &mut cache)?];
        for t in 5..12 {
            parts.push(model.forward_cached(&seq.narrow(1, t, 1)?, &mut cache)?);
        }
        assert_eq!(cache.len(), 12);
        let incremental = Tensor::cat(&parts, 1)?;
        let diff = max_diff(&full, &incremental);
        assert!(diff < 1e-4, "{variant:?}: {diff}");
    }
    Ok(())
}

#[test]
fn training_and_inference_forwards_agree_without_batch_statistics() -> mnemos_lm::Result<()> {
    let model = Lm::new(config(Some(MemoryVariant::MemoryPlus), false), 6)?;
    let seq = ids(2, 9, 50, 7);
    let diff = max_diff(&model.forward(&seq)?, &model.forward_train(&seq)?);
    assert!(diff < 1e-4, "{diff}");
    Ok(())
}

#[test]
fn bad_input_is_an_error_not_a_panic() -> mnemos_lm::Result<()> {
    let model = Lm::new(config(Some(MemoryVariant::Pkm), true), 8)?;
    let too_long = ids(1, 25, 50, 1);
    let out_of_vocab = Tensor::new(&[[1u32, 50]], &Device::Cpu)?;
    let wrong_rank = Tensor::new(&[1u32, 2], &Device::Cpu)?;
    let floats = Tensor::new(&[[1f32, 2.]], &Device::Cpu)?;
    for bad in [too_long, out_of_vocab, wrong_rank, floats] {
        assert!(matches!(model.forward(&bad), Err(LmError::InvalidInput(_))));
    }
    let mut cache = mnemos_lm::KvCache::new();
    model.forward_cached(&ids(1, 20, 50, 2), &mut cache)?;
    assert!(matches!(
        model.forward_cached(&ids(1, 5, 50, 3), &mut cache),
        Err(LmError::InvalidInput(_))
    ));
    assert!(generate(&model, &[], &GenerateOptions::default()).is_err());
    Ok(())
}

#[test]
fn save_and_load_round_trip() -> mnemos_lm::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = Lm::new(config(Some(MemoryVariant::Pkm), true), 9)?;
    // Move the batch-norm running statistics away from their start so
    // the round trip has to carry them.
    let trainer = Trainer::new(&model, TrainOptions::default())?;
    let tokens: Vec<u32> = ids(1, 100, 50, 4).flatten_all()?.to_vec1()?;
    trainer.loss(&Batch::random(&tokens, 2, 8, &mut SplitMix64::new(1))?)?;
    let model = trainer.model()?;
    let seq = ids(1, 10, 50, 10);
    let want = model.forward(&seq)?;

    model.save(dir.path(), DType::F32)?;
    let loaded = Lm::load(dir.path())?;
    assert_eq!(loaded.config(), model.config());
    assert_eq!(max_diff(&want, &loaded.forward(&seq)?), 0.0);

    // f16 weights: close outputs. (Checked without memory: a rounded score
    // may swap the k-th and (k+1)-th value of a lookup, a discrete change.)
    let dense = Lm::new(config(None, true), 9)?;
    let half = dir.path().join("f16");
    dense.save(&half, DType::F16)?;
    let diff = max_diff(&dense.forward(&seq)?, &Lm::load(&half)?.forward(&seq)?);
    assert!(diff < 0.01, "f16 {diff}");

    // A weights file for another shape of model is refused.
    let other = dir.path().join("other");
    Lm::new(config(None, true), 9)?.save(&other, DType::F32)?;
    std::fs::copy(
        other.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .expect("copy");
    assert!(matches!(Lm::load(dir.path()), Err(LmError::Model { .. })));
    assert!(matches!(
        Lm::load(&dir.path().join("absent")),
        Err(LmError::MissingFile { .. })
    ));
    Ok(())
}

#[test]
fn tokenizer_round_trips_text_and_survives_saving() -> mnemos_lm::Result<()> {
    let text = "The quick brown fox jumps over the lazy dog. \
                Product keys make memories cheap to read. ünïcödé ✓ 日本語\n\tdone";
    let corpus = vec![text.to_string(); 20];
    let tokenizer = LmTokenizer::train_from_texts(corpus, 300)?;
    assert!(tokenizer.vocab_size() > 257 && tokenizer.vocab_size() <= 300);
    assert_eq!(tokenizer.end_of_text(), Some(0));
    let ids = tokenizer.encode(text)?;
    assert!(ids.len() < text.len(), "merges shorten the text");
    assert_eq!(tokenizer.decode(&ids)?, text);
    // Text never seen still encodes byte by byte.
    let unseen = "Zebra qualms: 42 → ∞";
    assert_eq!(tokenizer.decode(&tokenizer.encode(unseen)?)?, unseen);

    let dir = tempfile::tempdir().expect("tempdir");
    tokenizer.save(dir.path())?;
    let loaded = LmTokenizer::load(dir.path())?;
    assert_eq!(loaded.encode(text)?, ids);
    assert!(LmTokenizer::train_from_texts(["x"], 10).is_err());

    // Training from files reads them line by line, newlines included.
    let file = dir.path().join("train.txt");
    std::fs::write(&file, format!("{text}\n").repeat(20)).expect("write");
    let from_file = LmTokenizer::train_from_files(std::slice::from_ref(&file), 300)?;
    assert_eq!(from_file.decode(&from_file.encode(text)?)?, text);
    assert!(matches!(
        LmTokenizer::train_from_files(&[dir.path().join("absent.txt")], 300),
        Err(LmError::MissingFile { .. })
    ));
    Ok(())
}

#[test]
fn models_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Lm>();
    shared::<mnemos_lm::MemoryLayer>();
    shared::<LmTokenizer>();
}

#[test]
fn a_tiny_model_overfits_a_tiny_text() -> mnemos_lm::Result<()> {
    let text = "to be or not to be, that is the question. ".repeat(8);
    let tokenizer = LmTokenizer::train_from_texts([text.as_str()], 280)?;
    let tokens = tokenizer.encode(&text)?;
    let cfg = LmConfig {
        vocab_size: tokenizer.vocab_size(),
        dim: 32,
        layers: 2,
        heads: 2,
        ffn_hidden: 64,
        max_seq_len: 32,
        memory: Some(MemoryConfig {
            layers: vec![1],
            n_keys: 16,
            k: 4,
            heads: 2,
            key_dim: 16,
            query_batch_norm: true,
            variant: MemoryVariant::MemoryPlus,
        }),
        ..LmConfig::default()
    };
    let model = Lm::new(cfg, 11)?;
    let before = evaluate(&model, &tokens, 16, 8)?;
    let mut trainer = Trainer::new(
        &model,
        TrainOptions {
            learning_rate: 3e-3,
            value_learning_rate: 1e-2,
            ..TrainOptions::default()
        },
    )?;
    let mut rng = SplitMix64::new(12);
    let mut losses = Vec::new();
    for _ in 0..50 {
        let batch = Batch::random(&tokens, 8, 16, &mut rng)?;
        losses.push(trainer.step(&batch)?.loss);
    }
    let after = evaluate(&trainer.model()?, &tokens, 16, 8)?;
    assert!(
        after.loss < 0.4 * before.loss,
        "loss {:.3} -> {:.3} (steps: {losses:?})",
        before.loss,
        after.loss
    );
    assert!((before.perplexity - before.loss.exp()).abs() < 1e-9);

    // Greedy decoding now continues the text; the same seed repeats.
    let trained = trainer.model()?;
    let prompt = tokenizer.encode("to be or not")?;
    let greedy = GenerateOptions {
        max_new_tokens: 8,
        temperature: 0.0,
        ..GenerateOptions::default()
    };
    let out = tokenizer.decode(&generate(&trained, &prompt, &greedy)?)?;
    assert!(out.starts_with(" to be"), "{out:?}");
    let sampled = GenerateOptions {
        max_new_tokens: 40,
        temperature: 1.0,
        top_p: 0.9,
        seed: 5,
        stop_tokens: Vec::new(),
    };
    let a = generate(&trained, &prompt, &sampled)?;
    assert_eq!(a, generate(&trained, &prompt, &sampled)?);
    // The context of 32 tokens bounds the output.
    assert!(a.len() <= 32 - prompt.len() + 1);
    Ok(())
}
