//! Decoding speed of trained models side by side: each round measures
//! every model once (greedy, 128 new tokens, one thread, median of 10
//! requests), rounds interleave the models so that a change in machine
//! load hits them all alike, and the median over rounds is reported.
//!
//! ```sh
//! cargo run --release -p mnemos-lm-train --example generation_speed -- \
//!     models/trained/lm/tiny-2l models/trained/lm/tiny-4l \
//!     models/trained/lm/tiny-2l-pkm models/trained/lm/tiny-2l-memplus
//! ```

use std::path::PathBuf;

use mnemos_lm::{KeyPrecision, Lm, LmTokenizer, TOKENIZER_FILE};
use mnemos_lm_train::{measure_generation, GenerationConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dirs: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let rounds = 5;
    let mut models = Vec::new();
    for d in &dirs {
        let name = d
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // As served: memory sub-keys packed at load in eight bits
        // (`lm.memory_key_precision`'s default). Memory models are also
        // timed unpacked (sub-keys scored by `matmul`) and with f16 sub-keys
        // (`lm.memory_key_precision = "f16"`).
        let mut model = Lm::load(d)?;
        if model.pack_memory_keys_as(KeyPrecision::Int8)? > 0 {
            let tokenizer = LmTokenizer::load(&d.join(TOKENIZER_FILE))?;
            models.push((format!("{name} (unpacked)"), Lm::load(d)?, tokenizer));
            let mut f16 = Lm::load(d)?;
            f16.pack_memory_keys_as(KeyPrecision::F16)?;
            let tokenizer = LmTokenizer::load(&d.join(TOKENIZER_FILE))?;
            models.push((format!("{name} (f16)"), f16, tokenizer));
        }
        let tokenizer = LmTokenizer::load(&d.join(TOKENIZER_FILE))?;
        models.push((name, model, tokenizer));
    }
    let config = GenerationConfig::default();
    let mut speeds = vec![Vec::new(); models.len()];
    for round in 0..rounds {
        for (i, (name, model, tokenizer)) in models.iter().enumerate() {
            let r = measure_generation(model, tokenizer, &config)?;
            println!("round {round} {name:<28} {:>8.0} tok/s", r.tokens_per_sec);
            speeds[i].push(r.tokens_per_sec);
        }
    }
    println!(
        "\n{:<18} {:>12} {:>12}",
        "model", "parameters", "median tok/s"
    );
    for ((name, model, _), mut s) in models.iter().zip(speeds) {
        s.sort_by(f64::total_cmp);
        println!(
            "{name:<28} {:>12} {:>12.0}",
            model.num_parameters(),
            s[s.len() / 2]
        );
    }
    Ok(())
}
