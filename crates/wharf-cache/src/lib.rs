//! A pull-through cache: `wharf serve` answering for upstream registries.
//!
//! [`Cache`] implements [`wharf_registry::Upstream`]. On a miss it fetches
//! from the upstream with [`wharf_client::Client`] (authentication, retries,
//! redirects followed here and never handed to the requester), streams the
//! bytes into a storage upload, which requesters read while it grows, and
//! commits them to the shared [`wharf_storage::Store`] only after the digest
//! matched.
//!
//! Architecture invariants:
//! - Nothing unverified is committed: blobs go through
//!   `Store::put_blob_watched`, which hashes every byte as it writes it and
//!   commits only when the digest matched; manifests are verified by the
//!   client and by `Store::manifest_put`.
//! - A redirect never reaches a requester: the client follows it.
//! - A cached repository serves only what the upstream served for it: its
//!   own links, or a fetch made for it now. A blob stored for another
//!   repository is neither served, linked nor revealed.
//! - One upstream fetch per repository and missing blob: concurrent
//!   requests for the same blob of the same repository follow the one
//!   download in flight ([`downloads`]).
//! - Memory does not grow with blob size: the download runs ahead into a
//!   storage upload and every requester reads from it at its own pace.

mod cache;
pub mod config;
mod downloads;
mod error;

pub use cache::Cache;
pub use config::{CacheConfig, Endpoint, UpstreamConfig};
pub use error::CacheError;
