//! The OCI Distribution Spec v1.1 HTTP API over [`wharf_storage::Store`].
//!
//! Architecture invariants:
//! - Routes are data ([`routes::Endpoint`]), parsed before any handler runs;
//!   a handler never sees an unvalidated name, tag or digest.
//! - Handlers hold only a [`Store`]; they never touch files.
//! - Every error leaves as the spec's JSON error body ([`error::RegistryError`]).
//! - Bodies stream in both directions; nothing buffers a blob in memory.
//!   Manifests are read whole but bounded by `max_manifest_bytes`.

pub mod auth;
mod body;
pub mod error;
mod handlers;
pub mod limits;
pub mod metrics;
pub mod routes;
mod server;
pub mod upstream;

use std::sync::Arc;

use wharf_storage::Store;

pub use limits::Limits;
pub use server::{serve, serve_with, ServeOptions};
/// The TLS acceptor type [`ServeOptions::tls`] takes.
pub use tokio_rustls::TlsAcceptor;
pub use upstream::{Coverage, OpenBlob, Upstream, UpstreamBlob};

/// Registry behaviour a deployment can choose.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Largest manifest accepted (the spec asks for at least 4 MiB).
    pub max_manifest_bytes: usize,
    /// Accept indexes whose child manifests are absent.
    pub sparse_indexes: bool,
    /// Allow DELETE of manifests, tags and blobs.
    pub delete_enabled: bool,
    /// Users and access rules; `None` serves everyone everything.
    pub auth: Option<Arc<auth::AuthLayer>>,
    /// Connections, uploads and timeouts.
    pub limits: Limits,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_manifest_bytes: 4 * 1024 * 1024,
            sparse_indexes: false,
            delete_enabled: true,
            auth: None,
            limits: Limits::default(),
        }
    }
}

/// A cheap-to-clone handle: the store plus configuration.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: RegistryConfig,
    metrics: Arc<metrics::Metrics>,
    upstream: Option<Arc<dyn Upstream>>,
    uploads: limits::UploadSlots,
}

impl Registry {
    pub fn new(store: Store, config: RegistryConfig) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                uploads: limits::UploadSlots::new(config.limits.max_uploads),
                store,
                config,
                metrics: Arc::default(),
                upstream: None,
            }),
        }
    }

    /// A registry that fills misses in repositories `upstream` covers from
    /// there (a pull-through cache). `metrics` is shared with the upstream
    /// so its counters appear on `/metrics`.
    pub fn with_upstream(
        store: Store,
        config: RegistryConfig,
        metrics: Arc<metrics::Metrics>,
        upstream: Arc<dyn Upstream>,
    ) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                uploads: limits::UploadSlots::new(config.limits.max_uploads),
                store,
                config,
                metrics,
                upstream: Some(upstream),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    pub(crate) fn uploads(&self) -> &limits::UploadSlots {
        &self.inner.uploads
    }

    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// The upstream covering `repo`, with its terms, if any.
    pub fn upstream_for(
        &self,
        repo: &wharf_oci::RepositoryName,
    ) -> Option<(&dyn Upstream, Coverage)> {
        let upstream = self.inner.upstream.as_deref()?;
        upstream.covers(repo).map(|c| (upstream, c))
    }
}
