//! What the handlers consult when a repository belongs to an upstream
//! registry (a pull-through cache). The registry only knows this trait; the
//! implementation that talks to upstreams lives in `wharf-cache`, so this
//! crate never depends on an HTTP client.

use std::ops::Range;

use async_trait::async_trait;
use wharf_oci::{Digest, RepositoryName, Target};
use wharf_storage::{ByteStream, StoredManifest};

use crate::error::RegistryError;

/// How the registry treats a repository that an upstream covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// Pushes into the repository are accepted (normally refused: the
    /// upstream is the only source of its content).
    pub allow_push: bool,
}

/// A blob the store did not have, as the upstream is delivering it.
pub enum UpstreamBlob {
    /// It reached this repository meanwhile (another request committed
    /// it): serve it from the store.
    Stored,
    /// Bytes on their way. `open(None)` streams the whole blob as it
    /// arrives; `open(Some(range))` streams `range` (end exclusive, within
    /// `size`) once the whole blob is verified. Either stream ends in an
    /// error, short, when the content turns out not to match its digest: the
    /// client sees a broken body, never wrong bytes under the digest.
    Streaming { size: Option<u64>, open: OpenBlob },
}

/// Opens a stream over a blob being downloaded: all of it, or a range.
pub type OpenBlob = Box<dyn FnOnce(Option<Range<u64>>) -> ByteStream + Send>;

/// A source of manifests and blobs that the store does not hold yet.
#[async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// Whether an upstream serves `repo`, and on what terms.
    fn covers(&self, repo: &RepositoryName) -> Option<Coverage>;

    /// The manifest for `target` in `repo`, from the store when it is fresh
    /// enough, else from the upstream (stored before it is returned).
    async fn manifest(
        &self,
        repo: &RepositoryName,
        target: &Target,
    ) -> Result<StoredManifest, RegistryError>;

    /// The size of a blob the repository does not hold, asked upstream
    /// (never answered from another repository's copy in the store).
    async fn blob_size(&self, repo: &RepositoryName, digest: &Digest)
        -> Result<u64, RegistryError>;

    /// A blob the repository does not hold: fetched from the upstream for
    /// this repository (even when another repository's copy is in the store,
    /// which must not be revealed), once however many clients ask at the
    /// same time, streamed to each while it is being stored.
    async fn blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<UpstreamBlob, RegistryError>;
}
