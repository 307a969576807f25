use std::path::PathBuf;

/// What went wrong with a bundle; each says which file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {message}")]
    Io {
        path: PathBuf,
        message: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the bundle is truncated: {detail}")]
    Truncated { path: PathBuf, detail: String },
    #[error("{path}: the bundle is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path}: bundle format version {found} is newer than this wharf reads (up to {supported}); upgrade wharf")]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: not an image archive: {detail}")]
    NotAnArchive { path: PathBuf, detail: String },
    #[error("{path}: blob {digest} is missing: {detail}")]
    MissingBlob {
        path: PathBuf,
        digest: wharf_oci::Digest,
        detail: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Source(String),
}

impl BundleError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        message: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        BundleError::Io {
            path: path.into(),
            message: message.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, BundleError>;
