//! The model directory's `config.json`: what the weights alone do not say.
//!
//! The network's shape — channels, kernel sizes, expansion ratios, block
//! count, classes — is read from the weights' tensor shapes
//! ([`crate::efficientnet`]). What shapes cannot tell is here: strides,
//! padding convention, BatchNorm epsilon and the preprocessing the weights
//! were trained with. Every field is optional; the defaults describe
//! EfficientNet-Lite0 as published (Tan & Le 2019, TensorFlow TPU
//! reference `efficientnet/lite`), so a directory holding only the
//! installed `.pth` file loads as is.

use std::path::Path;

use mnemos_models_core::{ModelError, Result};
use serde::{Deserialize, Serialize};

/// How convolutions pad their input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// TensorFlow's `"SAME"`: output size `ceil(n / stride)`, the padding
    /// split with the extra pixel at the bottom/right. What the
    /// TensorFlow-trained EfficientNet weights expect: for stride 2 on an
    /// even input it pads 0 before and 1 after, where symmetric padding
    /// would shift every feature by a pixel.
    Same,
    /// PyTorch's usual `padding = kernel / 2` on both sides.
    Symmetric,
}

/// Settings of an EfficientNet-Lite model directory (`config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisionConfig {
    /// Must be `"efficientnet-lite"`; guards against pointing the loader
    /// at some other model's directory.
    pub model_type: String,
    /// Weights file inside the directory; by default `model.safetensors`,
    /// else the one `*.pth`/`*.pt` file there.
    pub weights: Option<String>,
    /// Side of the square network input, after the centre crop.
    pub image_size: usize,
    /// The shorter image side is resized to this before the centre crop
    /// (224/256 = 0.875, the crop fraction of the TF and torchvision
    /// evaluation pipelines).
    pub resize_shorter: usize,
    /// Per-channel (R, G, B) mean subtracted from pixels scaled to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation pixels are divided by, after the mean.
    pub std: [f32; 3],
    /// BatchNorm epsilon; TensorFlow's EfficientNets use 1e-3 (PyTorch's
    /// default, 1e-5, changes channels whose running variance is ~0).
    pub batch_norm_eps: f64,
    /// Padding convention of every convolution.
    pub padding: Padding,
    /// Stride of the first block of each stage, a stage being a run of
    /// blocks with the same output width (EfficientNet-B0's seven stages,
    /// Tan & Le 2019, Table 1).
    pub stage_strides: Vec<usize>,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            model_type: "efficientnet-lite".into(),
            weights: None,
            image_size: 224,
            resize_shorter: 256,
            // EfficientNet-Lite was trained on (pixel - 127) / 128 (TF
            // `efficientnet_lite_builder.py`), i.e. inputs in [-1, 1], not
            // on ImageNet mean/std: the stem BatchNorm's running means in
            // the shipped weights correlate at 0.975 with those predicted
            // for [-1, 1] inputs, and ImageNet normalisation would make
            // them ~0. 0.5/0.5 ((pixel - 127.5) / 127.5, as PyTorch ports
            // write it) is within 0.4% of TF's constants.
            mean: [0.5; 3],
            std: [0.5; 3],
            batch_norm_eps: 1e-3,
            padding: Padding::Same,
            stage_strides: vec![1, 2, 2, 2, 1, 2, 1],
        }
    }
}

impl VisionConfig {
    /// Reads `path`, or the defaults when it does not exist.
    pub fn read_or_default(path: &Path) -> Result<Self> {
        let config: Self = if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            serde_json::from_str(&text).map_err(|err| ModelError::Config {
                path: path.to_path_buf(),
                message: err.to_string(),
            })?
        } else {
            Self::default()
        };
        config.validate().map_err(|message| ModelError::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// Checks ranges, so that later arithmetic cannot go wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.model_type != "efficientnet-lite" {
            return Err(format!(
                "model_type is {:?}; only \"efficientnet-lite\" is supported",
                self.model_type
            ));
        }
        if !(16..=1024).contains(&self.image_size) {
            return Err(format!(
                "image_size must be 16..=1024, got {}",
                self.image_size
            ));
        }
        if self.resize_shorter < self.image_size || self.resize_shorter > 4 * self.image_size {
            return Err(format!(
                "resize_shorter must be between image_size and 4×image_size, got {}",
                self.resize_shorter
            ));
        }
        if self.mean.iter().any(|m| !m.is_finite())
            || self.std.iter().any(|s| !s.is_finite() || *s <= 0.0)
        {
            return Err("mean must be finite and std finite and positive".into());
        }
        if !(self.batch_norm_eps.is_finite() && self.batch_norm_eps > 0.0) {
            return Err("batch_norm_eps must be positive".into());
        }
        if self.stage_strides.is_empty() || self.stage_strides.iter().any(|s| !(1..=2).contains(s))
        {
            return Err("stage_strides must be a non-empty list of 1s and 2s".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_lite0_and_round_trip() {
        let cfg = VisionConfig::default();
        cfg.validate().expect("defaults are valid");
        let json = serde_json::to_string(&cfg).expect("serialise");
        let back: VisionConfig = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, cfg);
        let partial: VisionConfig =
            serde_json::from_str(r#"{"padding": "symmetric"}"#).expect("parse");
        assert_eq!(partial.padding, Padding::Symmetric);
        assert_eq!(partial.image_size, 224);
    }

    #[test]
    fn typos_and_bad_values_are_refused() {
        assert!(serde_json::from_str::<VisionConfig>(r#"{"imagesize": 3}"#).is_err());
        for bad in [
            r#"{"model_type": "bert"}"#,
            r#"{"image_size": 0}"#,
            r#"{"resize_shorter": 100}"#,
            r#"{"std": [0.5, 0.0, 0.5]}"#,
            r#"{"batch_norm_eps": -1}"#,
            r#"{"stage_strides": [1, 3]}"#,
        ] {
            let cfg: VisionConfig = serde_json::from_str(bad).expect("parses");
            assert!(cfg.validate().is_err(), "{bad}");
        }
    }
}
