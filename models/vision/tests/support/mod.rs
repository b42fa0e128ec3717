//! Shared by the tests, the bench and the throughput example: finding the
//! real model (the one place that knows where `scripts/install-models.sh`
//! puts it) and the fixture images.

#![allow(dead_code)] // each includer uses a different part

use std::path::PathBuf;

/// The EfficientNet-Lite0 directory: `$MNEMOS_VISION_MODEL_DIR` if set,
/// else `<workspace>/models/weights/efficientnet-lite0`. `None`, after
/// printing why, when it is not installed, so callers can skip.
pub fn model_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("MNEMOS_VISION_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../weights/efficientnet-lite0"),
    };
    let has_weights = std::fs::read_dir(&dir).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            let path = e.path();
            path.extension()
                .is_some_and(|ext| ext == "pth" || ext == "pt" || ext == "safetensors")
        })
    });
    if has_weights {
        Some(dir)
    } else {
        eprintln!(
            "skipping: EfficientNet-Lite0 weights not found in {}; run scripts/install-models.sh \
             or set MNEMOS_VISION_MODEL_DIR",
            dir.display()
        );
        None
    }
}

/// A fixture file's bytes (`tests/fixtures/NAME`).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The drawn fixture images, as PNG bytes: varied sizes and colour types
/// (RGB 300×260, grey 256×256, RGBA 240×320, RGB 64×48).
pub fn images() -> Vec<(&'static str, Vec<u8>)> {
    [
        "honeycomb.png",
        "spiral.png",
        "window_screen.png",
        "blobs.png",
    ]
    .into_iter()
    .map(|name| (name, fixture(name)))
    .collect()
}
