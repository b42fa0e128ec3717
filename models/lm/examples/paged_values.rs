//! Time per token of a product-key memory layer whose value table is read
//! in pages through the memory tiers, against the table in RAM:
//! `RAYON_NUM_THREADS=1 cargo run --release -p mnemos-lm --example
//! paged_values [n_keys] [rows_per_page] [rounds]`.
//!
//! Four layers share one set of weights (N = n², k = 32, H = 4, dim 256):
//! values in RAM; paged with every page hot (a budget above the table);
//! paged with a budget of 10 % of the table; paged with a budget of one
//! page (every read from the warm tier: a mapped file, checked). Timed
//! round-robin in short slices, keeping each one's fastest, over 512
//! random tokens cycled. Prints JSON.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use mnemos_lm::{MemoryConfig, MemoryLayer, MemoryVariant, PagedValues};
use mnemos_tiers::{Tiers, TiersConfig};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let n_keys = args.first().copied().unwrap_or(512);
    let rows_per_page = args.get(1).copied().unwrap_or(64);
    let rounds = args.get(2).copied().unwrap_or(5);
    let dim = 256;
    let config = MemoryConfig {
        layers: vec![0],
        n_keys,
        k: 32,
        heads: 4,
        key_dim: 128,
        query_batch_norm: false,
        variant: MemoryVariant::Pkm,
    };
    let base = MemoryLayer::new(dim, &config, 1)?;
    let table = base.value_table()?;
    let table_bytes = (table.len() * 4) as u64;
    let page_bytes = (rows_per_page * dim * 4) as u64;
    let dir = tempfile::tempdir()?;
    let mut cases: Vec<(String, MemoryLayer, Option<Tiers>)> =
        vec![("ram".into(), base.clone(), None)];
    for (name, budget) in [
        ("paged_all_hot", table_bytes + page_bytes),
        ("paged_10pct_hot", table_bytes / 10),
        ("paged_warm", page_bytes),
    ] {
        let tiers = Tiers::new(TiersConfig::new(budget, dir.path().join(name)))?;
        let paged =
            PagedValues::export(&table, dim, rows_per_page, tiers.clone(), "values", false)?;
        let mut layer = base.clone();
        layer.set_paged_values(Some(Arc::new(paged)))?;
        cases.push((name.into(), layer, Some(tiers)));
    }
    drop(table);
    let inputs: Vec<Tensor> = (0..512)
        .map(|i| mnemos_lm::SplitMix64::new(i).normal_tensor((1, dim), 1.0, &Device::Cpu))
        .collect::<Result<_, _>>()?;
    // Warm-up: one pass over the inputs each (fills the hot tiers).
    for (_, layer, _) in &cases {
        for x in &inputs {
            layer.forward(x)?;
        }
    }
    for (_, _, tiers) in &cases {
        if let Some(t) = tiers {
            t.reset_counters();
        }
    }
    let mut best = vec![f64::INFINITY; cases.len()];
    let mut cursor = 0usize;
    for _ in 0..rounds {
        for (c, (_, layer, _)) in cases.iter().enumerate() {
            let start = Instant::now();
            let mut calls = 0;
            while calls < 2 || start.elapsed().as_secs_f64() < 0.3 {
                layer.forward(&inputs[cursor % inputs.len()])?;
                cursor += 1;
                calls += 1;
            }
            best[c] = best[c].min(start.elapsed().as_secs_f64() / calls as f64);
        }
    }
    let report: Vec<serde_json::Value> = cases
        .iter()
        .zip(&best)
        .map(|((name, _, tiers), s)| {
            let summary = tiers.as_ref().map(|t| t.summary());
            serde_json::json!({
                "case": name,
                "us_per_token": s * 1e6,
                "ratio_to_ram": s / best[0],
                "hot_hit_rate": summary.as_ref().map(|s| s.hot_hit_rate),
                "hot_budget_bytes": summary.as_ref().map(|s| s.hot_budget_bytes),
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "values": n_keys * n_keys, "dim": dim, "rows_per_page": rows_per_page,
            "table_bytes": table_bytes, "cases": report,
        }))?
    );
    Ok(())
}
