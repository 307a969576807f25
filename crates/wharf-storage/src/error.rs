use std::io;

use wharf_oci::Digest;

/// What can go wrong in storage. The HTTP layer maps each variant to the
/// distribution spec's error code.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob {0} is unknown to this repository")]
    BlobUnknown(Digest),
    #[error("upload {0} is unknown")]
    UploadUnknown(String),
    #[error("upload is at offset {current}, a chunk starting at {requested} does not follow")]
    RangeMismatch { current: u64, requested: u64 },
    #[error("content hashes to {actual}, not {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("manifest unknown")]
    ManifestUnknown,
    #[error("repository unknown")]
    NameUnknown,
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest references blobs unknown to this repository: {0:?}")]
    ManifestBlobUnknown(Vec<Digest>),
    #[error("the request body ended early or could not be read: {0}")]
    BodyInterrupted(#[source] io::Error),
    #[error("stored object {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("storage I/O error on {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    pub fn io(context: impl Into<String>, source: io::Error) -> StorageError {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type StorageResult<T> = Result<T, StorageError>;
