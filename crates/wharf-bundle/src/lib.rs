//! Offline image bundles: `wharf save` and `wharf load`.
//!
//! A bundle is one tar that `ctr images import`, `podman load` and
//! `docker load` all accept: an OCI image layout plus Docker's
//! `manifest.json`, every blob once, names fully qualified, digests as the
//! registries serve them; `wharf-bundle.json`, the last entry, lists every
//! file with its size and sha256 (see [`format`]).
//!
//! - [`BundleWriter`] writes one as a stream;
//! - [`Bundle::open`] verifies one (or a `docker save` / `podman save` /
//!   `skopeo copy … oci-archive:` tarball) in full before anything is read
//!   from it, hashing entries on every core;
//! - [`save`] fills a bundle from registries; [`BundleSource`] serves a
//!   verified bundle as a read-only registry on loopback so that `wharf
//!   load` pushes with `wharf_transfer`'s copy logic, and [`BundleBlobs`]
//!   lets that copy read the blobs from the tar itself.

mod error;
pub mod format;
mod reader;
mod save;
mod source;
mod writer;

pub use error::{BundleError, Result};
pub use reader::{Bundle, BundleImage, Format, Location};
pub use save::{blobs_of, save, LocalImage, SaveOptions, SaveOutcome};
pub use source::{BundleBlobs, BundleSource};
pub use writer::{index_names, BundleWriter, DockerImage, ImageRecord, NameCollision, WriteError};
