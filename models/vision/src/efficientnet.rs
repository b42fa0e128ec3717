//! EfficientNet-Lite on candle, inference only.
//!
//! EfficientNet (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for
//! Convolutional Neural Networks", arXiv:1905.11946) stacks MBConv blocks
//! (Sandler et al. 2018, MobileNetV2, arXiv:1801.04381): a 1×1 expansion,
//! a k×k depthwise convolution, a 1×1 linear projection, and a skip
//! connection when shape allows. The "Lite" variants (TensorFlow TPU
//! repository, `efficientnet/lite`, 2020) make it friendly to mobile
//! accelerators: ReLU6 instead of swish, no squeeze-and-excitation, and the
//! stem (32 channels) and head (1280) kept fixed when scaling.
//!
//! Everything about the shape is read from the weights (lukemelas
//! `EfficientNet-PyTorch` tensor names: `_conv_stem`, `_bn0`,
//! `_blocks.{i}._expand_conv` / `_depthwise_conv` / `_project_conv` with
//! `_bn0/1/2`, `_conv_head`, `_bn1`, `_fc`); strides and padding come from
//! [`VisionConfig`]. BatchNorm is folded into each convolution at load time
//! (`w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`), so the forward pass is
//! convolutions, bias, ReLU6 and adds only.
//!
//! Activations are NHWC, kept as `[pixels, channels]` matrices, so every
//! 1×1 convolution is one matrix product over the whole batch and the
//! depthwise kernel ([`crate::depthwise`]) reads channels contiguously.

use candle_core::{Device, Tensor};
use mnemos_models_core::Result;

use crate::config::{Padding, VisionConfig};
use crate::conv::{im2col, Nhwc, Window};
use crate::depthwise::Depthwise;
use crate::epilogue::{bias_act, bias_residual, Activation};
use crate::weights::{RawTensor, Weights};

/// The shape of one MBConv block, as found in the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    /// Channels in.
    pub input: usize,
    /// Channels after the 1×1 expansion (equal to `input` when the block
    /// has none, as the first block of EfficientNet-B0 does).
    pub expanded: usize,
    /// Channels out.
    pub output: usize,
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Depthwise stride.
    pub stride: usize,
    /// Whether the input is added to the output.
    pub residual: bool,
}

/// A 1×1 convolution (or the classifier) as a `[in, out]` matrix + bias.
struct Pointwise {
    weight: Tensor,
    bias: Vec<f32>,
}

struct MbConv {
    spec: BlockSpec,
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
}

/// The network, weights folded and laid out for the forward pass.
pub(crate) struct EfficientNetLite {
    stem: Pointwise,
    stem_kernel: usize,
    padding: Padding,
    blocks: Vec<MbConv>,
    head: Pointwise,
    classifier: Option<Pointwise>,
}

/// The stem always halves the input (Tan & Le 2019, Table 1, stage 1).
const STEM_STRIDE: usize = 2;

impl EfficientNetLite {
    /// Builds the network from `weights`, which must hold exactly its
    /// tensors (anything left over means a different architecture).
    pub fn load(weights: &mut Weights, cfg: &VisionConfig) -> Result<Self> {
        if let Some(se) = weights.remaining().into_iter().find(|n| n.contains("_se_")) {
            return Err(weights.error(format!(
                "{se}: squeeze-and-excitation blocks belong to EfficientNet-B*, \
                 not the Lite variants this loader implements"
            )));
        }
        let eps = cfg.batch_norm_eps;
        let (stem_w, stem_b) = folded_conv(weights, "_conv_stem", "_bn0", eps)?;
        let &[stem_out, 3, k, k2] = stem_w.shape.as_slice() else {
            return Err(weights.error(format!(
                "_conv_stem.weight has shape {:?}; expected [C, 3, k, k]",
                stem_w.shape
            )));
        };
        if k != k2 || k == 0 {
            return Err(weights.error(format!("stem kernel is {k}×{k2}")));
        }
        let stem = Pointwise {
            weight: matrix(stem_taps(&stem_w), k * k * 3, stem_out)?,
            bias: stem_b,
        };

        let mut blocks = Vec::new();
        let mut channels = stem_out;
        let mut stages = StageStrides::new(&cfg.stage_strides);
        while weights.contains(&format!("_blocks.{}._depthwise_conv.weight", blocks.len())) {
            let block = load_block(weights, cfg, blocks.len(), channels, &mut stages)?;
            channels = block.spec.output;
            blocks.push(block);
        }
        if blocks.is_empty() {
            return Err(weights.error("no MBConv blocks (_blocks.0.*) found".into()));
        }
        if stages.used != cfg.stage_strides.len() {
            return Err(weights.error(format!(
                "the weights have {} stages but config.json gives {} stage_strides",
                stages.used,
                cfg.stage_strides.len()
            )));
        }

        let head = pointwise(weights, "_conv_head", "_bn1", eps, channels)?;
        let classifier = if weights.contains("_fc.weight") {
            let w = weights.take("_fc.weight", &[None, Some(head.bias.len())])?;
            let classes = w.shape[0];
            let b = weights.take("_fc.bias", &[Some(classes)])?;
            Some(Pointwise {
                weight: matrix(
                    transpose(&w.data, classes, head.bias.len()),
                    head.bias.len(),
                    classes,
                )?,
                bias: b.data,
            })
        } else {
            None
        };

        let leftover = weights.remaining();
        if !leftover.is_empty() {
            let shown: Vec<&str> = leftover.iter().take(5).copied().collect();
            return Err(weights.error(format!(
                "{} tensors this architecture does not use, e.g. {}",
                leftover.len(),
                shown.join(", ")
            )));
        }
        Ok(Self {
            stem,
            stem_kernel: k,
            padding: cfg.padding,
            blocks,
            head,
            classifier,
        })
    }

    pub fn blocks(&self) -> impl Iterator<Item = BlockSpec> + '_ {
        self.blocks.iter().map(|b| b.spec)
    }

    pub fn stem_channels(&self) -> usize {
        self.stem.bias.len()
    }

    /// Length of the pooled feature vector (1280 for every Lite model).
    pub fn feature_dim(&self) -> usize {
        self.head.bias.len()
    }

    /// Number of classifier outputs; 0 without a classifier.
    pub fn num_classes(&self) -> usize {
        self.classifier.as_ref().map_or(0, |c| c.bias.len())
    }

    /// Runs `images` (NHWC, `[n, h, w, 3]`, normalised) through the network:
    /// the globally average-pooled features `[n, feature_dim]` and, if asked
    /// and present, the classifier logits `[n, num_classes]`.
    pub fn forward(
        &self,
        images: &[f32],
        shape: Nhwc,
        with_logits: bool,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let _span = tracing::debug_span!("efficientnet_forward", images = shape.n).entered();
        let (k, s) = (self.stem_kernel, STEM_STRIDE);
        let rows = Window::new(shape.h, k, s, self.padding);
        let cols = Window::new(shape.w, k, s, self.padding);
        let (n, mut h, mut w) = (shape.n, rows.out, cols.out);
        let patches = im2col(images, shape, k, s, rows, cols);
        let patches = Tensor::from_vec(patches, (n * h * w, k * k * shape.c), &Device::Cpu)?;
        let mut x = patches.matmul(&self.stem.weight)?;
        bias_act(&x, &self.stem.bias, Activation::Relu6)?;

        for (i, block) in self.blocks.iter().enumerate() {
            let _span = tracing::trace_span!("mbconv", block = i).entered();
            let spec = block.spec;
            let expanded = match &block.expand {
                Some(e) => {
                    let t = x.matmul(&e.weight)?;
                    bias_act(&t, &e.bias, Activation::Relu6)?;
                    t
                }
                None => x.clone(),
            };
            let spatial = expanded
                .reshape((n, h, w, spec.expanded))?
                .apply_op1_no_bwd(&block.depthwise)?;
            let (_, h2, w2, _) = spatial.dims4()?;
            let projected = spatial
                .reshape((n * h2 * w2, spec.expanded))?
                .matmul(&block.project.weight)?;
            if spec.residual {
                bias_residual(&projected, &block.project.bias, &x)?;
            } else {
                bias_act(&projected, &block.project.bias, Activation::None)?;
            }
            (x, h, w) = (projected, h2, w2);
        }

        let x = x.matmul(&self.head.weight)?;
        bias_act(&x, &self.head.bias, Activation::Relu6)?;
        let pooled = x.reshape((n, h * w, self.feature_dim()))?.mean(1)?;
        let logits = match (&self.classifier, with_logits) {
            (Some(fc), true) => {
                let logits = pooled.matmul(&fc.weight)?;
                bias_act(&logits, &fc.bias, Activation::None)?;
                Some(logits)
            }
            _ => None,
        };
        Ok((pooled, logits))
    }
}

/// Walks the per-stage strides: a new stage starts where the output width
/// changes, and only its first block strides.
struct StageStrides<'a> {
    strides: &'a [usize],
    used: usize,
    last_output: Option<usize>,
}

impl<'a> StageStrides<'a> {
    fn new(strides: &'a [usize]) -> Self {
        Self {
            strides,
            used: 0,
            last_output: None,
        }
    }

    fn stride_for(&mut self, output: usize) -> Option<usize> {
        if self.last_output == Some(output) {
            return Some(1);
        }
        self.last_output = Some(output);
        let stride = self.strides.get(self.used).copied();
        self.used += 1;
        stride
    }
}

fn load_block(
    weights: &mut Weights,
    cfg: &VisionConfig,
    index: usize,
    input: usize,
    stages: &mut StageStrides<'_>,
) -> Result<MbConv> {
    let p = format!("_blocks.{index}.");
    let eps = cfg.batch_norm_eps;
    let expand = if weights.contains(&format!("{p}_expand_conv.weight")) {
        Some(pointwise(
            weights,
            &format!("{p}_expand_conv"),
            &format!("{p}_bn0"),
            eps,
            input,
        )?)
    } else {
        None
    };
    let expanded = expand.as_ref().map_or(input, |e| e.bias.len());

    let (dw, dw_bias) = folded_conv(
        weights,
        &format!("{p}_depthwise_conv"),
        &format!("{p}_bn1"),
        eps,
    )?;
    let &[c, 1, k, k2] = dw.shape.as_slice() else {
        return Err(weights.error(format!(
            "{p}_depthwise_conv.weight has shape {:?}; expected [{expanded}, 1, k, k]",
            dw.shape
        )));
    };
    if c != expanded || k != k2 || k == 0 {
        return Err(weights.error(format!(
            "{p}_depthwise_conv.weight has shape {:?}; expected [{expanded}, 1, k, k]",
            dw.shape
        )));
    }
    let project = pointwise(
        weights,
        &format!("{p}_project_conv"),
        &format!("{p}_bn2"),
        eps,
        expanded,
    )?;
    let output = project.bias.len();
    let Some(stride) = stages.stride_for(output) else {
        return Err(weights.error(format!(
            "block {index} starts stage {} but config.json gives only {} stage_strides",
            stages.used,
            cfg.stage_strides.len()
        )));
    };
    Ok(MbConv {
        spec: BlockSpec {
            input,
            expanded,
            output,
            kernel: k,
            stride,
            residual: stride == 1 && input == output,
        },
        expand,
        depthwise: Depthwise {
            kernel: k,
            stride,
            channels: c,
            padding: cfg.padding,
            // [c, 1, k, k] → [k·k, c]
            weight: transpose(&dw.data, c, k * k),
            bias: dw_bias,
        },
        project,
    })
}

/// A 1×1 convolution `[out, in, 1, 1]` with its BatchNorm, as `[in, out]`.
fn pointwise(
    weights: &mut Weights,
    conv: &str,
    bn: &str,
    eps: f64,
    input: usize,
) -> Result<Pointwise> {
    let (w, bias) = folded_conv(weights, conv, bn, eps)?;
    let &[out, inp, 1, 1] = w.shape.as_slice() else {
        return Err(weights.error(format!(
            "{conv}.weight has shape {:?}; expected [_, {input}, 1, 1]",
            w.shape
        )));
    };
    if inp != input {
        return Err(weights.error(format!(
            "{conv}.weight has {inp} input channels, expected {input}"
        )));
    }
    Ok(Pointwise {
        weight: matrix(transpose(&w.data, out, inp), inp, out)?,
        bias,
    })
}

/// Takes `{conv}.weight` and `{bn}.*`, and returns the weight scaled per
/// output channel and the bias that together equal conv → BatchNorm.
fn folded_conv(
    weights: &mut Weights,
    conv: &str,
    bn: &str,
    eps: f64,
) -> Result<(RawTensor, Vec<f32>)> {
    let mut w = weights.take(&format!("{conv}.weight"), &[None, None, None, None])?;
    let out = w.shape[0];
    let mut take = |what: &str| {
        weights
            .take(&format!("{bn}.{what}"), &[Some(out)])
            .map(|t| t.data)
    };
    let (gamma, beta, mean, var) = (
        take("weight")?,
        take("bias")?,
        take("running_mean")?,
        take("running_var")?,
    );
    let per_out = w.data.len() / out.max(1);
    let mut bias = Vec::with_capacity(out);
    for (o, row) in w.data.chunks_exact_mut(per_out.max(1)).enumerate() {
        let scale = f64::from(gamma[o]) / (f64::from(var[o]) + eps).sqrt();
        for x in row {
            *x = (f64::from(*x) * scale) as f32;
        }
        bias.push((f64::from(beta[o]) - f64::from(mean[o]) * scale) as f32);
    }
    if bias.iter().any(|b| !b.is_finite()) || w.data.iter().any(|x| !x.is_finite()) {
        return Err(weights.error(format!("{conv}/{bn}: weights are not finite")));
    }
    Ok((w, bias))
}

/// `[rows, cols]` row-major → `[cols, rows]` row-major.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// The stem's `[out, 3, k, k]` weights as the `[k·k·3, out]` matrix that
/// multiplies [`im2col`] rows (taps ordered ky, kx, channel).
fn stem_taps(w: &RawTensor) -> Vec<f32> {
    let (out, cin, k) = (w.shape[0], w.shape[1], w.shape[2]);
    let mut m = vec![0f32; w.data.len()];
    for o in 0..out {
        for ci in 0..cin {
            for ky in 0..k {
                for kx in 0..k {
                    let tap = (ky * k + kx) * cin + ci;
                    m[tap * out + o] = w.data[((o * cin + ci) * k + ky) * k + kx];
                }
            }
        }
    }
    m
}

fn matrix(data: Vec<f32>, rows: usize, cols: usize) -> Result<Tensor> {
    Tensor::from_vec(data, (rows, cols), &Device::Cpu).map_err(crate::runtime_error)
}
