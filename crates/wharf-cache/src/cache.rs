//! [`Cache`]: which upstream serves which repository, manifests with a tag
//! TTL and stale fallback, blobs through the shared downloads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use wharf_client::{Client, ClientConfig, CredentialSources};
use wharf_oci::{Digest, Reference, RepositoryName, Tag, Target};
use wharf_registry::error::{Code, RegistryError};
use wharf_registry::metrics::Metrics;
use wharf_registry::{Coverage, Upstream, UpstreamBlob};
use wharf_storage::{
    layout, ByteStream, Durability, ManifestPutOptions, StorageError, Store, StoredManifest,
};

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
    manifest_flights: Mutex<HashMap<(RepositoryName, Target), ManifestFlight>>,
}

/// An upstream consultation for one manifest, awaited by every requester.
type ManifestFlight = Shared<BoxFuture<'static, Result<StoredManifest, RegistryError>>>;

/// Takes a finished consultation out of the table when dropped.
struct LeaveFlights<'a>(&'a Cache, &'a (RepositoryName, Target));

impl Drop for LeaveFlights<'_> {
    fn drop(&mut self) {
        // A poisoned lock only means another flight panicked; the table is
        // still sound.
        let mut flights = self
            .0
            .inner
            .manifest_flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        flights.remove(self.1);
    }
}

/// A manifest in the store, as the cache sees it.
enum Stored {
    /// Servable without asking the upstream: any manifest by digest, a tag
    /// confirmed within its TTL.
    Fresh(StoredManifest),
    /// A tag whose confirmation is older than its TTL.
    Unconfirmed(StoredManifest),
    Absent,
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
                // The scheme is the one written: no probing for TLS, so the
                // first request needs no ping before it.
                let list = if endpoint.https {
                    &mut client.https_hosts
                } else {
                    &mut client.http_hosts
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
        Ok(Cache {
            inner: Arc::new(Inner {
                store,
                client,
                metrics,
                upstreams,
                downloads: Downloads::default(),
                manifest_flights: Mutex::default(),
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

    /// A manifest served from the cache: record the pull, so retention's
    /// `max_age` counts from the last pull and images in use stay.
    async fn hit(&self, repo: &RepositoryName, m: StoredManifest) -> StoredManifest {
        self.inner.metrics.cache_hit();
        self.used(repo, m).await
    }

    async fn used(&self, repo: &RepositoryName, m: StoredManifest) -> StoredManifest {
        if let Err(e) = self.inner.store.manifest_used(repo, &m.digest).await {
            // Losing this only lets the image age out sooner.
            tracing::warn!(%repo, digest = %m.digest, error = %e, "cannot record a pull");
        }
        m
    }

    /// What the store holds for `target`, and whether it may be served
    /// without asking the upstream.
    async fn stored(
        &self,
        repo: &RepositoryName,
        source: &Source<'_>,
        target: &Target,
    ) -> Result<Stored, RegistryError> {
        let Some(local) = self.local_manifest(repo, target).await? else {
            return Ok(Stored::Absent);
        };
        let Target::Tag(tag) = target else {
            // Content by digest never changes: stored means final.
            return Ok(Stored::Fresh(local));
        };
        let fresh = self.tag_record(repo, tag).await.is_some_and(|r| {
            r.digest == local.digest.to_string()
                && now_secs().saturating_sub(r.confirmed) < source.route.tag_ttl.as_secs()
        });
        Ok(if fresh {
            Stored::Fresh(local)
        } else {
            Stored::Unconfirmed(local)
        })
    }

    /// Ask the upstream for `target` once for every requester waiting on
    /// it: twenty nodes pulling a new tag at once cost one manifest GET
    /// upstream, as their blobs cost one download each.
    async fn manifest_coalesced(
        &self,
        repo: &RepositoryName,
        target: &Target,
    ) -> Result<StoredManifest, RegistryError> {
        let key = (repo.clone(), target.clone());
        let flight = {
            let mut flights = self.inner.manifest_flights.lock().expect("flights lock");
            if flights.contains_key(&key) {
                self.inner.metrics.upstream_joined();
            }
            flights
                .entry(key.clone())
                .or_insert_with(|| {
                    let cache = self.clone();
                    // A task of its own: a requester that hangs up does not
                    // leave the others (or the next one) a half-run request.
                    let task = tokio::spawn(async move {
                        // Later requests find the manifest stored (or ask
                        // again), however this task ends.
                        let _leave = LeaveFlights(&cache, &key);
                        cache.manifest_from_upstream(&key.0, &key.1).await
                    });
                    task.map(|joined| {
                        joined.unwrap_or_else(|e| {
                            Err(RegistryError::new(
                                Code::Internal,
                                format!("the upstream request stopped: {e}"),
                            ))
                        })
                    })
                    .boxed()
                    .shared()
                })
                .clone()
        };
        flight.await
    }

    /// One consultation of the upstream for `target`: the stored copy when
    /// a request that just finished made it servable, else a fetch, or for
    /// a stored tag past its TTL a HEAD to confirm it.
    async fn manifest_from_upstream(
        &self,
        repo: &RepositoryName,
        target: &Target,
    ) -> Result<StoredManifest, RegistryError> {
        let source = self.source_or_unknown(repo)?;
        match (self.stored(repo, &source, target).await?, target) {
            (Stored::Fresh(m), _) => Ok(self.hit(repo, m).await),
            (Stored::Unconfirmed(local), Target::Tag(tag)) => {
                self.confirm_or_fetch(repo, &source, tag, local).await
            }
            _ => self.fetch_manifest(repo, &source, target).await,
        }
    }

    /// The stored copy of `tag` if the upstream still names it, else the
    /// upstream's; the stored copy, unconfirmed, while the upstream cannot
    /// be reached.
    async fn confirm_or_fetch(
        &self,
        repo: &RepositoryName,
        source: &Source<'_>,
        tag: &Tag,
        local: StoredManifest,
    ) -> Result<StoredManifest, RegistryError> {
        let target = Target::Tag(tag.clone());
        match self
            .inner
            .client
            .head_manifest(&source.reference(target.clone()))
            .await
        {
            Ok(info) if info.digest == local.digest => {
                self.confirm_tag(repo, tag, &local.digest).await;
                Ok(self.hit(repo, local).await)
            }
            Ok(_) => self.fetch_manifest(repo, source, &target).await,
            Err(e) if is_unreachable(&e) => {
                self.inner.metrics.upstream_error();
                self.inner.metrics.stale_served();
                tracing::warn!(
                    %repo, %tag, digest = %local.digest, error = %e,
                    "upstream unreachable: serving the cached tag without confirming it"
                );
                Ok(self.used(repo, local).await)
            }
            Err(e) => Err(self.failed(&e, Code::ManifestUnknown)),
        }
    }

    // --- blobs -------------------------------------------------------------

    /// The size of `digest` when `repo` itself holds it: its own link,
    /// written by a push (where the upstream allows pushes) or by a verified
    /// fetch from the upstream for this very repository. The same bytes
    /// stored for another repository do not count: serving them here would
    /// let anyone who may pull from the upstream read (or, by HEAD, detect)
    /// any blob in the store by its digest.
    async fn held_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        Ok(self.inner.store.blob_size(repo, digest).await?)
    }

    /// Run one download to its end: upstream → storage upload (read by the
    /// requesters as it grows) → verified → committed.
    async fn run_download(self, repo: RepositoryName, digest: Digest, download: Arc<Download>) {
        if let Err(e) = self.download(&repo, &digest, &download).await {
            download.set(Progress::Failed(e));
        }
        self.inner.downloads.leave(&repo, &digest, &download);
    }

    /// The download proper.
    async fn download(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        download: &Arc<Download>,
    ) -> Result<(), RegistryError> {
        // The blob may have been committed to this repository between the
        // requester's miss and this download's start.
        if self.held_blob(repo, digest).await?.is_some() {
            download.set(Progress::Stored);
            return Ok(());
        }
        let source = self.source_or_unknown(repo)?;
        let stream = self
            .inner
            .client
            .get_blob_unverified(&source.route.client_host, &source.repository, digest)
            .await
            .map_err(|e| self.failed(&e, Code::BlobUnknown))?;
        self.inner.metrics.cache_miss();
        let publisher = downloads::Publisher::new(download.clone(), stream.size());
        let (body, upstream_failure) = self.counted(stream);
        let body = publisher.tee(body);
        let result = self
            .inner
            .store
            .put_blob_watched(repo, digest, body, &publisher)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(StorageError::BodyInterrupted(_)) => {
                let e = upstream_failure.lock().expect("failure lock").take();
                Err(match e {
                    Some(e) => self.failed(&e, Code::BlobUnknown),
                    None => self.corrupt(digest, "the upstream body broke off"),
                })
            }
            Err(StorageError::DigestMismatch { actual, .. }) => Err(self.corrupt(
                digest,
                &format!("the upstream sent content hashing to {actual}"),
            )),
            Err(e) => {
                tracing::error!(%repo, %digest, error = %e, "cannot store an upstream download");
                Err(e.into())
            }
        }
    }

    /// The upstream's body as storage takes it, counted into the metrics;
    /// an upstream failure is kept aside to be told to the requesters.
    fn counted(
        &self,
        stream: wharf_client::BlobStream,
    ) -> (ByteStream, Arc<Mutex<Option<wharf_client::Error>>>) {
        let failure = Arc::new(Mutex::new(None));
        let metrics = self.inner.metrics.clone();
        let keep = failure.clone();
        let body = stream.map(move |item| match item {
            Ok(chunk) => {
                metrics.upstream_bytes(chunk.len() as u64);
                Ok(chunk)
            }
            Err(e) => {
                let message = e.to_string();
                *keep.lock().expect("failure lock") = Some(e);
                Err(std::io::Error::other(message))
            }
        });
        (Box::pin(body), failure)
    }

    /// The upstream sent something that is not the blob: nothing is kept.
    fn corrupt(&self, digest: &Digest, reason: &str) -> RegistryError {
        self.inner.metrics.upstream_error();
        tracing::warn!(%digest, reason, "upstream blob rejected");
        RegistryError::new(
            Code::BlobUnknown,
            format!("upstream: {reason}; nothing was stored"),
        )
        .with_status(http::StatusCode::BAD_GATEWAY)
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
        match self.stored(repo, &source, target).await? {
            Stored::Fresh(m) => Ok(self.hit(repo, m).await),
            Stored::Unconfirmed(_) | Stored::Absent => self.manifest_coalesced(repo, target).await,
        }
    }

    async fn blob_size(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<u64, RegistryError> {
        if let Some(size) = self.held_blob(repo, digest).await? {
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
        let (download, leader) = self.inner.downloads.join(repo, digest);
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
                open: Box::new(move |range| downloads::follow(progress, range)),
            }),
            Progress::Verified { size, .. } => Ok(UpstreamBlob::Streaming {
                size: Some(size),
                open: Box::new(move |range| downloads::follow(progress, range)),
            }),
            Progress::Starting => Err(RegistryError::new(
                Code::Internal,
                "the upstream download did not start",
            )),
        }
    }
}
