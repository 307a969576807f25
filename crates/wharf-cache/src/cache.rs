//! [`Cache`]: which upstream serves which repository, manifests with a tag
//! TTL and stale fallback, blobs through the shared downloads.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use wharf_client::{Client, ClientConfig, CredentialSources};
use wharf_oci::{Digest, Reference, RepositoryName, Tag, Target};
use wharf_registry::error::{Code, RegistryError};
use wharf_registry::metrics::Metrics;
use wharf_registry::{Coverage, Upstream, UpstreamBlob};
use wharf_storage::{layout, Durability, ManifestPutOptions, StorageError, Store, StoredManifest};

use crate::config::CacheConfig;
use crate::downloads::{self, Download, Downloads, Progress};
use crate::error::{is_unreachable, upstream_error, CacheError};

/// A pull-through cache over a [`Store`]; cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    client: Client,
    metrics: Arc<Metrics>,
    upstreams: Vec<Route>,
    downloads: Downloads,
}

/// One upstream as requests are routed to it.
struct Route {
    /// The first component of the repositories it serves (`registry.k8s.io`).
    prefix: String,
    /// The host the client talks to (the endpoint's, when one is set).
    client_host: String,
    tag_ttl: Duration,
    allow_push: bool,
}

/// Where a repository's content comes from upstream.
struct Source<'a> {
    route: &'a Route,
    /// The repository's name at the upstream (without the prefix).
    repository: RepositoryName,
}

impl Source<'_> {
    fn reference(&self, target: Target) -> Reference {
        Reference::new(&self.route.client_host, self.repository.clone(), target)
    }
}

/// When a tag was last confirmed upstream, kept beside the tag.
#[derive(Serialize, Deserialize)]
struct TagRecord {
    digest: String,
    /// Seconds since the Unix epoch.
    confirmed: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn client_config(config: &CacheConfig) -> Result<(ClientConfig, Vec<Route>), CacheError> {
    let mut client = ClientConfig {
        connect_timeout: config.connect_timeout,
        read_timeout: config.read_timeout,
        retry: config.retry.clone(),
        max_manifest_bytes: config.max_manifest_bytes,
        ca_files: config.ca_files.clone(),
        ..ClientConfig::default()
    };
    let mut credentials = CredentialSources::none();
    let mut routes = Vec::new();
    for upstream in &config.upstreams {
        let prefix =
            wharf_oci::name::host_component(&upstream.host).map_err(|e| CacheError::Upstream {
                host: upstream.host.clone(),
                reason: e.to_string(),
            })?;
        if routes.iter().any(|r: &Route| r.prefix == prefix) {
            return Err(CacheError::Upstream {
                host: upstream.host.clone(),
                reason: "listed twice".into(),
            });
        }
        let client_host = match &upstream.endpoint {
            Some(endpoint) => {
                let list = if endpoint.https {
                    &mut client.https_hosts
                } else {
                    &mut client.insecure_hosts
                };
                list.push(endpoint.authority.clone());
                endpoint.authority.clone()
            }
            None => upstream.host.clone(),
        };
        if let Some(credential) = &upstream.credential {
            credentials = credentials.with_explicit(&client_host, credential.clone());
        }
        routes.push(Route {
            prefix,
            client_host,
            tag_ttl: upstream.tag_ttl,
            allow_push: upstream.allow_push,
        });
    }
    client.credentials = credentials;
    Ok((client, routes))
}

impl Cache {
    /// A cache answering for `config.upstreams` over `store`, counting into
    /// `metrics` (share them with the registry so they reach `/metrics`).
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        config: &CacheConfig,
    ) -> Result<Cache, CacheError> {
        let (client_config, upstreams) = client_config(config)?;
        let client = Client::new(client_config)?;
        std::fs::create_dir_all(&config.spool_dir).map_err(|source| CacheError::Spool {
            path: config.spool_dir.display().to_string(),
            source,
        })?;
        Ok(Cache {
            inner: Arc::new(Inner {
                store,
                client,
                metrics,
                upstreams,
                downloads: Downloads::new(config.spool_dir.clone()),
            }),
        })
    }

    fn source(&self, repo: &RepositoryName) -> Option<Source<'_>> {
        let name = repo.as_str();
        self.inner.upstreams.iter().find_map(|route| {
            let rest = name.strip_prefix(&route.prefix)?.strip_prefix('/')?;
            Some(Source {
                route,
                repository: rest.parse().ok()?,
            })
        })
    }

    fn source_or_unknown(&self, repo: &RepositoryName) -> Result<Source<'_>, RegistryError> {
        self.source(repo).ok_or_else(|| {
            RegistryError::new(Code::NameUnknown, format!("no upstream serves {repo}"))
        })
    }

    fn failed(&self, e: &wharf_client::Error, missing: Code) -> RegistryError {
        if e.kind() != wharf_client::ErrorKind::NotFound {
            self.inner.metrics.upstream_error();
            tracing::warn!(error = %e, "upstream request failed");
        }
        upstream_error(e, missing)
    }

    // --- manifests ---------------------------------------------------------

    async fn local_manifest(
        &self,
        repo: &RepositoryName,
        target: &Target,
    ) -> Result<Option<StoredManifest>, RegistryError> {
        match self.inner.store.manifest_get(repo, target).await {
            Ok(m) => Ok(Some(m)),
            Err(StorageError::ManifestUnknown) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn tag_record(&self, repo: &RepositoryName, tag: &Tag) -> Option<TagRecord> {
        let bytes = self
            .inner
            .store
            .backend()
            .get(&layout::cache_tag(repo, tag))
            .await
            .ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    async fn confirm_tag(&self, repo: &RepositoryName, tag: &Tag, digest: &Digest) {
        let record = TagRecord {
            digest: digest.to_string(),
            confirmed: now_secs(),
        };
        let bytes = serde_json::to_vec(&record).expect("tag record serialises");
        // Losing this only means one more HEAD upstream.
        if let Err(e) = self
            .inner
            .store
            .backend()
            .put(
                &layout::cache_tag(repo, tag),
                Bytes::from(bytes),
                Durability::Volatile,
            )
            .await
        {
            tracing::warn!(%repo, %tag, error = %e, "cannot record a tag confirmation");
        }
    }

    /// Fetch `target` upstream and store it byte for byte under `target`.
    async fn fetch_manifest(
        &self,
        repo: &RepositoryName,
        source: &Source<'_>,
        target: &Target,
    ) -> Result<StoredManifest, RegistryError> {
        let reference = source.reference(target.clone());
        let m = self
            .inner
            .client
            .get_manifest(&reference)
            .await
            .map_err(|e| self.failed(&e, Code::ManifestUnknown))?;
        self.inner.metrics.cache_miss();
        let options = ManifestPutOptions {
            sparse_indexes: true,
            extra_tags: Vec::new(),
            lazy_references: true,
        };
        // Stored by digest first when the upstream uses another algorithm
        // than the store's default for tags.
        let put_target = match target {
            Target::Tag(_) if m.digest.algorithm() != wharf_oci::Algorithm::Sha256 => {
                Target::Digest(m.digest.clone())
            }
            _ => target.clone(),
        };
        self.inner
            .store
            .manifest_put(
                repo,
                &put_target,
                m.bytes.clone(),
                Some(&m.media_type),
                &options,
            )
            .await?;
        if let Target::Tag(tag) = target {
            self.confirm_tag(repo, tag, &m.digest).await;
        }
        Ok(StoredManifest {
            digest: m.digest,
            media_type: m.media_type,
            bytes: m.bytes,
        })
    }

    async fn manifest_by_tag(
        &self,
        repo: &RepositoryName,
        source: &Source<'_>,
        tag: &Tag,
    ) -> Result<StoredManifest, RegistryError> {
        let target = Target::Tag(tag.clone());
        let Some(local) = self.local_manifest(repo, &target).await? else {
            return self.fetch_manifest(repo, source, &target).await;
        };
        let fresh = self.tag_record(repo, tag).await.is_some_and(|r| {
            r.digest == local.digest.to_string()
                && now_secs().saturating_sub(r.confirmed) < source.route.tag_ttl.as_secs()
        });
        if fresh {
            self.inner.metrics.cache_hit();
            return Ok(local);
        }
        match self
            .inner
            .client
            .head_manifest(&source.reference(target.clone()))
            .await
        {
            Ok(info) if info.digest == local.digest => {
                self.confirm_tag(repo, tag, &local.digest).await;
                self.inner.metrics.cache_hit();
                Ok(local)
            }
            Ok(_) => self.fetch_manifest(repo, source, &target).await,
            Err(e) if is_unreachable(&e) => {
                self.inner.metrics.upstream_error();
                self.inner.metrics.stale_served();
                tracing::warn!(
                    %repo, %tag, digest = %local.digest, error = %e,
                    "upstream unreachable: serving the cached tag without confirming it"
                );
                Ok(local)
            }
            Err(e) => Err(self.failed(&e, Code::ManifestUnknown)),
        }
    }

    // --- blobs -------------------------------------------------------------

    /// Link a blob another repository brought into the store; its size.
    async fn stored_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let size = self.inner.store.backend().blob_size(digest).await?;
        if size.is_some() {
            self.inner.store.blob_mount(repo, None, digest).await?;
        }
        Ok(size)
    }

    /// Run one download to its end: upstream → spool → verified → store.
    async fn run_download(self, repo: RepositoryName, digest: Digest, download: Arc<Download>) {
        match self.download(&repo, &digest, &download).await {
            Ok(Some((size, spool))) => {
                let body = downloads::spool_stream(spool, size);
                if let Err(e) = self.inner.store.put_blob(&repo, &digest, body).await {
                    tracing::error!(%repo, %digest, error = %e, "cannot commit a verified download");
                }
            }
            Ok(None) => {}
            Err(e) => download.set(Progress::Failed(e)),
        }
        self.inner.downloads.leave(&digest, &download);
    }

    /// The download proper; `None` when the store had the blob after all.
    async fn download(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        download: &Download,
    ) -> Result<Option<(u64, Arc<std::fs::File>)>, RegistryError> {
        // The blob may have been committed between the requester's miss
        // and this download's start.
        if self.stored_blob(repo, digest).await?.is_some() {
            download.set(Progress::Stored);
            return Ok(None);
        }
        let source = self.source_or_unknown(repo)?;
        let stream = self
            .inner
            .client
            .get_blob(&source.route.client_host, &source.repository, digest)
            .await
            .map_err(|e| self.failed(&e, Code::BlobUnknown))?;
        self.inner.metrics.cache_miss();
        let size = stream.size();
        let spool = Arc::new(self.inner.downloads.spool().map_err(|e| {
            tracing::error!(error = %e, "cannot create a spool file");
            RegistryError::new(
                Code::Internal,
                "cannot spool the upstream download; see the registry log",
            )
        })?);
        download.set(Progress::Streaming {
            size,
            written: 0,
            spool: spool.clone(),
        });
        let mut batches = stream.ready_chunks(downloads::WRITE_BATCH);
        let mut written = 0u64;
        while let Some(batch) = batches.next().await {
            let mut chunks = Vec::with_capacity(batch.len());
            let mut failure = None;
            for item in batch {
                match item {
                    Ok(chunk) => chunks.push(chunk),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
            downloads::write_spool(spool.clone(), written, chunks)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot write a spool file");
                    RegistryError::new(
                        Code::Internal,
                        "cannot spool the upstream download; see the registry log",
                    )
                })?;
            written += len;
            self.inner.metrics.upstream_bytes(len);
            download.advance(len);
            if let Some(e) = failure {
                return Err(self.failed(&e, Code::BlobUnknown));
            }
        }
        download.set(Progress::Verified {
            size: written,
            spool: spool.clone(),
        });
        Ok(Some((written, spool)))
    }
}

#[async_trait]
impl Upstream for Cache {
    fn covers(&self, repo: &RepositoryName) -> Option<Coverage> {
        self.source(repo).map(|s| Coverage {
            allow_push: s.route.allow_push,
        })
    }

    async fn manifest(
        &self,
        repo: &RepositoryName,
        target: &Target,
    ) -> Result<StoredManifest, RegistryError> {
        let source = self.source_or_unknown(repo)?;
        match target {
            Target::Tag(tag) => self.manifest_by_tag(repo, &source, tag).await,
            // Content by digest never changes: stored means final.
            Target::Digest(_) => match self.local_manifest(repo, target).await? {
                Some(m) => {
                    self.inner.metrics.cache_hit();
                    Ok(m)
                }
                None => self.fetch_manifest(repo, &source, target).await,
            },
        }
    }

    async fn blob_size(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<u64, RegistryError> {
        if let Some(size) = self.stored_blob(repo, digest).await? {
            return Ok(size);
        }
        let source = self.source_or_unknown(repo)?;
        self.inner
            .client
            .head_blob(&source.route.client_host, &source.repository, digest)
            .await
            .map_err(|e| self.failed(&e, Code::BlobUnknown))?
            .ok_or_else(|| StorageError::BlobUnknown(digest.clone()).into())
    }

    async fn blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<UpstreamBlob, RegistryError> {
        let (download, leader) = self.inner.downloads.join(digest);
        let mut progress = download.subscribe();
        if leader {
            let cache = self.clone();
            // Its own task: the download completes (and fills the cache)
            // even when the requester that started it goes away.
            tokio::spawn(cache.run_download(repo.clone(), digest.clone(), download));
        }
        match downloads::started(&mut progress).await {
            Progress::Failed(e) => Err(e),
            Progress::Stored => Ok(UpstreamBlob::Stored),
            Progress::Streaming { size, .. } => Ok(UpstreamBlob::Streaming {
                size,
                body: downloads::follow(progress),
            }),
            Progress::Verified { size, .. } => Ok(UpstreamBlob::Streaming {
                size: Some(size),
                body: downloads::follow(progress),
            }),
            Progress::Starting => Err(RegistryError::new(
                Code::Internal,
                "the upstream download did not start",
            )),
        }
    }
}
