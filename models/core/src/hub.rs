//! Saving a model in the hub layout (`config.json` + `model.safetensors`),
//! shared by the model crates that train their own weights.

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};

use crate::ModelError;

/// File names of a saved model, as in a Hugging Face hub directory.
pub const CONFIG_FILE: &str = "config.json";
/// See [`CONFIG_FILE`].
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Writes `config` (JSON text) and `tensors` as `dtype` into `dir`
/// (created if absent). Each file is written to a temporary name, fsynced
/// and renamed, so a crash never leaves a half-written model behind.
/// `F16`/`BF16` halve the file; `F32` keeps outputs bit-identical.
pub fn save_hub_dir(
    dir: &Path,
    config: &str,
    tensors: Vec<(String, Tensor)>,
    dtype: DType,
) -> Result<(), ModelError> {
    if !matches!(dtype, DType::F16 | DType::BF16 | DType::F32) {
        return Err(ModelError::InvalidInput(format!(
            "weights are saved as f32, f16 or bf16, not {dtype:?}"
        )));
    }
    let io = |path: PathBuf| move |source| ModelError::Io { path, source };
    let runtime = |e: candle_core::Error| ModelError::Runtime(e.to_string());
    std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
    let converted = tensors
        .into_iter()
        .map(|(name, t)| Ok((name, t.detach().to_dtype(dtype)?.contiguous()?)))
        .collect::<candle_core::Result<std::collections::HashMap<_, _>>>()
        .map_err(runtime)?;
    let weights_tmp = dir.join(format!("{WEIGHTS_FILE}.tmp"));
    candle_core::safetensors::save(&converted, &weights_tmp).map_err(runtime)?;
    let config_tmp = dir.join(format!("{CONFIG_FILE}.tmp"));
    std::fs::write(&config_tmp, format!("{config}\n")).map_err(io(config_tmp.clone()))?;
    for (tmp, name) in [(&weights_tmp, WEIGHTS_FILE), (&config_tmp, CONFIG_FILE)] {
        std::fs::File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(tmp.clone()))?;
        std::fs::rename(tmp, dir.join(name)).map_err(io(dir.join(name)))?;
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all(); // best effort: not every platform syncs directories
    }
    Ok(())
}
