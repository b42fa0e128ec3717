//! Unit tests of the memory layer against brute force.

use super::*;
use crate::rng::SplitMix64;
use candle_core::DType;

fn config(variant: MemoryVariant, batch_norm: bool) -> MemoryConfig {
    MemoryConfig {
        layers: vec![0],
        n_keys: 16,
        k: 4,
        heads: 2,
        key_dim: 8,
        query_batch_norm: batch_norm,
        variant,
    }
}

fn input(tokens: usize, dim: usize, seed: u64) -> Tensor {
    SplitMix64::new(seed)
        .normal_tensor((tokens, dim), 1.0, &Device::Cpu)
        .expect("input")
}

/// The largest absolute difference of two tensors (shared with the paged
/// values' tests).
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

#[test]
fn lookup_is_the_exact_top_k_over_all_values() -> Result<()> {
    let cfg = config(MemoryVariant::Pkm, false);
    let (dim, n, k, heads, half) = (12, 16, 4, 2, 4);
    let layer = MemoryLayer::new(dim, &cfg, 3)?;
    let x = input(5, dim, 1);
    let lookup = layer.lookup(&x)?;
    let q = linear(&x, &layer.query)?.to_vec2::<f32>()?;
    // (2H, n, d_k/2): one row per sub-key.
    let keys = layer.keys.transpose(1, 2)?.contiguous()?.to_vec3::<f32>()?;
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for (t, q) in q.iter().enumerate() {
        for h in 0..heads {
            let q1 = &q[h * 8..h * 8 + half];
            let q2 = &q[h * 8 + half..(h + 1) * 8];
            // Every one of the N = n² product keys, scored in full.
            let mut all: Vec<(f32, u32)> = (0..n * n)
                .map(|id| {
                    let s = dot(q1, &keys[2 * h][id / n]) + dot(q2, &keys[2 * h + 1][id % n]);
                    (s, id as u32)
                })
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0));
            let at = (t * heads + h) * k;
            let got = &lookup.indices[at..at + k];
            let want: Vec<u32> = all[..k].iter().map(|&(_, id)| id).collect();
            assert_eq!(got, want.as_slice(), "token {t} head {h}");
            for (p, &(s, _)) in all[..k].iter().enumerate() {
                assert!((lookup.scores[at + p] - s).abs() < 1e-5);
            }
        }
    }
    Ok(())
}

#[test]
fn a_lookup_reads_at_most_h_times_k_rows_per_token() -> Result<()> {
    let cfg = config(MemoryVariant::Pkm, true);
    let layer = MemoryLayer::new(12, &cfg, 4)?;
    let tokens = 7;
    let lookup = layer.lookup(&input(tokens, 12, 2))?;
    assert_eq!(lookup.indices.len(), tokens * 2 * 4);
    assert!(lookup
        .indices
        .iter()
        .all(|&id| (id as usize) < layer.num_values()));
    for (ids, weights) in lookup.indices.chunks(4).zip(lookup.weights.chunks(4)) {
        let mut distinct = ids.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "a head reads each value once");
        assert!((weights.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(weights.windows(2).all(|w| w[0] >= w[1]), "best first");
    }
    Ok(())
}

#[test]
fn forward_is_the_weighted_sum_of_the_looked_up_rows() -> Result<()> {
    let cfg = config(MemoryVariant::Pkm, false);
    let layer = MemoryLayer::new(12, &cfg, 5)?;
    let x = input(3, 12, 3);
    let lookup = layer.lookup(&x)?;
    let values = layer.values.to_vec2::<f32>()?;
    let out = layer.forward(&x)?.to_vec2::<f32>()?;
    for (t, row) in out.iter().enumerate() {
        let per = lookup.heads * lookup.k;
        let mut want = vec![0f32; 12];
        for p in t * per..(t + 1) * per {
            let v = &values[lookup.indices[p] as usize];
            for (w, x) in want.iter_mut().zip(v) {
                *w += lookup.weights[p] * x;
            }
        }
        for (a, b) in row.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
    Ok(())
}

#[test]
fn inference_and_training_paths_agree() -> Result<()> {
    for variant in [MemoryVariant::Pkm, MemoryVariant::MemoryPlus] {
        let layer = MemoryLayer::new(12, &config(variant, false), 6)?;
        let x = input(6, 12, 4).reshape((2, 3, 12))?;
        let fast = layer.forward(&x)?;
        let train = layer.forward_train(&x)?;
        assert_eq!(fast.dims(), &[2, 3, 12]);
        assert!(max_diff(&fast, &train) < 1e-5, "{variant:?}");
    }
    Ok(())
}

/// Packed (f16) sub-keys choose the same values with the same weights as the
/// `matmul` scoring, for one token (decoding) and for several (scoring),
/// with n not a multiple of the packed block.
#[test]
fn packed_keys_look_up_what_the_key_tensor_does() -> Result<()> {
    for variant in [MemoryVariant::Pkm, MemoryVariant::MemoryPlus] {
        let config = MemoryConfig {
            n_keys: 37,
            ..config(variant, true)
        };
        let mut plain = MemoryLayer::new(12, &config, 8)?;
        // Keys and query weight as a checkpoint stores them (f16), which
        // packing keeps exactly.
        plain.keys = plain.keys.to_dtype(DType::F16)?.to_dtype(DType::F32)?;
        plain.query = plain.query.to_dtype(DType::F16)?.to_dtype(DType::F32)?;
        let mut packed = plain.clone();
        packed.pack_keys()?;
        for tokens in [1, 5] {
            let x = input(tokens, 12, 9 + tokens as u64);
            let (a, b) = (plain.lookup(&x)?, packed.lookup(&x)?);
            assert_eq!(a.indices, b.indices, "{variant:?}, {tokens} tokens");
            let close = a
                .scores
                .iter()
                .zip(&b.scores)
                .all(|(x, y)| (x - y).abs() < 1e-5);
            assert!(close, "{variant:?}, {tokens} tokens");
            assert!(max_diff(&plain.forward(&x)?, &packed.forward(&x)?) < 1e-5);
        }
    }
    Ok(())
}

/// A query weight that f16 does not hold exactly is not packed: the
/// packed layer projects by `matmul` and picks exactly what the unpacked
/// one does (with f16 keys, which packing keeps).
#[test]
fn an_f32_query_weight_is_projected_as_given() -> Result<()> {
    let mut plain = MemoryLayer::new(12, &config(MemoryVariant::Pkm, true), 13)?;
    plain.keys = plain.keys.to_dtype(DType::F16)?.to_dtype(DType::F32)?;
    let mut packed = plain.clone();
    packed.pack_keys()?;
    assert!(packed.packed.as_ref().is_some_and(|p| p.query.is_none()));
    let x = input(1, 12, 14);
    assert_eq!(plain.lookup(&x)?.indices, packed.lookup(&x)?.indices);
    assert!(max_diff(&plain.forward(&x)?, &packed.forward(&x)?) < 1e-5);
    // Rounded as a checkpoint holds it, the weight is packed.
    packed.round_to_f16()?;
    packed.pack_keys()?;
    assert!(packed.packed.as_ref().is_some_and(|p| p.query.is_some()));
    Ok(())
}

/// Eight-bit sub-keys (`KeyPrecision::Int8`) pick nearly the same values
/// as f16 ones, with nearly the same output: the quantisation moves only
/// near-ties.
#[test]
fn int8_keys_pick_nearly_what_f16_keys_do() -> Result<()> {
    let config = MemoryConfig {
        n_keys: 300,
        k: 8,
        ..config(MemoryVariant::Pkm, true)
    };
    let mut f16 = MemoryLayer::new(32, &config, 11)?;
    let mut int8 = f16.clone();
    f16.pack_keys_as(KeyPrecision::F16)?;
    int8.pack_keys_as(KeyPrecision::Int8)?;
    let x = input(50, 32, 12);
    let (a, b) = (f16.lookup(&x)?, int8.lookup(&x)?);
    let same = a
        .indices
        .iter()
        .zip(&b.indices)
        .filter(|(x, y)| x == y)
        .count();
    let share = same as f64 / a.indices.len() as f64;
    assert!(share > 0.8, "{same} of {} picks agree", a.indices.len());
    // Both lists run best first: the i-th best score moves by about the
    // quantisation error, a small part of the scores' spread.
    let gap = a
        .scores
        .iter()
        .zip(&b.scores)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    let (lo, hi) = a
        .scores
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(
        gap < 0.05 * (hi - lo),
        "scores moved by {gap} of {}",
        hi - lo
    );
    Ok(())
}

#[test]
fn batch_norm_trains_on_batch_statistics_and_infers_on_running_ones() -> Result<()> {
    let layer = MemoryLayer::new(12, &config(MemoryVariant::Pkm, true), 7)?;
    let x = (input(64, 12, 5) * 3.0)?;
    let before = layer.buffers("m");
    assert_eq!(before.len(), 2);
    layer.forward_train(&x)?;
    let after = layer.buffers("m");
    assert!(
        max_diff(&before[0].1, &after[0].1) > 0.0,
        "running mean moved"
    );
    // One token is a valid inference batch but not a training batch.
    assert!(layer.forward(&x.narrow(0, 0, 1)?).is_ok());
    assert!(matches!(
        layer.forward_train(&x.narrow(0, 0, 1)?),
        Err(LmError::InvalidInput(_))
    ));
    // A clone keeps its own statistics.
    let clone = layer.clone();
    layer.forward_train(&x)?;
    assert!(max_diff(&clone.buffers("m")[0].1, &layer.buffers("m")[0].1) > 0.0);
    Ok(())
}

#[test]
fn input_of_the_wrong_width_is_an_error() -> Result<()> {
    let layer = MemoryLayer::new(12, &config(MemoryVariant::Pkm, false), 8)?;
    assert!(matches!(
        layer.forward(&input(2, 11, 6)),
        Err(LmError::InvalidInput(_))
    ));
    assert!(MemoryLayer::new(
        12,
        &MemoryConfig {
            k: 17,
            ..config(MemoryVariant::Pkm, false)
        },
        0
    )
    .is_err());
    Ok(())
}
