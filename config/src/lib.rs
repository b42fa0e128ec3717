//! Typed settings for mnemos, loaded in layers: built-in defaults, then one
//! TOML file, then `MNEMOS__SECTION__KEY` environment variables, then
//! command-line flags (applied by the binary through [`Settings::set`]).
//!
//! Every layer is merged as a TOML tree *before* deserialising, so one
//! unknown key or wrong type anywhere is reported with its dotted path
//! (`dense.max_batch: invalid type ...`) instead of being silently ignored.

mod admission;
mod hypencoder;
mod lm;
mod settings;
mod tiers;
mod visual;

pub use admission::{AdmissionSettings, ClassLimits};
pub use hypencoder::{HypencoderSettings, HYPENCODER_SEARCHES};
pub use lm::LmSettings;
pub use settings::*;
pub use tiers::TierSettings;
pub use visual::{VisualSettings, VISUAL_AGGREGATIONS};

use std::path::Path;

/// Errors while loading or validating settings. Each message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: String, message: String },
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: String, message: String },
}

pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Prefix of environment overrides: `MNEMOS__DENSE__MAX_BATCH=16` sets
/// `dense.max_batch`.
pub const ENV_PREFIX: &str = "MNEMOS__";

/// Environment variable holding the admin token (kept out of files).
pub const ADMIN_TOKEN_ENV: &str = "MNEMOS_ADMIN_TOKEN";

/// Layered loader. Collects overrides, then [`Loader::build`] validates once.
#[derive(Debug, Default)]
pub struct Loader {
    tree: toml::Table,
}

impl Loader {
    /// Starts from the built-in defaults.
    pub fn new() -> Self {
        let tree = toml::Table::try_from(Settings::default()).unwrap_or_default();
        Self { tree }
    }

    /// Merges a TOML file over what is there.
    pub fn file(mut self, path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.display().to_string(),
                message: e.message().to_string(),
            })?;
        merge(&mut self.tree, table);
        Ok(self)
    }

    /// Applies `MNEMOS__A__B=value` variables from `vars` (pass
    /// `std::env::vars()`). Values parse as TOML literals (numbers, booleans,
    /// arrays); anything that does not parse is taken as a string.
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        for (name, value) in vars {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = path.to_ascii_lowercase().replace("__", ".");
            self.set_raw(&key, parse_literal(&value))?;
        }
        Ok(self)
    }

    /// Sets one dotted key from a string, as a flag would.
    pub fn set(mut self, key: &str, value: &str) -> Result<Self> {
        self.set_raw(key, parse_literal(value))?;
        Ok(self)
    }

    fn set_raw(&mut self, key: &str, value: toml::Value) -> Result<()> {
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::Invalid {
                key: key.to_string(),
                message: "empty key segment".into(),
            });
        }
        let mut table = &mut self.tree;
        for part in &parts[..parts.len() - 1] {
            let entry = table
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: key.to_string(),
                        message: format!("`{part}` is not a section"),
                    })
                }
            };
        }
        table.insert(parts[parts.len() - 1].to_string(), value);
        Ok(())
    }

    /// Deserialises and validates the merged settings.
    pub fn build(self) -> Result<Settings> {
        let settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(self.tree))
            .map_err(|e| ConfigError::Invalid {
                key: e.path().to_string(),
                message: e.inner().message().to_string(),
            })?;
        settings.validate()?;
        Ok(settings)
    }
}

fn parse_literal(value: &str) -> toml::Value {
    format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()))
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}
