//! Behaviour of the Hypencoder through its public API: shapes, the q-net
//! formula against a straightforward per-document computation, masking,
//! gradients, a short synthetic training run, and saving and loading.

use candle_core::{DType, Device, Tensor};
use mnemos_hypencoder::train::{TrainBatch, TrainOptions, Trainer};
use mnemos_hypencoder::{Hypencoder, HypencoderConfig, HypencoderError, InitScale, QueryStates};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Deterministic pseudo-random floats in [-1, 1) (xorshift64*).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        bits as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// `b` queries of `t` token slots; query `i` has `t - i` real tokens (at
/// least one), the rest is padding filled with `pad_value`.
fn queries(noise: &mut Noise, b: usize, t: usize, h: usize, pad_value: f32) -> QueryStates {
    let mut states = noise.vec(b * t * h);
    let mut mask = vec![0f32; b * t];
    for i in 0..b {
        let real = t.saturating_sub(i).max(1);
        mask[i * t..i * t + real].fill(1.0);
        for slot in states[(i * t + real) * h..(i + 1) * t * h].iter_mut() {
            *slot = pad_value;
        }
    }
    QueryStates::from_flat(states, mask, b, t, h).expect("valid queries")
}

fn unit_rows(noise: &mut Noise, n: usize, h: usize) -> Tensor {
    let mut data = noise.vec(n * h);
    for row in data.chunks_exact_mut(h) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        row.iter_mut().for_each(|x| *x /= norm);
    }
    Tensor::from_vec(data, (n, h), &Device::Cpu).expect("shape")
}

/// The q-net formula for one document, in plain loops.
fn reference_score(
    weights: &[Vec<Vec<f32>>],
    biases: &[Vec<f32>],
    output: &[f32],
    doc: &[f32],
    residual: bool,
    eps: f32,
) -> f32 {
    let h = doc.len();
    let mut x = doc.to_vec();
    for (j, (w, b)) in weights.iter().zip(biases).enumerate() {
        let mut y: Vec<f32> = (0..h)
            .map(|k| (0..h).map(|i| x[i] * w[i][k]).sum::<f32>() + b[k])
            .map(|v| v.max(0.0))
            .collect();
        let mean = y.iter().sum::<f32>() / h as f32;
        let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / h as f32;
        y.iter_mut()
            .for_each(|v| *v = (*v - mean) / (var + eps).sqrt());
        if residual && j + 1 < weights.len() {
            y.iter_mut().zip(&x).for_each(|(v, xi)| *v += xi);
        }
        x = y;
    }
    x.iter().zip(output).map(|(a, b)| a * b).sum()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let scale = x.abs().max(y.abs()).max(1.0);
        assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y}");
    }
}

#[test]
fn generated_qnets_have_the_documented_shapes() -> TestResult {
    let cfg = HypencoderConfig::new(16, 3);
    let model = Hypencoder::new(cfg, 1)?;
    let qnets = model.generate(&queries(&mut Noise(1), 3, 5, 16, 0.0))?;
    assert_eq!(qnets.len(), 3);
    assert_eq!(qnets.num_hidden_layers(), 3);
    for j in 0..3 {
        assert_eq!(qnets.weight(j).expect("layer").dims(), [3, 16, 16]);
        assert_eq!(qnets.bias(j).expect("layer").dims(), [3, 16]);
    }
    assert!(qnets.weight(3).is_none());
    assert_eq!(qnets.output().dims(), [3, 16]);

    let docs = unit_rows(&mut Noise(2), 7, 16);
    assert_eq!(qnets.forward(&docs)?.dims(), [3, 7]);
    assert_eq!(
        qnets
            .forward(&docs.unsqueeze(0)?.repeat((3, 1, 1))?)?
            .dims(),
        [3, 7]
    );
    let scores = qnets.score(&docs)?;
    assert_eq!(scores.len(), 3);
    assert!(scores
        .iter()
        .all(|s| s.len() == 7 && s.iter().all(|x| x.is_finite())));
    assert_eq!(qnets.slice(1, 2)?.len(), 2);
    Ok(())
}

#[test]
fn batched_scoring_matches_a_per_document_reference() -> TestResult {
    // The real width and depth; 1100 documents span three scoring blocks.
    let cfg = HypencoderConfig::default();
    let (h, eps) = (cfg.hidden_size, cfg.layer_norm_eps as f32);
    let model = Hypencoder::new(cfg, 7)?;
    let mut noise = Noise(3);
    let qnets = model.generate(&queries(&mut noise, 2, 6, h, 0.0))?;
    let docs = unit_rows(&mut noise, 1100, h);
    let fast = qnets.score(&docs)?;
    let differentiable = qnets.forward(&docs)?.to_vec2::<f32>()?;
    let doc_rows = docs.to_vec2::<f32>()?;
    for q in 0..2 {
        let weights: Vec<Vec<Vec<f32>>> = (0..qnets.num_hidden_layers())
            .map(|j| qnets.weight(j).expect("w").get(q)?.to_vec2())
            .collect::<Result<_, _>>()?;
        let biases: Vec<Vec<f32>> = (0..qnets.num_hidden_layers())
            .map(|j| qnets.bias(j).expect("b").get(q)?.to_vec1())
            .collect::<Result<_, _>>()?;
        let output = qnets.output().get(q)?.to_vec1::<f32>()?;
        // Every 7th document keeps the scalar reference quick.
        for d in (0..doc_rows.len()).step_by(7) {
            let want = reference_score(&weights, &biases, &output, &doc_rows[d], true, eps);
            assert_close(&[fast[q][d]], &[want], 1e-4, "fast vs reference");
            assert_close(
                &[differentiable[q][d]],
                &[want],
                1e-4,
                "forward vs reference",
            );
        }
    }
    // A subset of rows scores as those rows did in the full pass.
    let rows = [1099u32, 0, 512, 511, 3, 3];
    let subset = qnets.score_rows(&docs, &rows)?;
    for q in 0..2 {
        let want: Vec<f32> = rows.iter().map(|&r| fast[q][r as usize]).collect();
        assert_close(&subset[q], &want, 1e-5, "score_rows");
    }
    assert!(qnets.score_rows(&docs, &[])?.iter().all(Vec::is_empty));
    assert!(matches!(
        qnets.score_rows(&docs, &[1100]),
        Err(HypencoderError::InvalidInput(_))
    ));
    assert!(matches!(
        qnets.score(&unit_rows(&mut noise, 3, h - 1)),
        Err(HypencoderError::InvalidInput(_))
    ));
    Ok(())
}

#[test]
fn without_residual_the_last_layer_rule_still_holds() -> TestResult {
    let cfg = HypencoderConfig {
        residual: false,
        ..HypencoderConfig::new(12, 2)
    };
    let model = Hypencoder::new(cfg, 5)?;
    let mut noise = Noise(9);
    let qnets = model.generate(&queries(&mut noise, 1, 3, 12, 0.0))?;
    let docs = unit_rows(&mut noise, 20, 12);
    let fast = qnets.score(&docs)?;
    let slow = qnets.forward(&docs)?.to_vec2::<f32>()?;
    assert_close(&fast[0], &slow[0], 1e-4, "no residual");
    Ok(())
}

#[test]
fn zero_delta_layer_generates_the_base_transposed() -> TestResult {
    // delta_std = 0: the Ĥ linear layer starts at exactly zero.
    let cfg = HypencoderConfig {
        init: InitScale {
            delta_std: 0.0,
            ..InitScale::for_width(10)
        },
        ..HypencoderConfig::new(10, 3)
    };
    let model = Hypencoder::new(cfg, 11)?;
    let tensors = model.named_tensors();
    let get = |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| (*t).clone())
            .expect("tensor")
    };
    let matrix_base = get("matrices.base"); // (L, out, in)
    let vector_base = get("vectors.base"); // (L + 1, 1, in)
    let qnets = model.generate(&queries(&mut Noise(4), 2, 4, 10, 0.0))?;
    for q in 0..2 {
        for j in 0..3 {
            let w = qnets.weight(j).expect("w").get(q)?.to_vec2::<f32>()?;
            let base_t = matrix_base.get(j)?.t()?.to_vec2::<f32>()?;
            assert_eq!(w, base_t, "W_{j} of query {q} is Base_{j}ᵀ");
            let b = qnets.bias(j).expect("b").get(q)?.to_vec1::<f32>()?;
            assert_eq!(b, vector_base.get(j)?.flatten_all()?.to_vec1::<f32>()?);
        }
        let out = qnets.output().get(q)?.to_vec1::<f32>()?;
        assert_eq!(out, vector_base.get(3)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(())
}

#[test]
fn padding_does_not_change_the_generated_weights() -> TestResult {
    let h = 16;
    let model = Hypencoder::new(HypencoderConfig::new(h, 2), 2)?;
    // Same tokens, padding filled with zeros or with large garbage.
    let clean = model.generate(&queries(&mut Noise(5), 3, 6, h, 0.0))?;
    let garbage = model.generate(&queries(&mut Noise(5), 3, 6, h, 1e3))?;
    let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>());
    for j in 0..2 {
        let (a, b) = (clean.weight(j).expect("w"), garbage.weight(j).expect("w"));
        assert_eq!(flat(a)?, flat(b)?, "weights of layer {j}");
        assert_eq!(
            flat(clean.bias(j).expect("b"))?,
            flat(garbage.bias(j).expect("b"))?
        );
    }
    assert_eq!(flat(clean.output())?, flat(garbage.output())?);

    // The third query (4 real tokens) alone, without padding slots.
    let padded = queries(&mut Noise(6), 3, 6, h, 0.0);
    let own = QueryStates::new(
        padded.states().narrow(0, 2, 1)?.narrow(1, 0, 4)?,
        Tensor::ones((1, 4), DType::F32, &Device::Cpu)?,
    )?;
    let in_batch = model.generate(&padded)?.slice(2, 1)?;
    let alone = model.generate(&own)?;
    for j in 0..2 {
        assert_close(
            &flat(in_batch.weight(j).expect("w"))?,
            &flat(alone.weight(j).expect("w"))?,
            1e-5,
            "unpadded",
        );
    }
    Ok(())
}

#[test]
fn queries_without_tokens_are_refused() {
    let states = Tensor::zeros((2, 3, 4), DType::F32, &Device::Cpu).expect("zeros");
    let mask = Tensor::new(&[[1f32, 0., 0.], [0., 0., 0.]], &Device::Cpu).expect("mask");
    let err = QueryStates::new(states, mask).expect_err("empty query");
    assert!(err.to_string().contains("query 1"), "{err}");
    assert!(QueryStates::from_flat(vec![0.0; 5], vec![1.0], 1, 1, 4).is_err());
}

/// A learnable synthetic task: each query's tokens are noisy copies of its
/// positive document; the teacher scores a document by its cosine with the
/// query's mean token.
fn synthetic_batch(
    noise: &mut Noise,
    b: usize,
    negatives: usize,
    t: usize,
    h: usize,
) -> TrainBatch {
    let docs = unit_rows(noise, b * (1 + negatives), h)
        .reshape((b, 1 + negatives, h))
        .expect("shape");
    let doc_rows = docs.to_vec3::<f32>().expect("docs");
    let mut states = Vec::with_capacity(b * t * h);
    let mut teacher = Vec::with_capacity(b * (1 + negatives));
    for rows in &doc_rows {
        let mut mean = vec![0f32; h];
        for _ in 0..t {
            for (k, m) in mean.iter_mut().enumerate() {
                let v = rows[0][k] + 0.3 * noise.next();
                states.push(v);
                *m += v / t as f32;
            }
        }
        for doc in rows {
            teacher.push(doc.iter().zip(&mean).map(|(a, b)| a * b).sum::<f32>() * 10.0);
        }
    }
    TrainBatch {
        queries: QueryStates::from_flat(states, vec![1.0; b * t], b, t, h).expect("queries"),
        documents: docs,
        teacher: Some(
            Tensor::from_vec(teacher, (b, 1 + negatives), &Device::Cpu).expect("teacher"),
        ),
    }
}

#[test]
fn every_trainable_variable_receives_a_gradient() -> TestResult {
    let model = Hypencoder::new(HypencoderConfig::new(16, 3), 3)?;
    let trainer = Trainer::new(&model, TrainOptions::default())?;
    let batch = synthetic_batch(&mut Noise(7), 4, 3, 5, 16);
    let losses = trainer.losses(&batch)?;
    assert!(losses.margin_mse.is_some());
    let grads = losses.total.backward()?;
    let vars = trainer.variables().data().lock().expect("lock").clone();
    assert_eq!(vars.len(), model.named_tensors().len());
    for (name, var) in vars {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name} has no gradient"));
        let size = grad.abs()?.sum_all()?.to_scalar::<f32>()?;
        eprintln!("{name:24} sum |grad| = {size:.3e}");
        assert!(size > 0.0 && size.is_finite(), "{name}: |grad| = {size}");
    }
    Ok(())
}

#[test]
fn a_short_synthetic_training_run_lowers_the_loss() -> TestResult {
    let h = 32;
    let model = Hypencoder::new(HypencoderConfig::new(h, 2), 13)?;
    let options = TrainOptions {
        learning_rate: 1e-3,
        ..TrainOptions::default()
    };
    let mut trainer = Trainer::new(&model, options)?;
    let mut noise = Noise(8);
    let batches: Vec<TrainBatch> = (0..3)
        .map(|_| synthetic_batch(&mut noise, 8, 3, 6, h))
        .collect();
    let mut totals = Vec::new();
    for step in 0..30 {
        let report = trainer.step(&batches[step % batches.len()])?;
        assert!(report.total.is_finite(), "step {step}: {report:?}");
        totals.push(report.total);
    }
    let first: f32 = totals[..3].iter().sum::<f32>() / 3.0;
    let last: f32 = totals[27..].iter().sum::<f32>() / 3.0;
    eprintln!("loss over 30 steps: {first:.4} -> {last:.4}");
    assert!(last < 0.7 * first, "loss {first} -> {last}: {totals:?}");
    // Training worked on a copy: the original model is unchanged.
    let before = model.named_tensors()[0].1.flatten_all()?.to_vec1::<f32>()?;
    let fresh = Hypencoder::new(HypencoderConfig::new(h, 2), 13)?;
    assert_eq!(
        before,
        fresh.named_tensors()[0].1.flatten_all()?.to_vec1::<f32>()?
    );
    Ok(())
}

#[test]
fn save_and_load_round_trip() -> TestResult {
    let h = 24;
    let model = Hypencoder::new(HypencoderConfig::new(h, 2), 17)?;
    let mut noise = Noise(10);
    let qs = queries(&mut noise, 2, 5, h, 0.0);
    let docs = unit_rows(&mut noise, 50, h);
    let scores = model.generate(&qs)?.score(&docs)?;

    let dir = tempfile::tempdir()?;
    let exact = dir.path().join("f32");
    model.save(&exact, DType::F32)?;
    let loaded = Hypencoder::load(&exact)?;
    // serde_json parses floats to within an ulp, not always exactly, so
    // the initialisation scales (unused after loading) are not compared.
    let (a, b) = (loaded.config(), model.config());
    assert_eq!(
        (
            a.hidden_size,
            a.num_hidden_layers,
            a.residual,
            a.layer_norm_eps
        ),
        (
            b.hidden_size,
            b.num_hidden_layers,
            b.residual,
            b.layer_norm_eps
        )
    );
    assert_eq!(loaded.generate(&qs)?.score(&docs)?, scores);

    // f16 halves the file and changes scores only by rounding; saving what
    // was loaded from f16 loses nothing more.
    let half = dir.path().join("f16");
    model.save(&half, DType::F16)?;
    let from_half = Hypencoder::load(&half)?;
    let half_scores = from_half.generate(&qs)?.score(&docs)?;
    for q in 0..2 {
        assert_close(&half_scores[q], &scores[q], 2e-2, "f16");
    }
    let again = dir.path().join("f16-again");
    from_half.save(&again, DType::F16)?;
    assert_eq!(
        Hypencoder::load(&again)?.generate(&qs)?.score(&docs)?,
        half_scores
    );
    let size =
        |d: &std::path::Path| std::fs::metadata(d.join("model.safetensors")).map(|m| m.len());
    assert!(size(&half)? * 2 < size(&exact)? + 4096);
    Ok(())
}

#[test]
fn broken_model_directories_are_clear_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let err = Hypencoder::load(dir.path()).expect_err("empty");
    assert!(
        matches!(&err, HypencoderError::MissingFile { path, .. } if path.ends_with("config.json"))
    );

    let model = Hypencoder::new(HypencoderConfig::new(8, 2), 1)?;
    model.save(dir.path(), DType::F32)?;
    // A config that disagrees with the weights.
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"hidden_size": 8, "num_hidden_layers": 3}"#,
    )?;
    let err = Hypencoder::load(dir.path()).expect_err("mismatch");
    assert!(matches!(err, HypencoderError::Model { .. }), "{err}");
    std::fs::write(dir.path().join("config.json"), r#"{"hidden_size": 0}"#)?;
    let err = Hypencoder::load(dir.path()).expect_err("invalid config");
    assert!(err.to_string().contains("hidden_size"), "{err}");
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"hidden_size": 8, "num_hidden_layers": 2}"#,
    )?;
    std::fs::write(dir.path().join("model.safetensors"), b"garbage")?;
    let err = Hypencoder::load(dir.path()).expect_err("bad weights");
    assert!(matches!(err, HypencoderError::Model { .. }), "{err}");
    Ok(())
}
