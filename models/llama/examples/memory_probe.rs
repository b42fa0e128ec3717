//! Trains one memory block (appended units in the last blocks) on a few
//! SciFact abstracts and prints the perplexity before and after on them
//! and on held-out abstracts: a quick check of the training loop and its
//! speed.
//!
//! ```sh
//! cargo run --release -p mnemos-llama --example memory_probe -- \
//!     models/weights/smollm2-135m ../shared/data/beir/scifact/corpus.jsonl 8 26 64
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use mnemos_llama::{score, train_units, FfnUnits, Llama, TrainText, UnitTraining, UnitWeights};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let model = Llama::load(&PathBuf::from(arg(0, "models/weights/smollm2-135m")))?;
    let corpus = std::fs::read_to_string(arg(1, "../shared/data/beir/scifact/corpus.jsonl"))?;
    let n: usize = arg(2, "8").parse()?;
    let first: usize = arg(3, "26").parse()?;
    let r: usize = arg(4, "64").parse()?;
    let epochs: usize = arg(5, "6").parse()?;
    let max_tokens = 128;
    let texts: Vec<Vec<u32>> = corpus
        .lines()
        .take(n + 4)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            let text = format!(
                "{}\n{}",
                v["title"].as_str().unwrap_or(""),
                v["text"].as_str().unwrap_or("")
            );
            let mut ids = model.encode(&text).expect("encode");
            ids.truncate(max_tokens);
            ids
        })
        .collect();
    let (train, held) = texts.split_at(n);
    let dim = model.config().dim;
    let dev = &Device::Cpu;
    let mut layers = BTreeMap::new();
    for l in first..model.config().layers {
        layers.insert(
            l,
            UnitWeights {
                gate: Tensor::randn(0f32, 0.02, (r, dim), dev)?,
                up: Tensor::zeros((r, dim), candle_core::DType::F32, dev)?,
                down: Tensor::randn(0f32, 0.02, (dim, r), dev)?,
            },
        );
    }
    let init = FfnUnits { layers };
    println!(
        "units: {} parameters in blocks {first}..",
        init.parameters()
    );
    let t = std::time::Instant::now();
    let prepared: Vec<TrainText> = train
        .iter()
        .map(|ids| TrainText::prepare(&model, ids, first))
        .collect::<Result<_, _>>()?;
    println!(
        "prepared {} texts in {:.1} s",
        prepared.len(),
        t.elapsed().as_secs_f64()
    );
    let refs: Vec<&TrainText> = prepared.iter().collect();
    let mean_ppl = |units: Option<&FfnUnits>, set: &[Vec<u32>]| -> f64 {
        let nll: f64 = set
            .iter()
            .map(|ids| score(&model, ids, 512, units).expect("score").nll)
            .sum::<f64>()
            / set.len() as f64;
        nll.exp()
    };
    let before = (mean_ppl(None, train), mean_ppl(None, held));
    let config = UnitTraining {
        epochs,
        learning_rate: arg(6, "2e-3").parse()?,
        batch: arg(7, "4").parse()?,
        ..UnitTraining::default()
    };
    let (trained, report) = train_units(&model, &refs, first, None, &init, &config, |s, l| {
        if s % 4 == 0 {
            println!("step {s} loss {l:.3}");
        }
    })?;
    println!("{report:?}");
    let after = (
        mean_ppl(Some(&trained), train),
        mean_ppl(Some(&trained), held),
    );
    println!(
        "trained docs ppl {:.2} -> {:.2} ({:+.1}%), held-out {:.2} -> {:.2} ({:+.1}%)",
        before.0,
        after.0,
        100.0 * (after.0 / before.0 - 1.0),
        before.1,
        after.1,
        100.0 * (after.1 / before.1 - 1.0)
    );
    Ok(())
}
