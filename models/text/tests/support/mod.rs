//! Shared by the tests, the bench and the throughput example: finding the
//! real model (the one place that knows where `scripts/install-models.sh`
//! puts it) and a fixed workload.

#![allow(dead_code)] // each includer uses a different part

use std::path::PathBuf;

/// The all-MiniLM-L6-v2 directory: `$MNEMOS_MODEL_DIR` if set, else
/// `<workspace>/models/weights/all-MiniLM-L6-v2`. `None`, after printing
/// why, when it is not installed, so callers can skip.
pub fn model_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("MNEMOS_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../weights/all-MiniLM-L6-v2"),
    };
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: all-MiniLM-L6-v2 not found in {}; run scripts/install-models.sh \
             or set MNEMOS_MODEL_DIR",
            dir.display()
        );
        None
    }
}

/// Eight sentences of 36–41 tokens (mean 38), special tokens included: the
/// size of a typical query or short passage. The same file feeds the PyTorch
/// baseline (`scripts/bench/pytorch_embed.py`), so both measure equal work.
pub fn sentences() -> Vec<&'static str> {
    include_str!("../fixtures/sentences40.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .collect()
}

/// `n` sentences, cycling through [`sentences`].
pub fn batch_of(n: usize) -> Vec<&'static str> {
    sentences().into_iter().cycle().take(n).collect()
}
