//! Time per token of a product-key layer at T = 1, split into the lookup
//! alone (query, sub-key scores, top-k selection) and the whole forward
//! pass (plus the value gather and output): `RAYON_NUM_THREADS=1 cargo run
//! --release -p mnemos-lm --example pkm_lookup -- [n …] [int8|f16|both]`
//! (default 256 1024, int8).
//!
//! dim = 256, d_k = 128, k = 32, H = 4; sub-keys packed in eight bits as
//! served by default, or in f16 (`lm.memory_key_precision`).
//! Each layer is timed in 0.1 s slices, round-robin over all layers for 15
//! rounds, keeping each one's fastest slice, so that two builds can be
//! compared by running them one after the other on a shared machine.
//! Inputs cycle through 512 random tokens.

use std::time::Instant;

use candle_core::{Device, Tensor};
use mnemos_lm::{KeyPrecision, MemoryConfig, MemoryLayer, MemoryVariant};

/// As in the `mnemos` binary: freed tensor buffers are reused.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let mut precisions = vec![KeyPrecision::Int8];
    let mut sizes = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "f16" => precisions = vec![KeyPrecision::F16],
            "int8" => precisions = vec![KeyPrecision::Int8],
            "both" => precisions = vec![KeyPrecision::F16, KeyPrecision::Int8],
            n => sizes.push(n.parse::<usize>()?),
        }
    }
    if sizes.is_empty() {
        sizes = vec![256, 1024];
    }
    let mut layers = Vec::new();
    let mut ns = Vec::new();
    for &n in &sizes {
        let config = MemoryConfig {
            layers: vec![0],
            n_keys: n,
            k: 32,
            heads: 4,
            key_dim: 128,
            query_batch_norm: true,
            variant: MemoryVariant::Pkm,
        };
        let mut layer = MemoryLayer::new(256, &config, 1)?;
        layer.round_to_f16()?; // as an f16 checkpoint holds the weights
        for &precision in &precisions {
            let mut packed = layer.clone();
            packed.pack_keys_as(precision)?;
            layers.push(packed);
            ns.push(format!("{n} {precision:?}"));
        }
    }
    let xs: Vec<Tensor> = (0..512)
        .map(|_| Tensor::randn(0f32, 1.0, (1, 256), &Device::Cpu))
        .collect::<Result<_, _>>()?;
    // (forward, lookup) µs per token: the fastest slice so far.
    let mut best = vec![[f64::MAX; 2]; ns.len()];
    for _ in 0..15 {
        for (layer, best) in layers.iter().zip(&mut best) {
            for (mode, best) in best.iter_mut().enumerate() {
                let started = Instant::now();
                let mut calls = 0;
                while started.elapsed().as_secs_f64() < 0.1 {
                    let x = &xs[calls % xs.len()];
                    if mode == 0 {
                        layer.forward(x)?;
                    } else {
                        layer.lookup(x)?;
                    }
                    calls += 1;
                }
                *best = best.min(started.elapsed().as_secs_f64() * 1e6 / calls as f64);
            }
        }
    }
    for (n, [forward, lookup]) in ns.iter().zip(&best) {
        println!("n = {n}: forward {forward:.1} µs, lookup {lookup:.1} µs per token");
    }
    let p = precisions.len();
    if best.len() > p {
        for (i, precision) in precisions.iter().enumerate() {
            let (first, last) = (best[i][0], best[best.len() - p + i][0]);
            println!("{precision:?} forward growth {:.3}×", last / first);
        }
    }
    Ok(())
}
