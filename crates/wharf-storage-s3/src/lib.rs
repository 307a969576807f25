//! An S3-compatible object store (Ceph RGW, Garage, MinIO, SeaweedFS, a
//! cloud bucket) as a [`wharf_storage::Backend`], built on `object_store`.
//!
//! Architecture invariants:
//! - The bucket holds the same keys as the filesystem layout
//!   ([`wharf_storage::layout`]), under an optional prefix; nothing about a
//!   registry lives anywhere else, so any number of `wharf serve` replicas
//!   on one bucket are one registry.
//! - An upload is a multipart upload plus a small state document
//!   (`uploads/<id>/state`) holding its parts, its size, the bytes of the
//!   unfinished part (`uploads/<id>/tail`) and the exported running hash.
//!   Any replica can continue any upload; no replica keeps anything of it
//!   in memory between requests.
//! - Parts are at least S3's 5 MiB minimum whatever size the client's
//!   `PATCH` chunks have; memory per upload in flight is one part.
//! - A blob appears under `blobs/…` only after its digest was verified:
//!   the multipart upload completes into `uploads/<id>/data`, which is then
//!   copied server-side to the blob key.

mod backend;
pub mod config;
#[cfg(feature = "test-support")]
pub mod garage;
mod upload;

pub use backend::S3Backend;
pub use config::{Credentials, S3Config};

/// Why the bucket cannot be used. Each variant says what to check next.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("invalid S3 storage settings: {0}")]
    Config(String),
    #[error("no S3 credentials: {0}")]
    NoCredentials(String),
    #[error("{what} rejected the credentials (access key {key_id:?}): {source}")]
    Credentials {
        what: String,
        key_id: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{what} does not exist: {source}")]
    NoSuchBucket {
        what: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{what} does not answer: {source}")]
    Unreachable {
        what: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "{what} holds a registry of layout {found}, newer than this wharf understands ({expected})"
    )]
    NewerLayout {
        what: String,
        found: String,
        expected: String,
    },
}

impl S3Error {
    /// The next step for whoever reads the error.
    pub fn hint(&self) -> &'static str {
        match self {
            S3Error::Config(_) => "fix the [storage] section of the configuration file",
            S3Error::NoCredentials(_) => "set access_key_id and secret_access_key in [storage], or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials",
            S3Error::Credentials { .. } => "check the access key and secret, and that the key may read and write the bucket",
            S3Error::NoSuchBucket { .. } => "create the bucket first (wharf never creates buckets), or fix `bucket` in [storage]",
            S3Error::Unreachable { .. } => "check `endpoint` in [storage] and that the S3 server runs; `wharf serve --wait-for-storage` keeps retrying instead of exiting",
            S3Error::NewerLayout { .. } => "run a newer wharf, or point this one at another bucket or prefix",
        }
    }

    /// Worth retrying: the server may come back.
    pub fn is_transient(&self) -> bool {
        matches!(self, S3Error::Unreachable { .. })
    }
}
