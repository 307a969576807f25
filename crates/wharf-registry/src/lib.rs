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
    /// The names this registry is known by (`host:port`, or a host at any
    /// port). A containerd mirror request with `?ns=` one of them asks for
    /// the registry's own images, which live at their plain path.
    pub names: Vec<String>,
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
            names: Vec::new(),
            limits: Limits::default(),
        }
    }
}

impl RegistryConfig {
    /// Whether `host` (a `?ns=` value) is this registry under one of its names.
    pub fn is_own_name(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let bare = match host.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host.as_str(),
        };
        self.names.iter().any(|name| {
            let name = name.to_ascii_lowercase();
            name == host || name == bare
        })
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

#[cfg(test)]
mod own_name_tests {
    use super::RegistryConfig;

    #[test]
    fn ns_of_an_own_name_is_no_namespace() {
        let config = RegistryConfig {
            names: vec!["registry.home.arpa".into(), "10.0.0.5:5000".into()],
            ..RegistryConfig::default()
        };
        assert!(config.is_own_name("registry.home.arpa:5000"));
        assert!(config.is_own_name("Registry.Home.Arpa"));
        assert!(config.is_own_name("10.0.0.5:5000"));
        assert!(!config.is_own_name("10.0.0.5:5001"));
        assert!(!config.is_own_name("registry.k8s.io"));
        assert!(!RegistryConfig::default().is_own_name("registry.home.arpa:5000"));
    }
}
