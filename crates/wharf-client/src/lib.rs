//! Talking to OCI registries: the client side of the distribution API.
//!
//! A [`Client`] knows how to reach a registry (HTTPS with the system's roots
//! plus extra CAs and the host's certs.d directories; plain HTTP for
//! loopback and listed insecure hosts until they answer in TLS; a scheme
//! written before the host wins), how to authenticate (Basic, the Docker
//! token protocol, credentials from the usual files and helpers), how to
//! survive a flaky network (retries with backoff honouring `Retry-After`,
//! resumed downloads; no retries where trying again cannot help) and how to
//! check what it receives (digests verified while streaming).
//!
//! Architecture invariants:
//! - Every request goes through one path (`client.rs`): retries wrap
//!   authentication, which wraps redirect following. No operation builds
//!   its own `reqwest` request.
//! - `Authorization` is sent only to the registry's own origin, never to a
//!   redirect target elsewhere.
//! - Nothing that was not verified is handed out as verified: manifests are
//!   checked before they are returned, blob streams end in an error when
//!   the digest does not match.
//! - The library prints nothing; progress goes through [`Reporter`]; secrets
//!   never appear in `Debug` output or error messages.
//! - Retries only repeat what is safe to repeat (see `upload.rs` for blob
//!   uploads); a request whose body is a caller's stream is sent once.

mod auth;
pub mod auth_file;
mod blob;
pub mod challenge;
mod client;
pub mod config;
pub mod credentials;
mod discovery;
pub mod error;
mod manifest;
pub mod progress;
pub mod trust;
mod upload;

pub use auth::{pull_scope, push_scope, CATALOG_SCOPE};
pub use blob::BlobStream;
pub use client::{Client, Ping, MAX_REDIRECTS};
pub use config::{split_scheme, ClientConfig, RetryPolicy, SchemeChoice};
pub use credentials::{Credential, CredentialSources};
pub use discovery::referrers_tag;
pub use error::{ApiError, Context, Error, ErrorKind, Result};
pub use manifest::{Manifest, ManifestInfo};
pub use progress::{NoReporter, RedirectEvent, Reporter, RetryEvent, RetryReason};
pub use upload::{MountOutcome, UploadSession};
