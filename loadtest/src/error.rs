//! The one error type of the harness library. Every variant carries enough
//! context (a path, a line, a flag) for the message alone to say what to fix,
//! because the binary prints it and exits without a backtrace.

use std::path::PathBuf;

/// Errors of the load-test harness.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A scenario file is malformed or inconsistent.
    #[error("scenario {path}: {message}")]
    Scenario { path: PathBuf, message: String },
    /// A data file (queries, corpus) could not be read or parsed.
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    /// A command-line value is out of range or inconsistent with another.
    #[error("{0}")]
    Config(String),
    /// The target could not be reached before the run started.
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },
    /// Writing a report or plot failed.
    #[error("cannot write {path}: {message}")]
    Output { path: PathBuf, message: String },
}

/// Result alias of the harness library.
pub type Result<T, E = LoadError> = std::result::Result<T, E>;

impl LoadError {
    pub(crate) fn scenario(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Scenario {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn data(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Self::Data {
            path: path.into(),
            message: message.to_string(),
        }
    }

    pub(crate) fn output(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Self::Output {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
