//! Time per token of one product-key memory layer as the memory grows,
//! next to dense SwiGLU networks: `RAYON_NUM_THREADS=1 cargo run --release
//! -p mnemos-lm --example memory_scale [dim] [key_dim] [rounds]`.
//!
//! N = 16k, 65k, 262k and 1M values (n = 128 … 1024), k = 32, H = 4, as in
//! the criterion bench `memory_layer`, but quicker. Every layer is built
//! first, then timed in short slices, round-robin over all of them for
//! several rounds, keeping each one's fastest slice: on a machine shared
//! with other jobs this compares the sizes under the same conditions.
//! Inputs cycle through 512 random tokens so that value rows are read from
//! wherever the table lives, not from a cache warmed by repeating a token.

use std::time::Instant;

use candle_core::{Device, Tensor};
use mnemos_lm::{KeyPrecision, MemoryConfig, MemoryLayer, MemoryVariant, SwiGlu};

/// As in the `mnemos` binary: freed tensor buffers are reused.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A forward pass to time.
type Run<'a> = Box<dyn Fn(&Tensor) -> Res<Tensor> + 'a>;

const SUB_KEYS: [usize; 4] = [128, 256, 512, 1024];

/// Timed cases per memory size (the table's columns, in push order).
const PER_SIZE: usize = 10;

/// One timed thing: a layer or network and a batch size.
struct Case<'a> {
    run: Run<'a>,
    tokens: usize,
    /// Seconds per token: the best slice so far.
    best: f64,
}

/// Seconds per call of `run` over `inputs` (cycled) in one slice of about
/// `budget_s`, at least two calls.
fn slice(run: &dyn Fn(&Tensor) -> Res<Tensor>, inputs: &[Tensor], budget_s: f64) -> Res<f64> {
    let start = Instant::now();
    let mut calls = 0;
    while calls < 2 || start.elapsed().as_secs_f64() < budget_s {
        run(&inputs[calls % inputs.len()])?;
        calls += 1;
    }
    Ok(start.elapsed().as_secs_f64() / calls as f64)
}

fn case<'a>(run: impl Fn(&Tensor) -> Res<Tensor> + 'a, tokens: usize) -> Case<'a> {
    Case {
        run: Box::new(run),
        tokens,
        best: f64::MAX,
    }
}

fn memory(n: usize, key_dim: usize, variant: MemoryVariant, batch_norm: bool) -> MemoryConfig {
    MemoryConfig {
        layers: vec![0],
        n_keys: n,
        k: 32,
        heads: 4,
        key_dim,
        query_batch_norm: batch_norm,
        variant,
    }
}

fn main() -> Res<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let dim = args.first().copied().unwrap_or(256);
    let key_dim = args.get(1).copied().unwrap_or(128);
    let rounds = args.get(2).copied().unwrap_or(5);
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    println!("dim = {dim}, d_k = {key_dim}, k = 32, H = 4, threads: {threads}, rounds: {rounds}");
    let random = |t: usize, count: usize| -> Res<Vec<Tensor>> {
        Ok((0..count)
            .map(|_| Tensor::randn(0f32, 1.0, (t, dim), &Device::Cpu))
            .collect::<Result<_, _>>()?)
    };
    let (single, batch) = (random(1, 512)?, random(64, 8)?);

    let start = Instant::now();
    let mut pkm = Vec::new();
    let mut plus = Vec::new();
    let mut dense = Vec::new();
    let mut plain = Vec::new();
    let mut unpacked = Vec::new();
    for n in SUB_KEYS {
        // As served: sub-keys packed in eight bits at load.
        let mut layer = MemoryLayer::new(dim, &memory(n, key_dim, MemoryVariant::Pkm, true), 1)?;
        layer.round_to_f16()?; // as an f16 checkpoint holds the weights
        unpacked.push(layer.clone());
        let mut layer = layer;
        layer.pack_keys_as(KeyPrecision::Int8)?;
        pkm.push(layer);
        let mut layer =
            MemoryLayer::new(dim, &memory(n, key_dim, MemoryVariant::MemoryPlus, true), 1)?;
        layer.round_to_f16()?;
        layer.pack_keys_as(KeyPrecision::Int8)?;
        plus.push(layer);
        // Without batch norm, so the training path can run one token.
        plain.push(MemoryLayer::new(
            dim,
            &memory(n, key_dim, MemoryVariant::Pkm, false),
            1,
        )?);
        let params = pkm[pkm.len() - 1].num_parameters();
        dense.push(SwiGlu::new(dim, params / (3 * dim), 2)?);
    }
    let standard = SwiGlu::new(dim, 3 * dim, 3)?;
    println!("built in {:.0} s", start.elapsed().as_secs_f64());

    let mut cases: Vec<Case> = Vec::new();
    for i in 0..SUB_KEYS.len() {
        for t in [1, 64] {
            let (a, b, d) = (&pkm[i], &plus[i], &dense[i]);
            cases.push(case(move |x| Ok(a.forward(x)?), t));
            cases.push(case(move |x| Ok(b.forward(x)?), t));
            cases.push(case(move |x| Ok(d.forward(x)?), t));
        }
        let p = &plain[i];
        cases.push(case(move |x| Ok(p.forward(x)?), 1));
        cases.push(case(move |x| Ok(p.forward_train(x)?), 1));
        for t in [1, 64] {
            let u = &unpacked[i];
            cases.push(case(move |x| Ok(u.forward(x)?), t));
        }
    }
    for t in [1, 64] {
        let s = &standard;
        cases.push(case(move |x| Ok(s.forward(x)?), t));
    }
    for _ in 0..rounds {
        for case in &mut cases {
            let inputs = if case.tokens == 1 { &single } else { &batch };
            let secs = slice(&case.run, inputs, 0.15)? / case.tokens as f64;
            case.best = case.best.min(secs);
        }
    }
    let us: Vec<f64> = cases.iter().map(|c| c.best * 1e6).collect();

    println!(
        "{:>9} {:>6} {:>10} | {:>8} {:>8} | {:>8} {:>8} | {:>9} {:>9} | {:>8} {:>8} | {:>8} {:>8}",
        "N",
        "n",
        "params",
        "pkm T=1",
        "T=64",
        "mem+ T=1",
        "T=64",
        "dense T=1",
        "T=64",
        "fast T=1",
        "tensor",
        "f32 T=1",
        "T=64"
    );
    for (i, n) in SUB_KEYS.iter().enumerate() {
        let r = &us[i * PER_SIZE..(i + 1) * PER_SIZE];
        println!(
            "{:>9} {:>6} {:>10} | {:>8.1} {:>8.1} | {:>8.1} {:>8.1} | {:>9.0} {:>9.1} | {:>8.1} {:>8.1} | {:>8.1} {:>8.1}",
            n * n,
            n,
            pkm[i].num_parameters(),
            r[0],
            r[3],
            r[1],
            r[4],
            r[2],
            r[5],
            r[6],
            r[7],
            r[8],
            r[9]
        );
    }
    println!(
        "(µs per token; pkm / mem+: sub-keys packed in eight bits as served; dense = SwiGLU with the PKM \
         layer's parameter count; fast / tensor = inference path / differentiable path, no batch \
         norm; f32 = pkm with unpacked keys, scored by matmul)"
    );
    let last = us.len() - 2;
    println!(
        "dense SwiGLU of hidden 3·dim = {} ({} params): {:.1} µs/token at T=1, {:.1} at T=64",
        3 * dim,
        standard.num_parameters(),
        us[last],
        us[last + 1]
    );
    let growth = |col: usize| us[3 * PER_SIZE + col] / us[PER_SIZE + col];
    println!(
        "growth 65k → 1M: pkm T=1 {:.2}×, T=64 {:.2}×; mem+ T=1 {:.2}×, T=64 {:.2}×; \
         f32 keys T=1 {:.2}×, T=64 {:.2}×",
        growth(0),
        growth(3),
        growth(1),
        growth(4),
        growth(8),
        growth(9)
    );
    Ok(())
}
