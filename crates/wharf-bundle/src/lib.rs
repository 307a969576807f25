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
//! - [`save`] fills a bundle from registries;
//! - [`BundleSource`] is a verified bundle as a `wharf_transfer::Source`,
//!   so that `wharf load --to` pushes with `wharf_transfer`'s copy logic,
//!   reading the tar itself; [`LayoutSource`] does the same for an OCI
//!   layout directory, and [`Transport`] reads the `oci:`, `oci-archive:`
//!   and `docker-archive:` sources `wharf copy` takes;
//! - [`BundleServer`] serves a verified bundle as a read-only registry on
//!   loopback, for `skopeo` (`wharf load --containers-storage`).

mod error;
pub mod format;
mod layout;
mod reader;
mod save;
mod server;
mod source;
mod transport;
mod writer;

pub use error::{BundleError, Result};
pub use layout::{write_layout, Layout, LayoutSource};
pub use reader::{ArchiveEntry, Bundle, BundleImage, Format, Location};
pub use save::{blobs_of, save, LocalImage, SaveOptions, SaveOutcome};
pub use server::BundleServer;
pub use source::BundleSource;
pub use transport::{FileImage, OpenedImage, Transport, TRANSPORTS};
pub use writer::{index_names, BundleWriter, DockerImage, ImageRecord, NameCollision, WriteError};
