//! Blobs the caller can read itself: `wharf load` copies from a bundle that
//! it verified in full before the run, so its blobs are read straight from
//! the file instead of through the source registry (which would hash them a
//! second time and relay every byte over loopback HTTP).

use bytes::Bytes;
use futures_util::stream::BoxStream;
use wharf_oci::Digest;

/// A blob's bytes, in order.
pub type BlobBody = BoxStream<'static, std::io::Result<Bytes>>;

/// Blobs held outside the source registry, already checked against their
/// digests. The destination checks every upload's digest too, so bytes that
/// changed after that check are still refused there.
pub trait LocalBlobs: Send + Sync {
    /// The blob's bytes, or `None` to fetch it from the source registry.
    fn open(&self, digest: &Digest) -> Option<BlobBody>;
}
