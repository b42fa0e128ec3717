//! Loads a GGUF model and prints a greedy chat answer, the perplexity of a
//! text and the timings of both: a quick check of an installed model.
//!
//! ```sh
//! cargo run --release -p mnemos-llama --example smollm_probe -- \
//!     models/weights/smollm2-135m ../shared/data/text/wikitext-2-valid.txt
//! ```

use std::path::PathBuf;
use std::time::Instant;

use mnemos_llama::{chat_prompt, generate, score, Llama, WeightFormat};
use mnemos_lm::GenerateOptions;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model_path = PathBuf::from(args.next().unwrap_or("models/weights/smollm2-135m".into()));
    let text_path = args.next().map(PathBuf::from);
    let format = match std::env::var("WEIGHTS").as_deref() {
        Ok("native") => WeightFormat::Native,
        Ok("f32") => WeightFormat::F32,
        _ => WeightFormat::Q8_0,
    };
    let t = Instant::now();
    let model = Llama::load_with(&model_path, format)?;
    println!("weights {format:?}");
    println!(
        "loaded {} parameters in {:.2} s: {:?}",
        model.num_parameters(),
        t.elapsed().as_secs_f64(),
        model.config()
    );
    let prompt = model.encode(&chat_prompt("What is the capital of France?"))?;
    let options = GenerateOptions {
        max_new_tokens: 48,
        temperature: 0.0,
        ..GenerateOptions::default()
    };
    let t = Instant::now();
    let out = generate(&model, &prompt, &options, None)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "chat ({} prompt tokens, {} new in {secs:.2} s = {:.1} tok/s): {:?}",
        prompt.len(),
        out.len(),
        out.len() as f64 / secs,
        model.decode(&out)?
    );
    // Decoding speed: 64 new tokens after a short plain prompt, greedy,
    // end-of-text ignored by generating from a prompt that rarely ends.
    let prompt = model.encode("The history of the city begins")?;
    let long = GenerateOptions {
        max_new_tokens: 64,
        temperature: 0.0,
        ..GenerateOptions::default()
    };
    let mut speeds = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = generate(&model, &prompt, &long, None)?;
        speeds.push(out.len() as f64 / t.elapsed().as_secs_f64());
    }
    speeds.sort_by(f64::total_cmp);
    println!(
        "decoding: median {:.1} tokens/s over 3 runs of 64 tokens",
        speeds[1]
    );
    if let Some(path) = text_path {
        let text = std::fs::read_to_string(path)?;
        let text: String = text.chars().skip(2000).take(4000).collect();
        let ids = model.encode(&text)?;
        let window = 512;
        let t = Instant::now();
        let s = score(&model, &ids, window, None)?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "score window {window}: {} tokens, ppl {:.2} in {secs:.2} s ({:.0} tok/s)",
            s.tokens,
            s.perplexity,
            s.tokens as f64 / secs
        );
    }
    Ok(())
}
