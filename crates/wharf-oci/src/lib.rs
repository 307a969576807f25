//! The OCI vocabulary wharf speaks: digests, repository names, image references,
//! media types and manifest documents.
//!
//! Architecture invariant: this crate does no I/O and knows nothing of HTTP or
//! storage. Everything here is a pure function of its input, so every other
//! crate can agree on what a valid name or digest is.

pub mod digest;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod platform;
pub mod reference;

pub use digest::{Algorithm, Digest, DigestError, Hasher, HasherState, HasherStateError};
pub use manifest::{Descriptor, ManifestError, ParsedManifest};
pub use name::{NameError, RepositoryName, Tag};
pub use platform::{PlatformError, PlatformSpec};
pub use reference::{Reference, ReferenceError, Target};
