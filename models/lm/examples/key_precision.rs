//! Validation perplexity of a trained memory model with its sub-keys
//! scored three ways: the f32 keys by `matmul` (as trained), packed f16
//! (as served), and eight-bit ([`KeyPrecision::Int8`]); with the share of
//! lookups whose picks differ from the f16 ones.
//!
//! `cargo run --release -p mnemos-lm --example key_precision --
//! models/trained/lm/tiny-2l-pkm ../shared/data/text/wikitext-2-valid.txt`
//! scores the text's last 10%, the validation split `mnemos train lm`
//! holds out.

use std::path::PathBuf;

use mnemos_lm::{score_tokens, KeyPrecision, Lm, LmTokenizer, TOKENIZER_FILE};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(text)) = (args.next(), args.next()) else {
        return Err("usage: key_precision MODEL_DIR TEXT_FILE".into());
    };
    let dir = PathBuf::from(dir);
    let text = std::fs::read_to_string(text)?;
    let tokenizer = LmTokenizer::load(&dir.join(TOKENIZER_FILE))?;
    let tokens = tokenizer.encode(&text)?;
    let held_out = &tokens[tokens.len() - tokens.len() / 10..];
    let unpacked = Lm::load(&dir)?;
    let mut f16 = unpacked.clone();
    f16.pack_memory_keys_as(KeyPrecision::F16)?;
    let mut int8 = unpacked.clone();
    int8.pack_memory_keys_as(KeyPrecision::Int8)?;
    println!("{} held-out tokens of {}", held_out.len(), dir.display());
    for (name, model) in [
        ("f32 matmul", &unpacked),
        ("f16 packed", &f16),
        ("int8 packed", &int8),
    ] {
        let score = score_tokens(model, held_out)?;
        println!(
            "{name:>12}: perplexity {:.4}, nll {:.6}",
            score.perplexity, score.nll
        );
    }
    Ok(())
}
