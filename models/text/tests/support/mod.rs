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
/// size of a typical query or short passage.
pub const SENTENCES: [&str; 8] = [
    "Vitamin D supplementation was associated with a modest reduction in acute respiratory infections among adults with low baseline levels, according to a pooled analysis of randomised trials conducted in Europe and Asia.",
    "The search engine ranks documents by combining lexical matching scores with dense vector similarity, then reorders the top results with a slower but more accurate cross-encoder model for each query.",
    "Researchers measured the effect of sleep deprivation on memory consolidation in young adults and found that recall accuracy dropped significantly after a single night without any sleep at all, even in the fittest participants.",
    "A new battery chemistry based on sodium ions promises cheaper grid storage, although its energy density still falls short of the lithium cells used in most electric vehicles, laptops and phones today.",
    "Mutations in the tumour suppressor gene were found in nearly half of the sampled patients, suggesting that the pathway plays a central role in the progression of this particular cancer type in adults.",
    "The city council approved a plan to expand protected bicycle lanes across the downtown area, citing a sharp rise in cycling commuters and a decline in traffic injuries over the last two years.",
    "Large language models can memorise rare sequences from their training data, which raises privacy concerns when that data includes personal information scraped from public websites without consent or notice to users.",
    "Astronomers detected water vapour in the atmosphere of a planet orbiting a nearby red dwarf star, making it one of the most promising targets for future habitability studies with space telescopes.",
];
