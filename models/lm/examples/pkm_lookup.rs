//! Time per token of a product-key layer at T = 1, split into the lookup
//! alone (query, sub-key scores, top-k selection) and the whole forward
//! pass (plus the value gather and output): `RAYON_NUM_THREADS=1 cargo run
//! --release -p mnemos-lm --example pkm_lookup -- [n …]` (default 256 1024).
//!
//! dim = 256, d_k = 128, k = 32, H = 4, sub-keys packed in f16 as served.
//! Each layer is timed in 0.1 s slices, round-robin over all layers for 15
//! rounds, keeping each one's fastest slice, so that two builds can be
//! compared by running them one after the other on a shared machine.
//! Inputs cycle through 512 random tokens.

use std::time::Instant;

use candle_core::{Device, Tensor};
use mnemos_lm::{MemoryConfig, MemoryLayer, MemoryVariant};

/// As in the `mnemos` binary: freed tensor buffers are reused.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let mut ns: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    if ns.is_empty() {
        ns = vec![256, 1024];
    }
    let mut layers = Vec::new();
    for &n in &ns {
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
        layer.pack_keys()?;
        layers.push(layer);
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
    if let (Some(first), Some(last)) = (best.first(), best.last()) {
        println!("forward growth {:.3}×", last[0] / first[0]);
    }
    Ok(())
}
