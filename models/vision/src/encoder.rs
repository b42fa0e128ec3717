//! The image encoder callers use: load a model directory, turn images into
//! unit-length embeddings (and, for checking the pretrained head, ImageNet
//! logits).

use std::path::Path;

use candle_core::Tensor;
use mnemos_models_core::{ModelError, Result};

use crate::config::VisionConfig;
use crate::conv::Nhwc;
use crate::efficientnet::{BlockSpec, EfficientNetLite};
use crate::preprocess::{ImageInput, ImageLimits, Preprocessed, Preprocessor};
use crate::runtime_error;
use crate::weights::{self, Weights};

/// Settings for [`ImageEncoder::load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderOptions {
    /// Most images run through the network at once; larger calls are
    /// split. On one thread, 1–2 images per pass measured fastest per image
    /// (~75 images/s); 4 was ~20% and 16 ~50% slower, as activations
    /// (~20 MB per image at 224×224) outgrow the caches. Batching therefore
    /// buys nothing here; the bound keeps one call's memory small.
    pub max_batch: usize,
    /// Bounds on each input image.
    pub limits: ImageLimits,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        Self {
            max_batch: 2,
            limits: ImageLimits::default(),
        }
    }
}

/// Embedding and classifier output of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    /// The pooled features, L2-normalised (see [`ImageEncoder::embed`]).
    pub embedding: Vec<f32>,
    /// Raw classifier scores, one per class (ImageNet-1k order for the
    /// installed weights); empty when the weights have no classifier.
    pub logits: Vec<f32>,
}

impl Inference {
    /// The `k` most probable classes, best first, with their softmax
    /// probabilities.
    pub fn top_k(&self, k: usize) -> Vec<(usize, f32)> {
        let max = self
            .logits
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = self.logits.iter().map(|&l| (l - max).exp()).collect();
        let total: f32 = exps.iter().sum();
        let mut ranked: Vec<(usize, f32)> =
            exps.into_iter().map(|e| e / total).enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        ranked
    }
}

/// An EfficientNet-Lite image encoder (by default EfficientNet-Lite0,
/// ImageNet-pretrained): 1280-dimensional unit-length embeddings.
///
/// Holds read-only weights: share one across threads (`Send + Sync`).
/// Runs on the CPU; set `RAYON_NUM_THREADS=1` before the first call to keep
/// each inference worker on one core.
pub struct ImageEncoder {
    model: EfficientNetLite,
    preprocessor: Preprocessor,
    max_batch: usize,
}

impl ImageEncoder {
    /// Loads the model in `model_dir`: an optional `config.json`
    /// ([`VisionConfig`]) and the weights, `model.safetensors` or one
    /// legacy PyTorch `*.pth` file, with lukemelas EfficientNet-PyTorch
    /// tensor names.
    ///
    /// Fails with [`ModelError::MissingFile`] when the directory or the
    /// weights are absent, [`ModelError::Config`] when a file is malformed
    /// or describes an unsupported network, and
    /// [`ModelError::InvalidInput`] for out-of-range options.
    pub fn load(model_dir: &Path, opts: EncoderOptions) -> Result<Self> {
        if !model_dir.is_dir() {
            return Err(ModelError::MissingFile {
                path: model_dir.to_path_buf(),
                what: "image model directory",
            });
        }
        if opts.max_batch == 0 {
            return Err(ModelError::InvalidInput(
                "max_batch must be at least 1".into(),
            ));
        }
        let config = VisionConfig::read_or_default(&model_dir.join("config.json"))?;
        let path = weights::locate(model_dir, &config)?;
        let mut weights = Weights::read(&path)?;
        let model = EfficientNetLite::load(&mut weights, &config)?;
        if model.stem_channels() == 0 || model.feature_dim() == 0 {
            return Err(weights.error("the network has no channels".into()));
        }
        tracing::debug!(
            path = %weights.path().display(),
            blocks = model.blocks().count(),
            classes = model.num_classes(),
            "loaded EfficientNet-Lite"
        );
        Ok(Self {
            model,
            preprocessor: Preprocessor::new(&config, opts.limits),
            max_batch: opts.max_batch,
        })
    }

    /// Length of every embedding (1280 for EfficientNet-Lite).
    pub fn dim(&self) -> usize {
        self.model.feature_dim()
    }

    /// Number of classifier outputs (1000 for the ImageNet weights; 0 if
    /// the weights have no classifier).
    pub fn num_classes(&self) -> usize {
        self.model.num_classes()
    }

    /// Side of the square network input.
    pub fn input_size(&self) -> usize {
        self.preprocessor.size
    }

    /// The MBConv blocks as found in the weights.
    pub fn blocks(&self) -> Vec<BlockSpec> {
        self.model.blocks().collect()
    }

    /// Decodes and normalises one image, without running the network.
    /// Bad input (undecodable, empty, too large, inconsistent raw pixels)
    /// is [`ModelError::InvalidInput`], never a panic. Use this to find
    /// which images of a batch are bad before [`ImageEncoder::embed`].
    pub fn preprocess(&self, image: &ImageInput<'_>) -> Result<Preprocessed> {
        self.preprocessor.run(image)
    }

    /// Encodes each image into a unit-length vector of [`ImageEncoder::dim`]
    /// floats, in input order: the network's globally average-pooled
    /// features (before the classifier), L2-normalised, so the dot product
    /// of two embeddings is their cosine similarity.
    ///
    /// Fails on the first bad image, naming its index.
    pub fn embed(&self, images: &[ImageInput<'_>]) -> Result<Vec<Vec<f32>>> {
        let batch = self.preprocess_all(images)?;
        self.embed_preprocessed(&batch)
    }

    /// [`ImageEncoder::embed`] for images already preprocessed by this
    /// encoder.
    pub fn embed_preprocessed(&self, images: &[Preprocessed]) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .run(images, false)?
            .into_iter()
            .map(|i| i.embedding)
            .collect())
    }

    /// Embeddings and classifier logits of each image, in input order.
    pub fn infer(&self, images: &[ImageInput<'_>]) -> Result<Vec<Inference>> {
        let batch = self.preprocess_all(images)?;
        self.run(&batch, true)
    }

    /// [`ImageEncoder::infer`] for preprocessed images.
    pub fn infer_preprocessed(&self, images: &[Preprocessed]) -> Result<Vec<Inference>> {
        self.run(images, true)
    }

    fn preprocess_all(&self, images: &[ImageInput<'_>]) -> Result<Vec<Preprocessed>> {
        images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                self.preprocess(image).map_err(|err| match err {
                    ModelError::InvalidInput(m) => {
                        ModelError::InvalidInput(format!("image {i}: {m}"))
                    }
                    other => other,
                })
            })
            .collect()
    }

    fn run(&self, images: &[Preprocessed], with_logits: bool) -> Result<Vec<Inference>> {
        let size = self.preprocessor.size;
        if let Some(bad) = images
            .iter()
            .position(|p| p.size != size || p.data.len() != size * size * 3)
        {
            return Err(ModelError::InvalidInput(format!(
                "image {bad} was preprocessed for another input size (expected {size}×{size})"
            )));
        }
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(self.max_batch) {
            let mut input = Vec::with_capacity(chunk.len() * size * size * 3);
            for image in chunk {
                input.extend_from_slice(&image.data);
            }
            let shape = Nhwc {
                n: chunk.len(),
                h: size,
                w: size,
                c: 3,
            };
            let (pooled, logits) = self
                .model
                .forward(&input, shape, with_logits)
                .map_err(runtime_error)?;
            let pooled = rows(&pooled)?;
            let logits = match logits {
                Some(l) => rows(&l)?,
                None => vec![Vec::new(); chunk.len()],
            };
            for (mut embedding, logits) in pooled.into_iter().zip(logits) {
                l2_normalize(&mut embedding);
                out.push(Inference { embedding, logits });
            }
        }
        Ok(out)
    }
}

fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    t.to_vec2().map_err(runtime_error)
}

/// Scales `v` to unit length; an all-zero vector (possible in principle
/// after ReLU6) stays zero rather than becoming NaN.
fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_sorted_softmax() {
        let inf = Inference {
            embedding: vec![],
            logits: vec![0.0, 2.0, 1.0, 2.0],
        };
        let top = inf.top_k(3);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 3, 2]);
        let total: f32 = inf.top_k(10).iter().map(|t| t.1).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }

    #[test]
    fn zero_vectors_stay_finite() {
        let mut v = vec![0.0; 4];
        l2_normalize(&mut v);
        assert_eq!(v, [0.0; 4]);
        let mut w = vec![3.0, 4.0];
        l2_normalize(&mut w);
        assert_eq!(w, [0.6, 0.8]);
    }
}
