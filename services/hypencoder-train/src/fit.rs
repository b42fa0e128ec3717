//! The training loop: AdamW over the hyperheads, dev nDCG@10 after every
//! epoch, the best epoch's weights saved as f16 safetensors.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use mnemos_engine::eval::ndcg;
use mnemos_hypencoder::train::{TrainBatch, TrainOptions, Trainer};
use mnemos_hypencoder::{Hypencoder, HypencoderConfig, QueryStates, Start};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::data::TrainData;
use crate::features::Features;
use crate::mining::Mined;
use crate::{Result, TrainConfig, TrainError};

/// One epoch's figures.
#[derive(Debug, Clone, Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub loss: f32,
    pub margin_mse: f32,
    pub in_batch: f32,
    pub dev_ndcg_10: f64,
    pub secs: f64,
}

/// What a run did, also written to `training.json` next to the weights.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub train_queries: usize,
    pub dev_queries: usize,
    pub documents: usize,
    pub parameters: usize,
    pub teacher: &'static str,
    /// Factor applied to teacher scores so their margins have the spread of
    /// the untrained student's.
    pub teacher_scale: f32,
    /// Dev nDCG@10 of the retrievers the student is compared with.
    pub dev_bm25: f64,
    pub dev_dense: f64,
    pub dev_teacher: f64,
    /// Dev nDCG@10 before the first step.
    pub dev_initial: f64,
    pub epochs: Vec<EpochReport>,
    pub best_epoch: usize,
    /// Dev nDCG@10 of the saved (f16) weights.
    pub dev_saved: f64,
    pub command: String,
    pub secs: f64,
}

/// `(B, T, h)` states and mask of the given queries, padded to the longest.
fn query_batch(features: &Features, which: &[usize]) -> Result<QueryStates> {
    let h = features.dim;
    let t = which
        .iter()
        .map(|&q| features.queries[q].len)
        .max()
        .unwrap_or(1);
    let mut states = vec![0f32; which.len() * t * h];
    let mut mask = vec![0f32; which.len() * t];
    for (row, &q) in which.iter().enumerate() {
        let f = &features.queries[q];
        states[row * t * h..row * t * h + f.len * h].copy_from_slice(&f.states);
        mask[row * t..row * t + f.len].fill(1.0);
    }
    Ok(QueryStates::from_flat(states, mask, which.len(), t, h)?)
}

/// Mean nDCG@10 over `which` queries, scoring every document exhaustively.
pub fn ndcg_at_10(
    model: &Hypencoder,
    data: &TrainData,
    features: &Features,
    docs: &Tensor,
    which: &[usize],
) -> Result<f64> {
    let mut total = 0.0;
    for chunk in which.chunks(32) {
        let scores = model
            .generate(&query_batch(features, chunk)?)?
            .score(docs)?;
        for (&q, s) in chunk.iter().zip(scores) {
            let mut order: Vec<usize> = (0..s.len()).collect();
            order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
            let ids: Vec<String> = order
                .iter()
                .take(10)
                .map(|&d| data.corpus[d].id.clone())
                .collect();
            total += ndcg(&ids, &data.queries[q].judged, 10);
        }
    }
    Ok(total / which.len().max(1) as f64)
}

fn ranking_ndcg(data: &TrainData, q: usize, ranked: &[usize]) -> f64 {
    let ids: Vec<String> = ranked.iter().map(|&d| data.corpus[d].id.clone()).collect();
    ndcg(&ids, &data.queries[q].judged, 10)
}

/// One query's training documents: a positive, then `n` negatives.
fn pick_docs(rng: &mut StdRng, data: &TrainData, mined: &Mined, q: usize, n: usize) -> Vec<usize> {
    let query = &data.queries[q];
    let mut docs = vec![query.positives[rng.random_range(0..query.positives.len())]];
    let pool = &mined.queries[q].negatives;
    for _ in 0..n {
        docs.push(if pool.is_empty() {
            rng.random_range(0..data.corpus.len())
        } else {
            pool[rng.random_range(0..pool.len())]
        });
    }
    docs
}

fn batch(
    rng: &mut StdRng,
    data: &TrainData,
    features: &Features,
    mined: &Mined,
    which: &[usize],
    negatives: usize,
    teacher_scale: f32,
) -> Result<TrainBatch> {
    let h = features.dim;
    let items = 1 + negatives;
    let mut docs = Vec::with_capacity(which.len() * items * h);
    let mut teacher = Vec::with_capacity(which.len() * items);
    for &q in which {
        for d in pick_docs(rng, data, mined, q, negatives) {
            docs.extend_from_slice(features.doc(d));
            teacher.push(mined.queries[q].teacher(d) * teacher_scale);
        }
    }
    let dev = Device::Cpu;
    Ok(TrainBatch {
        queries: query_batch(features, which)?,
        documents: Tensor::from_vec(docs, (which.len(), items, h), &dev)?,
        teacher: Some(Tensor::from_vec(teacher, (which.len(), items), &dev)?),
    })
}

fn spread(xs: &[f32]) -> f32 {
    let n = xs.len().max(1) as f32;
    let mean = xs.iter().sum::<f32>() / n;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt()
}

/// Teacher scale: the untrained student's margin spread over the teacher's,
/// measured on one batch of every training query.
fn teacher_scale(
    model: &Hypencoder,
    data: &TrainData,
    features: &Features,
    mined: &Mined,
    config: &TrainConfig,
) -> Result<f32> {
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5ca1e);
    let (mut student, mut teacher) = (Vec::new(), Vec::new());
    for chunk in data.train.chunks(64) {
        let b = batch(
            &mut rng,
            data,
            features,
            mined,
            chunk,
            config.negatives,
            1.0,
        )?;
        let s = model.generate(&b.queries)?.forward(&b.documents)?;
        let items = 1 + config.negatives;
        let s = s.to_vec2::<f32>()?;
        let t = b.teacher.as_ref().expect("teacher").to_vec2::<f32>()?;
        for (srow, trow) in s.iter().zip(&t) {
            for j in 1..items {
                student.push(srow[0] - srow[j]);
                teacher.push(trow[0] - trow[j]);
            }
        }
    }
    Ok(spread(&student) / spread(&teacher).max(1e-6))
}

/// Trains, evaluates on the dev queries after every epoch and keeps the
/// best epoch's weights in `config.out`.
pub fn fit(
    config: &TrainConfig,
    data: &TrainData,
    features: &Features,
    mined: &Mined,
) -> Result<TrainReport> {
    let started = Instant::now();
    let model_config = HypencoderConfig {
        start: if config.dense_start {
            Start::Dense
        } else {
            Start::Random
        },
        ..HypencoderConfig::new(features.dim, config.layers)
    };
    let model = Hypencoder::new(model_config, config.seed)?;
    let docs = Tensor::from_slice(
        &features.docs,
        (data.corpus.len(), features.dim),
        &Device::Cpu,
    )?;
    let dev_base = |score: &dyn Fn(usize, usize) -> f32| -> f64 {
        data.dev
            .iter()
            .map(|&q| ranking_ndcg(data, q, &mined.queries[q].rank_by(10, |d| score(q, d))))
            .sum::<f64>()
            / data.dev.len() as f64
    };
    let dev_bm25 = data
        .dev
        .iter()
        .map(|&q| ranking_ndcg(data, q, &mined.queries[q].bm25_ranking[..]))
        .sum::<f64>()
        / data.dev.len() as f64;
    let dev_dense = dev_base(&|q, d| mined.queries[q].cosine(d));
    let dev_teacher = dev_base(&|q, d| mined.queries[q].teacher(d));
    let dev_initial = ndcg_at_10(&model, data, features, &docs, &data.dev)?;
    let scale = teacher_scale(&model, data, features, mined, config)?;
    tracing::info!(
        dev_bm25,
        dev_dense,
        dev_teacher,
        dev_initial,
        teacher_scale = scale,
        "dev nDCG@10 before training"
    );

    let mut trainer = Trainer::new(
        &model,
        TrainOptions {
            learning_rate: config.learning_rate,
            weight_decay: 0.0,
            margin_mse_weight: config.margin_mse_weight,
            in_batch_weight: config.in_batch_weight,
        },
    )?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut order = data.train.clone();
    let mut epochs = Vec::new();
    let (mut best, mut best_epoch) = (dev_initial, 0usize);
    model.save(&config.out, DType::F16)?;
    for epoch in 1..=config.epochs {
        let epoch_started = Instant::now();
        order.shuffle(&mut rng);
        let (mut sums, mut steps) = ([0f32; 3], 0usize);
        for (step, chunk) in order.chunks(config.batch).enumerate() {
            if chunk.len() < 2 {
                continue; // in-batch negatives need another query
            }
            let b = batch(
                &mut rng,
                data,
                features,
                mined,
                chunk,
                config.negatives,
                scale,
            )?;
            let r = trainer.step(&b)?;
            sums[0] += r.total;
            sums[1] += r.margin_mse.unwrap_or(0.0);
            sums[2] += r.in_batch;
            steps += 1;
            if step % 5 == 0 {
                tracing::info!(
                    epoch,
                    step,
                    loss = r.total,
                    margin_mse = r.margin_mse.unwrap_or(0.0),
                    in_batch = r.in_batch,
                    secs = started.elapsed().as_secs(),
                    "training"
                );
            }
        }
        let current = trainer.model();
        let dev_ndcg_10 = ndcg_at_10(&current, data, features, &docs, &data.dev)?;
        let n = steps.max(1) as f32;
        let report = EpochReport {
            epoch,
            loss: sums[0] / n,
            margin_mse: sums[1] / n,
            in_batch: sums[2] / n,
            dev_ndcg_10,
            secs: epoch_started.elapsed().as_secs_f64(),
        };
        tracing::info!(?report, best, "epoch done");
        epochs.push(report);
        if dev_ndcg_10 > best {
            best = dev_ndcg_10;
            best_epoch = epoch;
            current.save(&config.out, DType::F16)?;
        } else if epoch - best_epoch >= config.patience {
            tracing::info!(epoch, best_epoch, "dev nDCG@10 stopped improving; stopping");
            break;
        }
    }
    let saved = Hypencoder::load(&config.out)?;
    let dev_saved = ndcg_at_10(&saved, data, features, &docs, &data.dev)?;
    let report = TrainReport {
        train_queries: data.train.len(),
        dev_queries: data.dev.len(),
        documents: data.corpus.len(),
        parameters: saved.num_parameters(),
        teacher: "BM25 + dense ensemble: sum of per-query z-scores over each retriever's top 100",
        teacher_scale: scale,
        dev_bm25,
        dev_dense,
        dev_teacher,
        dev_initial,
        epochs,
        best_epoch,
        dev_saved,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        secs: started.elapsed().as_secs_f64(),
    };
    let path = config.out.join("training.json");
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| TrainError::Invalid(format!("report: {e}")))?;
    std::fs::write(&path, json).map_err(|source| TrainError::Io { path, source })?;
    Ok(report)
}
