//! Errors for generation, patching and file access.
//!
//! Lint never returns these: every problem it finds, including unreadable
//! files, becomes a [`crate::Diagnostic`] so that one run reports everything.

use std::path::PathBuf;

/// Why wharf refused to generate, patch or read something.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid upstream registry {input:?}: {reason}")]
    InvalidUpstream { input: String, reason: String },

    #[error("invalid mirror URL {input:?}: {reason}")]
    InvalidMirror { input: String, reason: String },

    #[error("invalid containerd version {input:?}: {reason}")]
    InvalidContainerdVersion { input: String, reason: String },

    #[error("unsupported containerd config version {0}: wharf writes versions 2, 3 and 4")]
    UnsupportedConfigVersion(i64),

    #[error("invalid config_path {input:?}: {reason}")]
    InvalidConfigPath { input: String, reason: String },

    #[error("invalid option: {0}")]
    InvalidOption(String),

    #[error("{path}:{line}:{column}: the file is not valid TOML: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("refusing to patch: {reason}\n  fix: {fix}")]
    PatchRefused { reason: String, fix: String },

    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn patch_refused(reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::PatchRefused {
            reason: reason.into(),
            fix: fix.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
