//! Image encoders for mnemos: EfficientNet-Lite0 (ImageNet-pretrained) on
//! candle, for visual memory (kNN classification over stored embeddings,
//! `SPECS.md` §3).
//!
//! An image becomes a 1280-dimensional unit vector: decoded (PNG/JPEG, or
//! raw pixels), resized so its shorter side is 256, centre-cropped to
//! 224×224, normalised as the weights were trained, run through
//! EfficientNet-Lite0 (Tan & Le 2019, arXiv:1905.11946; see
//! `src/efficientnet.rs`), globally average-pooled before the classifier,
//! and L2-normalised. The ImageNet classifier's logits are available too
//! ([`ImageEncoder::infer`]), to check the pretrained head.
//!
//! [`ImageEncoder::load`] accepts any directory holding the weights —
//! `model.safetensors`, or a legacy (pre-1.6) PyTorch `torch.save` state
//! dict, read here without Python (`src/torch_legacy.rs`) — and an optional
//! `config.json` ([`VisionConfig`]). `scripts/install-models.sh` puts the
//! pretrained Lite0 weights in `models/weights/efficientnet-lite0`.
//!
//! Threads: candle sizes its matrix-product pool from `RAYON_NUM_THREADS`
//! (or all cores); set it to 1 to run one encoder per worker thread.
//!
//! ```no_run
//! use mnemos_vision::{EncoderOptions, ImageEncoder, ImageInput};
//!
//! let dir = std::path::Path::new("models/weights/efficientnet-lite0");
//! let encoder = ImageEncoder::load(dir, EncoderOptions::default())?;
//! let png = std::fs::read("cat.png").expect("an image");
//! let vectors = encoder.embed(&[ImageInput::Encoded(&png)])?;
//! assert_eq!(vectors[0].len(), encoder.dim());
//! # Ok::<(), mnemos_vision::ModelError>(())
//! ```

mod config;
mod conv;
mod depthwise;
mod efficientnet;
mod encoder;
mod epilogue;
mod pickle;
mod preprocess;
mod resample;
mod torch_legacy;
mod weights;

pub use config::{Padding, VisionConfig};
pub use efficientnet::BlockSpec;
pub use encoder::{EncoderOptions, ImageEncoder, Inference};
pub use mnemos_models_core::{ModelError, Result};
pub use preprocess::{ImageInput, ImageLimits, PixelFormat, Pixels, Preprocessed};
pub use weights::export_safetensors;

/// candle's errors reach callers as [`ModelError::Runtime`] text, so that
/// `mnemos-models-core` does not depend on candle.
fn runtime_error(err: candle_core::Error) -> ModelError {
    ModelError::Runtime(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ImageEncoder>();
    }
}
