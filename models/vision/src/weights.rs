//! Finding and reading the weights of a model directory, in either format.
//!
//! Two formats are accepted, told apart by their first bytes, not their
//! names: safetensors (the hub convention, `model.safetensors`) and
//! PyTorch's legacy `torch.save` pickle (what the installed package ships;
//! see [`crate::torch_legacy`] for why it is read directly). Both become
//! the same name → f32 array map, so the model code does not care which.
//! Files are read into memory rather than memory-mapped: mapping is
//! `unsafe` in candle, and these weights are ~19 MB.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use mnemos_models_core::{ModelError, Result};

use crate::config::VisionConfig;
use crate::torch_legacy;

/// A dense row-major f32 array.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The tensors of one weights file, taken out by name as the model is
/// built, so that anything left over can be reported.
#[derive(Debug)]
pub(crate) struct Weights {
    path: PathBuf,
    tensors: HashMap<String, RawTensor>,
}

impl Weights {
    /// Reads `path`, whichever of the two formats it is in.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |message: String| ModelError::Config {
            path: path.to_path_buf(),
            message,
        };
        let tensors = if torch_legacy::is_legacy(&bytes) {
            torch_legacy::read_state_dict(&bytes).map_err(bad)?
        } else {
            read_safetensors(&bytes).map_err(|err| {
                bad(format!(
                    "neither a safetensors file nor a legacy torch.save file: {err}"
                ))
            })?
        };
        Ok(Self {
            path: path.to_path_buf(),
            tensors: tensors.into_iter().collect(),
        })
    }

    #[cfg(test)]
    pub fn from_map(tensors: HashMap<String, RawTensor>) -> Self {
        Self {
            path: PathBuf::from("<memory>"),
            tensors,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Removes and returns `name`, checking its shape; `None` in `shape`
    /// accepts any size in that dimension.
    pub fn take(&mut self, name: &str, shape: &[Option<usize>]) -> Result<RawTensor> {
        let Some(tensor) = self.tensors.remove(name) else {
            return Err(self.error(format!("tensor {name} is missing")));
        };
        let fits = tensor.shape.len() == shape.len()
            && tensor
                .shape
                .iter()
                .zip(shape)
                .all(|(&have, want)| want.is_none_or(|w| w == have));
        if !fits {
            return Err(self.error(format!(
                "tensor {name} has shape {:?}, expected {}",
                tensor.shape,
                describe(shape)
            )));
        }
        Ok(tensor)
    }

    /// Names not taken yet, sorted.
    pub fn remaining(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// A configuration error about this file.
    pub fn error(&self, message: String) -> ModelError {
        ModelError::Config {
            path: self.path.clone(),
            message,
        }
    }
}

/// Writes the floating-point tensors of the weights file `src` (either
/// accepted format) to `dst` as safetensors, with the same names, in f32:
/// a hub-style `model.safetensors` for tools that cannot read pickles.
pub fn export_safetensors(src: &Path, dst: &Path) -> Result<()> {
    let weights = Weights::read(src)?;
    let tensors = weights
        .tensors
        .into_iter()
        .map(|(name, t)| {
            candle_core::Tensor::from_vec(t.data, t.shape, &Device::Cpu).map(|t| (name, t))
        })
        .collect::<candle_core::Result<HashMap<_, _>>>()
        .map_err(crate::runtime_error)?;
    candle_core::safetensors::save(&tensors, dst)
        .map_err(|err| ModelError::Runtime(format!("cannot write {}: {err}", dst.display())))
}

fn describe(shape: &[Option<usize>]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or_else(|| "_".to_string(), |d| d.to_string()))
        .collect();
    format!("[{}]", dims.join(", "))
}

fn read_safetensors(bytes: &[u8]) -> candle_core::Result<Vec<(String, RawTensor)>> {
    let mut out = Vec::new();
    for (name, tensor) in candle_core::safetensors::load_buffer(bytes, &Device::Cpu)? {
        // Integer tensors are BatchNorm step counters; not weights.
        if !tensor.dtype().is_float() {
            continue;
        }
        let shape = tensor.dims().to_vec();
        let data = tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        out.push((name, RawTensor { shape, data }));
    }
    Ok(out)
}

/// Picks the weights file of `dir`: the one `config.json` names, else
/// `model.safetensors`, else the single `*.pth`/`*.pt` file.
pub(crate) fn locate(dir: &Path, config: &VisionConfig) -> Result<PathBuf> {
    if let Some(name) = &config.weights {
        let path = dir.join(name);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ModelError::MissingFile {
                path,
                what: "weights named in config.json",
            })
        };
    }
    let safetensors = dir.join("model.safetensors");
    if safetensors.is_file() {
        return Ok(safetensors);
    }
    let entries = std::fs::read_dir(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut torch_files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| p.extension().is_some_and(|ext| ext == "pth" || ext == "pt"))
        .collect();
    torch_files.sort();
    match torch_files.len() {
        0 => Err(ModelError::MissingFile {
            path: safetensors,
            what: "EfficientNet weights (model.safetensors or one *.pth file)",
        }),
        1 => Ok(torch_files.remove(0)),
        _ => Err(ModelError::Config {
            path: dir.to_path_buf(),
            message: format!(
                "several weight files ({}); name one as \"weights\" in config.json",
                torch_files
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_checks_shapes_and_tracks_leftovers() {
        let mut map = HashMap::new();
        for name in ["a", "b"] {
            map.insert(
                name.to_string(),
                RawTensor {
                    shape: vec![2, 3],
                    data: vec![0.0; 6],
                },
            );
        }
        let mut w = Weights::from_map(map);
        assert!(w.take("a", &[Some(2), None]).is_ok());
        let err = w.take("b", &[Some(3), Some(2)]).expect_err("wrong shape");
        assert!(err.to_string().contains("expected [3, 2]"), "{err}");
        assert!(w.take("zzz", &[None]).is_err());
        assert!(w.remaining().is_empty());
    }

    #[test]
    fn locate_prefers_config_then_safetensors_then_one_pth() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = VisionConfig::default();
        assert!(matches!(
            locate(dir.path(), &cfg),
            Err(ModelError::MissingFile { .. })
        ));
        std::fs::write(dir.path().join("a.pth"), b"x").expect("write");
        assert!(locate(dir.path(), &cfg)
            .expect("one pth")
            .ends_with("a.pth"));
        std::fs::write(dir.path().join("b.pt"), b"x").expect("write");
        assert!(matches!(
            locate(dir.path(), &cfg),
            Err(ModelError::Config { .. })
        ));
        std::fs::write(dir.path().join("model.safetensors"), b"x").expect("write");
        assert!(locate(dir.path(), &cfg)
            .expect("safetensors")
            .ends_with("model.safetensors"));
        let named = VisionConfig {
            weights: Some("b.pt".into()),
            ..VisionConfig::default()
        };
        assert!(locate(dir.path(), &named).expect("named").ends_with("b.pt"));
    }

    #[test]
    fn garbage_is_a_config_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, b"definitely not weights").expect("write");
        let err = Weights::read(&path).expect_err("garbage");
        assert!(matches!(err, ModelError::Config { .. }), "{err}");
    }
}
