//! Helpers shared by the integration tests.

use std::path::PathBuf;

pub const TOKEN: &str = "test-admin-token";

/// The installed MiniLM directory, or `None` (tests then run BM25 only and
/// say so).
pub fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MNEMOS_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/weights/all-MiniLM-L6-v2")
        });
    if dir.join("config.json").exists() {
        Some(dir)
    } else {
        eprintln!(
            "note: no model at {} (run scripts/install-models.sh); testing BM25 only",
            dir.display()
        );
        None
    }
}

/// The installed EfficientNet-Lite0 directory, or `None` (image tests then
/// skip and say so).
pub fn vision_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MNEMOS_VISION_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../models/weights/efficientnet-lite0")
        });
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "note: no image model at {} (run scripts/install-models.sh); skipping image tests",
            dir.display()
        );
        None
    }
}

/// The SmolLM2 anchor's GGUF directory, or `None` (anchor tests then skip
/// and say so).
pub fn smollm_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MNEMOS_SMOLLM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/weights/smollm2-135m")
        });
    if mnemos_llama::find_gguf(&dir).is_ok() {
        Some(dir)
    } else {
        eprintln!(
            "note: no SmolLM2 GGUF in {}; skipping anchor tests (scripts/install-models.sh)",
            dir.display()
        );
        None
    }
}

/// The committed, trained Hypencoder, or `None` (hypencoder tests then skip
/// and say so).
pub fn hypencoder_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MNEMOS_HYPENCODER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../models/trained/hypencoder-scifact")
        });
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "note: no trained hypencoder at {}; skipping hypencoder tests",
            dir.display()
        );
        None
    }
}

pub fn docs_json(docs: &[(&str, &str, &str)]) -> serde_json::Value {
    serde_json::json!({
        "documents": docs
            .iter()
            .map(|(id, title, text)| serde_json::json!({"id": id, "title": title, "text": text}))
            .collect::<Vec<_>>()
    })
}

pub fn hit_ids(resp: &serde_json::Value) -> Vec<String> {
    resp["hits"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
