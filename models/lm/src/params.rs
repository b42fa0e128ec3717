//! Where a model's named tensors come from: a seeded random draw for a new
//! model, or a map of existing tensors (a `model.safetensors` file, or the
//! variables of a trainer). Every module builds itself by asking a
//! [`ParamSource`] for its tensors by name and shape, so the names, shapes
//! and initialisations are written once, in the module that uses them.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Shape, Tensor};

use crate::error::{LmError, Result};
use crate::rng::SplitMix64;

/// How a new tensor is initialised.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Init {
    /// N(0, std²).
    Normal(f64),
    /// Uniform in (−bound, bound).
    Uniform(f64),
    /// A constant.
    Const(f32),
}

enum Origin {
    Random(SplitMix64),
    Stored {
        tensors: HashMap<String, Tensor>,
        /// The file the tensors came from, for error messages.
        path: PathBuf,
    },
}

/// Hands out named tensors and records the trainable ones.
pub(crate) struct ParamSource {
    origin: Origin,
    device: Device,
    params: Vec<(String, Tensor)>,
}

impl ParamSource {
    /// New tensors drawn from a generator seeded with `seed`.
    pub fn random(seed: u64, device: &Device) -> Self {
        Self {
            origin: Origin::Random(SplitMix64::new(seed)),
            device: device.clone(),
            params: Vec::new(),
        }
    }

    /// Existing tensors by name; `path` names their file in errors.
    pub fn stored(tensors: HashMap<String, Tensor>, path: PathBuf, device: &Device) -> Self {
        Self {
            origin: Origin::Stored { tensors, path },
            device: device.clone(),
            params: Vec::new(),
        }
    }

    /// A trainable tensor; recorded in [`ParamSource::finish`]'s list.
    pub fn param<S: Into<Shape>>(&mut self, name: &str, shape: S, init: Init) -> Result<Tensor> {
        let tensor = self.tensor(name, shape.into(), init)?;
        self.params.push((name.to_string(), tensor.clone()));
        Ok(tensor)
    }

    /// A tensor that is saved but not trained (batch-norm running
    /// statistics); its owner reports it itself.
    pub fn buffer<S: Into<Shape>>(&mut self, name: &str, shape: S, init: Init) -> Result<Tensor> {
        // Buffers are updated in place of the old value, never through a
        // gradient: take them out of any variable they came from.
        Ok(self.tensor(name, shape.into(), init)?.detach())
    }

    fn tensor(&mut self, name: &str, shape: Shape, init: Init) -> Result<Tensor> {
        match &mut self.origin {
            Origin::Random(rng) => Ok(match init {
                Init::Normal(std) => rng.normal_tensor(shape.clone(), std, &self.device)?,
                Init::Uniform(bound) => rng.uniform_tensor(shape.clone(), bound, &self.device)?,
                Init::Const(value) => Tensor::full(value, &shape, &self.device)?,
            }),
            Origin::Stored { tensors, path } => {
                let bad = |message: String| LmError::Model {
                    path: path.clone(),
                    message,
                };
                let tensor = tensors
                    .remove(name)
                    .ok_or_else(|| bad(format!("tensor {name} is missing")))?;
                if tensor.dims() != shape.dims() {
                    return Err(bad(format!(
                        "tensor {name} is {:?}, config.json implies {:?}",
                        tensor.dims(),
                        shape.dims()
                    )));
                }
                match tensor.dtype() {
                    DType::F32 => Ok(tensor),
                    DType::F16 | DType::BF16 => Ok(tensor.to_dtype(DType::F32)?),
                    other => Err(bad(format!("tensor {name} is {other:?}, not a float"))),
                }
            }
        }
    }

    /// The trainable tensors handed out, in order; fails if a stored map
    /// holds tensors nobody asked for (a file for another shape of model).
    pub fn finish(self) -> Result<Vec<(String, Tensor)>> {
        if let Origin::Stored { tensors, path } = &self.origin {
            if let Some(extra) = tensors.keys().min() {
                return Err(LmError::Model {
                    path: path.clone(),
                    message: format!("unexpected tensor {extra}"),
                });
            }
        }
        Ok(self.params)
    }
}
