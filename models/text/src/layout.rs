//! Reading a model directory in the Hugging Face hub layout.
//!
//! A sentence-transformers export is a BERT checkpoint plus small JSON files
//! describing the modules stacked on top of it:
//!
//! ```text
//! config.json            BERT hyper-parameters (required)
//! model.safetensors      weights (required)
//! tokenizer.json         tokenizer (required)
//! modules.json           module list: Transformer, Pooling, Normalize (optional)
//! 1_Pooling/config.json  pooling mode (optional)
//! ```
//!
//! Everything optional has the default that all-MiniLM-L6-v2 uses (mean
//! pooling, then L2 normalisation), so a bare BERT directory also loads.

use std::path::{Path, PathBuf};

use mnemos_models_core::{ModelError, Result};
use serde::Deserialize;

use crate::bert::BertConfig;
use crate::pooling::Pooling;

/// The files of one model directory and what they say.
#[derive(Debug)]
pub(crate) struct ModelLayout {
    pub config: BertConfig,
    pub weights: PathBuf,
    pub tokenizer: PathBuf,
    pub pooling: Pooling,
    /// Whether `modules.json` lists a Normalize module; `None` without
    /// `modules.json`.
    pub normalize: Option<bool>,
}

impl ModelLayout {
    /// Finds and parses the files under `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(ModelError::MissingFile {
                path: dir.to_path_buf(),
                what: "model directory",
            });
        }
        let config_path = required(dir, "config.json", "BERT config")?;
        let config: BertConfig = parse_json(&config_path)?;
        config.validate().map_err(|message| ModelError::Config {
            path: config_path.clone(),
            message,
        })?;

        let weights = required(dir, "model.safetensors", "weights in safetensors format")?;
        let tokenizer = required(dir, "tokenizer.json", "tokenizer")?;

        let modules = optional_json::<Vec<ModuleEntry>>(&dir.join("modules.json"))?;
        let pooling_dir = modules
            .as_deref()
            .and_then(|m| m.iter().find(|e| e.kind.ends_with("models.Pooling")))
            .map_or_else(|| "1_Pooling".to_owned(), |e| e.path.clone());
        let pooling_path = dir.join(pooling_dir).join("config.json");
        let pooling = match optional_json::<PoolingConfig>(&pooling_path)? {
            Some(cfg) => cfg.mode(&pooling_path)?,
            None => Pooling::Mean,
        };
        let normalize = modules
            .as_deref()
            .map(|m| m.iter().any(|e| e.kind.ends_with("models.Normalize")));

        Ok(Self {
            config,
            weights,
            tokenizer,
            pooling,
            normalize,
        })
    }
}

/// One entry of sentence-transformers' `modules.json`.
#[derive(Debug, Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

/// sentence-transformers' `1_Pooling/config.json`. Modes we do not
/// implement are read so that a model asking for them is refused rather
/// than silently pooled the wrong way.
#[derive(Debug, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

impl PoolingConfig {
    fn mode(&self, path: &Path) -> Result<Pooling> {
        let unsupported = self.pooling_mode_max_tokens
            || self.pooling_mode_mean_sqrt_len_tokens
            || self.pooling_mode_weightedmean_tokens
            || self.pooling_mode_lasttoken;
        match (
            self.pooling_mode_mean_tokens,
            self.pooling_mode_cls_token,
            unsupported,
        ) {
            (true, false, false) => Ok(Pooling::Mean),
            (false, true, false) => Ok(Pooling::Cls),
            _ => Err(ModelError::Config {
                path: path.to_path_buf(),
                message: "exactly one pooling mode must be set, and only \
                          mean or cls pooling is supported"
                    .to_owned(),
            }),
        }
    }
}

fn required(dir: &Path, name: &str, what: &'static str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::MissingFile { path, what })
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = read(path)?;
    serde_json::from_str(&text).map_err(|err| ModelError::Config {
        path: path.to_path_buf(),
        message: err.to_string(),
    })
}

fn optional_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    if path.is_file() {
        parse_json(path).map(Some)
    } else {
        Ok(None)
    }
}

pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pooling(json: &str) -> Result<Pooling> {
        let cfg: PoolingConfig = serde_json::from_str(json).expect("valid json");
        cfg.mode(Path::new("1_Pooling/config.json"))
    }

    #[test]
    fn pooling_modes() {
        assert_eq!(
            pooling(r#"{"pooling_mode_mean_tokens": true}"#).ok(),
            Some(Pooling::Mean)
        );
        assert_eq!(
            pooling(r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#).ok(),
            Some(Pooling::Cls)
        );
        assert!(pooling(r#"{"pooling_mode_max_tokens": true}"#).is_err());
        assert!(
            pooling(r#"{"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true}"#)
                .is_err()
        );
        assert!(pooling("{}").is_err());
    }

    #[test]
    fn modules_json_names_normalize() {
        let modules: Vec<ModuleEntry> = serde_json::from_str(
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        )
        .expect("valid json");
        assert!(modules.iter().any(|e| e.kind.ends_with("models.Normalize")));
    }

    #[test]
    fn missing_directory_is_an_error() {
        let err = ModelLayout::read(Path::new("/definitely/not/a/model/dir"))
            .expect_err("no such directory");
        assert!(matches!(err, ModelError::MissingFile { .. }), "{err}");
    }
}
