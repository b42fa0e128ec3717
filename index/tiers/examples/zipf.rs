//! Tier placement under Zipf-distributed reads (the issue-8 figures).
//!
//! A synthetic bank shaped like a hierarchical memory bank (SPECS §5):
//! `--branching` children per node, `--levels` levels, blocks halving in
//! size per level. It is published to object storage (a SeaweedFS server
//! started on loopback, or `--cold file`), then read through the tiers:
//!
//! - `--mode path` (default): each read picks a leaf by Zipf(s) over the
//!   leaves and reads the blocks on its root-to-leaf path, as the LM does;
//! - `--mode flat`: each read picks one block by Zipf(s) over all blocks.
//!
//! The hot budget is `--hot-fraction` of the bank's bytes. The first
//! `--warmup` share of reads is not counted. Prints one JSON object: hit
//! rates (achieved, and the best any static placement of that budget could
//! do), fetch latency per tier, and RSS against the budget.
//!
//! ```text
//! cargo run --release -p mnemos-tiers --example zipf -- --mode path
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mnemos_tiers::seaweed::Seaweed;
use mnemos_tiers::{BlockSpec, ColdOptions, ColdStore, Tier, Tiers, TiersConfig};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Args {
    mode: String,
    cold: String,
    s: f64,
    branching: usize,
    levels: usize,
    leaf_bytes: usize,
    hot_fraction: f64,
    reads: usize,
    warmup: f64,
    seed: u64,
}

fn args() -> Result<Args> {
    let mut a = Args {
        mode: "path".into(),
        cold: "seaweed".into(),
        s: 1.1,
        branching: 16,
        levels: 3,
        leaf_bytes: 16 << 10,
        hot_fraction: 0.1,
        reads: 200_000,
        warmup: 0.2,
        seed: 7,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let (flag, value) = (pair[0].as_str(), pair.get(1).cloned().unwrap_or_default());
        match flag {
            "--mode" => a.mode = value,
            "--cold" => a.cold = value,
            "--s" => a.s = value.parse()?,
            "--branching" => a.branching = value.parse()?,
            "--levels" => a.levels = value.parse()?,
            "--leaf-bytes" => a.leaf_bytes = value.parse()?,
            "--hot-fraction" => a.hot_fraction = value.parse()?,
            "--reads" => a.reads = value.parse()?,
            "--warmup" => a.warmup = value.parse()?,
            "--seed" => a.seed = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

/// splitmix64: reproducible draws without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over `n` ranks: probabilities and a sampler.
struct Zipf {
    p: Vec<f64>,
    cdf: Vec<f64>,
}
impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let w: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
        let total: f64 = w.iter().sum();
        let p: Vec<f64> = w.iter().map(|x| x / total).collect();
        let mut acc = 0.0;
        let cdf = p
            .iter()
            .map(|x| {
                acc += x;
                acc
            })
            .collect();
        Self { p, cdf }
    }
    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn main() -> Result<()> {
    let a = args()?;
    // Nodes level by level: level l has branching^l nodes of
    // leaf_bytes·2^(levels-l). Each block is generated and published at
    // once, so the RSS baseline holds no copy of the bank.
    let mut sizes = Vec::new();
    let mut level_start = Vec::new();
    for level in 1..=a.levels {
        level_start.push(sizes.len());
        let count = a.branching.pow(level as u32);
        sizes.extend(std::iter::repeat_n(
            (level, a.leaf_bytes << (a.levels - level)),
            count,
        ));
    }
    let bank_bytes: u64 = sizes.iter().map(|&(_, s)| s as u64).sum();
    let budget = (bank_bytes as f64 * a.hot_fraction) as u64;
    let dir = tempfile::tempdir()?;
    let _server;
    let cold = match a.cold.as_str() {
        "seaweed" => {
            let server = Seaweed::start(&dir.path().join("seaweed"))?;
            let store = server.store("mnemos", "bench")?;
            _server = Some(server);
            store
        }
        "file" => {
            _server = None;
            ColdStore::open(
                &format!("file://{}", dir.path().join("cold").display()),
                &ColdOptions::default(),
            )?
        }
        other => return Err(format!("--cold seaweed|file, not {other}").into()),
    };
    let mut config = TiersConfig::new(budget, dir.path().join("warm"));
    config.cold = Some(cold);
    config.fetch_timeout = Duration::from_secs(10);
    let tiers = Tiers::new(config)?;
    let publish_started = Instant::now();
    let mut specs: Vec<BlockSpec> = Vec::with_capacity(sizes.len());
    let mut index_in_level = 0;
    for (n, &(level, size)) in sizes.iter().enumerate() {
        if level_start.get(level - 1) == Some(&n) {
            index_in_level = 0;
        }
        let bytes: Vec<u8> = (0..size)
            .map(|j| (index_in_level * 131 + j * 7 + level) as u8)
            .collect();
        let spec = BlockSpec::of(format!("blocks/l{level}/n{index_in_level}.bin"), &bytes);
        tiers.publish(&spec.key, Bytes::from(bytes))?;
        specs.push(spec);
        index_in_level += 1;
    }
    let publish_s = publish_started.elapsed().as_secs_f64();

    // What each read touches, and each block's true access probability.
    let leaves = a.branching.pow(a.levels as u32);
    let mut rng = Rng(a.seed);
    let (units, zipf) = match a.mode.as_str() {
        "path" => (leaves, Zipf::new(leaves, a.s)),
        "flat" => (specs.len(), Zipf::new(specs.len(), a.s)),
        other => return Err(format!("--mode path|flat, not {other}").into()),
    };
    // A random rank -> unit map, so popular leaves are spread over the tree.
    let mut order: Vec<usize> = (0..units).collect();
    for i in (1..units).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let path_of = |unit: usize| -> Vec<usize> {
        if a.mode == "flat" {
            return vec![unit];
        }
        (1..=a.levels)
            .map(|level| level_start[level - 1] + unit / a.branching.pow((a.levels - level) as u32))
            .collect()
    };
    // Oracle: the best static placement of this budget (blocks by access
    // probability per byte... here by probability, ties irrelevant).
    let mut prob: HashMap<usize, f64> = HashMap::new();
    for (rank, &unit) in order.iter().enumerate() {
        for b in path_of(unit) {
            *prob.entry(b).or_default() += zipf.p[rank];
        }
    }
    let reads_per_access: f64 = prob.values().sum();
    let mut ranked: Vec<(usize, f64)> = prob.into_iter().collect();
    ranked.sort_by(|x, y| {
        (y.1 / specs[y.0].bytes as f64).total_cmp(&(x.1 / specs[x.0].bytes as f64))
    });
    let (mut used, mut oracle) = (0u64, 0.0);
    for (b, p) in ranked {
        if used + specs[b].bytes <= budget {
            used += specs[b].bytes;
            oracle += p;
        }
    }
    let oracle = oracle / reads_per_access;

    let rss_before = rss_bytes();
    let warmup = (a.reads as f64 * a.warmup) as usize;
    let mut max_rss = 0;
    let started = Instant::now();
    for i in 0..a.reads {
        if i == warmup {
            tiers.reset_counters();
        }
        let unit = order[zipf.sample(&mut rng)];
        for b in path_of(unit) {
            tiers.get(&specs[b])?;
        }
        if i % 10_000 == 0 {
            max_rss = max_rss.max(rss_bytes());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    max_rss = max_rss.max(rss_bytes());
    let s = tiers.summary();
    let tier = |t: Tier| s.tiers.iter().find(|x| x.tier == t).cloned();
    let report = serde_json::json!({
        "mode": a.mode, "cold": a.cold, "zipf_s": a.s,
        "blocks": specs.len(), "bank_bytes": bank_bytes, "hot_budget_bytes": budget,
        "bank_over_budget": bank_bytes as f64 / budget as f64,
        "reads": a.reads, "counted_reads": a.reads - warmup,
        "block_reads_per_read": reads_per_access,
        "hot_hit_rate": s.hot_hit_rate, "oracle_static_hit_rate": oracle,
        "hot": tier(Tier::Hot), "warm": tier(Tier::Warm), "cold_tier": tier(Tier::Cold),
        "failures": s.failures,
        "hot_resident_bytes": s.hot_resident_bytes,
        "frequency_sketch_bytes": s.frequency_bytes,
        "rss_before_reads": rss_before, "rss_max": max_rss,
        "rss_growth_over_budget": max_rss as i64 - rss_before as i64 - budget as i64,
        "publish_s": publish_s, "reads_per_s": a.reads as f64 / elapsed,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
