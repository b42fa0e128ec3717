//! The Hypencoder query side: configuration plus hyperheads, turning query
//! token states into q-nets; saving and loading in the hub layout.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::config::HypencoderConfig;
use crate::error::{HypencoderError, Result};
use crate::hyperhead::{HeadGroup, HyperHeads, QueryStates, GROUP_TENSORS};
use crate::qnet::QNets;

pub use mnemos_models_core::hub::{CONFIG_FILE, WEIGHTS_FILE};

/// A Hypencoder: hyperheads that turn a query's token states into the
/// weights of its q-net (Killingback, Zeng & Zamani, SIGIR 2025; SPECS §2).
///
/// The text encoder is not part of it: queries arrive as token states of a
/// frozen encoder (all-MiniLM-L6-v2 in mnemos), documents as that encoder's
/// pooled vectors.
#[derive(Debug, Clone)]
pub struct Hypencoder {
    config: HypencoderConfig,
    heads: HyperHeads,
}

impl Hypencoder {
    /// A new, untrained model; the same `seed` gives the same weights.
    pub fn new(config: HypencoderConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let heads = HyperHeads::init(&config, seed)?;
        Ok(Self { config, heads })
    }

    /// The configuration.
    pub fn config(&self) -> &HypencoderConfig {
        &self.config
    }

    /// Trainable scalars (5.2M with the default configuration).
    pub fn num_parameters(&self) -> usize {
        self.named_tensors()
            .iter()
            .map(|(_, t)| t.elem_count())
            .sum()
    }

    /// The q-nets of a batch of queries.
    ///
    /// Records a gradient graph only when the weights are training
    /// variables ([`crate::train::Trainer`]); a loaded or new model's
    /// weights are plain tensors, so inference builds none.
    pub fn generate(&self, queries: &QueryStates) -> Result<QNets> {
        let generated = self.heads.generate(queries, self.config.layer_norm_eps)?;
        Ok(QNets::new(
            generated,
            self.config.residual,
            self.config.layer_norm_eps,
        ))
    }

    /// Every weight tensor with its name in `model.safetensors`.
    pub fn named_tensors(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::with_capacity(2 * GROUP_TENSORS.len());
        for (group, heads) in [
            ("matrices", &self.heads.matrices),
            ("vectors", &self.heads.vectors),
        ] {
            for (name, tensor) in GROUP_TENSORS.iter().zip(heads.tensors()) {
                out.push((format!("{group}.{name}"), tensor));
            }
        }
        out
    }

    /// A model with the same configuration whose tensors are `f(name,
    /// tensor)`: how the trainer swaps in variables and takes them out.
    pub(crate) fn map_tensors(
        &self,
        mut f: impl FnMut(&str, &Tensor) -> Result<Tensor>,
    ) -> Result<Self> {
        let mut group = |prefix: &str, heads: &HeadGroup| -> Result<HeadGroup> {
            let mapped: Vec<Tensor> = GROUP_TENSORS
                .iter()
                .zip(heads.tensors())
                .map(|(name, t)| f(&format!("{prefix}.{name}"), t))
                .collect::<Result<_>>()?;
            let array: [Tensor; 7] = mapped
                .try_into()
                .map_err(|_| HypencoderError::InvalidInput("tensor count".into()))?;
            Ok(HeadGroup::from_tensors(array))
        };
        let heads = HyperHeads {
            matrices: group("matrices", &self.heads.matrices)?,
            vectors: group("vectors", &self.heads.vectors)?,
        };
        Ok(Self {
            config: self.config.clone(),
            heads,
        })
    }

    /// The same weights without any gradient graph, for inference.
    pub fn detached(&self) -> Self {
        self.map_tensors(|_, t| Ok(t.detach()))
            .expect("detaching cannot fail")
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if
    /// absent), the weights as `dtype` (`F16` halves the file; `F32` keeps
    /// scores bit-identical after loading).
    pub fn save(&self, dir: &Path, dtype: DType) -> Result<()> {
        let config = serde_json::to_string_pretty(&self.config)
            .map_err(|err| HypencoderError::Config(err.to_string()))?;
        mnemos_models_core::hub::save_hub_dir(
            dir,
            &config,
            self.named_tensors()
                .into_iter()
                .map(|(n, t)| (n, t.clone()))
                .collect(),
            dtype,
        )
        .map_err(|e| match e {
            mnemos_models_core::ModelError::InvalidInput(m) => HypencoderError::InvalidInput(m),
            mnemos_models_core::ModelError::Io { path, source } => {
                HypencoderError::Io { path, source }
            }
            other => HypencoderError::Config(other.to_string()),
        })
    }

    /// Loads a model saved by [`Hypencoder::save`] (or any directory with a
    /// matching `config.json` and `model.safetensors`). Weights of any float
    /// dtype load as f32. Every tensor must be present with the shape the
    /// configuration implies, and no other tensor may be present, so a
    /// mismatched file fails here rather than scoring nonsense.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str, what: &'static str| -> Result<Vec<u8>> {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(HypencoderError::MissingFile { path, what });
            }
            std::fs::read(&path).map_err(|source| HypencoderError::Io { path, source })
        };
        let config_path = dir.join(CONFIG_FILE);
        let config: HypencoderConfig =
            serde_json::from_slice(&read(CONFIG_FILE, "hypencoder configuration")?).map_err(
                |err| HypencoderError::Model {
                    path: config_path.clone(),
                    message: err.to_string(),
                },
            )?;
        config.validate().map_err(|err| HypencoderError::Model {
            path: config_path,
            message: err.to_string(),
        })?;

        let weights_path = dir.join(WEIGHTS_FILE);
        let bad = |message: String| HypencoderError::Model {
            path: weights_path.clone(),
            message,
        };
        let bytes = read(WEIGHTS_FILE, "hypencoder weights")?;
        let mut stored = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|err| bad(err.to_string()))?;
        let h = config.hidden_size;
        let l = config.num_hidden_layers;
        let mut group = |prefix: &str, heads: usize, out: usize| -> Result<HeadGroup> {
            let shapes = HeadGroup::shapes(heads, out, h);
            let mut tensors = Vec::with_capacity(GROUP_TENSORS.len());
            for (name, shape) in GROUP_TENSORS.iter().zip(shapes) {
                let key = format!("{prefix}.{name}");
                let tensor = stored
                    .remove(&key)
                    .ok_or_else(|| bad(format!("tensor {key} is missing")))?;
                if tensor.dims() != shape.as_slice() {
                    return Err(bad(format!(
                        "tensor {key} is {:?}, config.json implies {shape:?}",
                        tensor.dims()
                    )));
                }
                if !matches!(tensor.dtype(), DType::F16 | DType::BF16 | DType::F32) {
                    return Err(bad(format!("tensor {key} is {:?}", tensor.dtype())));
                }
                tensors.push(tensor.to_dtype(DType::F32)?);
            }
            let array: [Tensor; 7] = tensors.try_into().map_err(|_| bad("tensor count".into()))?;
            Ok(HeadGroup::from_tensors(array))
        };
        let heads = HyperHeads {
            matrices: group("matrices", l, h)?,
            vectors: group("vectors", l + 1, 1)?,
        };
        if let Some(extra) = stored.keys().min() {
            return Err(bad(format!("unexpected tensor {extra}")));
        }
        Ok(Self { config, heads })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_count_matches_the_config_formula() {
        let cfg = HypencoderConfig::new(16, 3);
        let model = Hypencoder::new(cfg.clone(), 1).expect("model");
        assert_eq!(model.num_parameters(), cfg.num_parameters());
    }

    #[test]
    fn same_seed_same_weights() {
        let cfg = HypencoderConfig::new(8, 2);
        let a = Hypencoder::new(cfg.clone(), 3).expect("a");
        let b = Hypencoder::new(cfg.clone(), 3).expect("b");
        let c = Hypencoder::new(cfg, 4).expect("c");
        let flat = |m: &Hypencoder| -> Vec<f32> {
            m.named_tensors()
                .iter()
                .flat_map(|(_, t)| t.flatten_all().and_then(|t| t.to_vec1()).expect("vec"))
                .collect()
        };
        assert_eq!(flat(&a), flat(&b));
        assert_ne!(flat(&a), flat(&c));
    }
}
