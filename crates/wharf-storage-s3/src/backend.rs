//! Documents and blobs as objects. Uploads live in `upload.rs`.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, PutPayload, RetryConfig,
};
use wharf_oci::{Algorithm, Digest, Hasher};
use wharf_storage::{
    layout, AppendOutcome, Backend, ByteStream, Durability, StorageError, StorageResult,
};

use crate::config::{Credentials, S3Config};
use crate::S3Error;

/// Registry storage in a bucket. Cheap to share: every method takes `&self`
/// and keeps no per-request state.
pub struct S3Backend {
    pub(crate) store: Arc<AmazonS3>,
    /// `""` or `"some/prefix/"`.
    prefix: String,
    pub(crate) config: S3Config,
}

/// Turn an `object_store` error into a storage error naming what was done.
pub(crate) fn s3_err(
    context: impl Into<String>,
) -> impl FnOnce(object_store::Error) -> StorageError {
    let context = context.into();
    move |e| StorageError::io(context, io::Error::other(e))
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl S3Backend {
    /// Build the client; nothing is sent yet (see [`S3Backend::check`]).
    pub fn new(config: S3Config) -> Result<S3Backend, S3Error> {
        config.validate()?;
        let credentials =
            Credentials::resolve(config.credentials.as_ref(), config.profile.as_deref())?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(&credentials.secret_access_key)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(config.request_timeout)
                    .with_connect_timeout(Duration::from_secs(5)),
            )
            // Fail within seconds when the store is down: the registry answers
            // clients with an error and `/readyz` says not ready, rather than
            // holding every request for minutes.
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: Duration::from_secs(15),
            });
        if let Some(token) = &credentials.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder
            .build()
            .map_err(|e| S3Error::Config(e.to_string()))?;
        let prefix = match config.prefix.trim_end_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        Ok(S3Backend {
            store: Arc::new(store),
            prefix,
            config,
        })
    }

    /// Build the client and check the bucket: credentials accepted, bucket
    /// present, layout marker written or understood.
    pub async fn open(config: S3Config) -> Result<S3Backend, S3Error> {
        let backend = S3Backend::new(config)?;
        backend.check().await?;
        Ok(backend)
    }

    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// One listing and the layout marker: enough to tell wrong credentials,
    /// a missing bucket and an unreachable server apart.
    pub async fn check(&self) -> Result<(), S3Error> {
        let what = self.config.describe();
        let probe = self.path(layout::VERSION_KEY);
        let listed = self
            .store
            .list(Some(&probe))
            .take(1)
            .try_collect::<Vec<_>>()
            .await;
        if let Err(source) = listed {
            return Err(self.classify(source));
        }
        match self.store.get(&probe).await {
            Ok(found) => {
                let found = found.bytes().await.map_err(|e| self.classify(e))?;
                let found = String::from_utf8_lossy(&found).trim().to_string();
                if found != layout::LAYOUT_VERSION {
                    return Err(S3Error::NewerLayout {
                        what,
                        found,
                        expected: layout::LAYOUT_VERSION.into(),
                    });
                }
                Ok(())
            }
            Err(e) if is_not_found(&e) => self
                .store
                .put(
                    &probe,
                    PutPayload::from_static(layout::LAYOUT_VERSION.as_bytes()),
                )
                .await
                .map(|_| ())
                .map_err(|e| self.classify(e)),
            Err(e) => Err(self.classify(e)),
        }
    }

    fn classify(&self, source: object_store::Error) -> S3Error {
        let what = self.config.describe();
        // Listing errors arrive as `Generic`, with the HTTP status and the
        // S3 error code only in the message.
        let text = source.to_string();
        let denied = text.contains("403 Forbidden")
            || text.contains("401 Unauthorized")
            || text.contains("InvalidAccessKeyId")
            || text.contains("SignatureDoesNotMatch");
        let missing = text.contains("NoSuchBucket") || text.contains("404 Not Found");
        match source {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => S3Error::Credentials {
                what,
                key_id: self.key_id(),
                source,
            },
            object_store::Error::NotFound { .. } => S3Error::NoSuchBucket { what, source },
            source if denied => S3Error::Credentials {
                what,
                key_id: self.key_id(),
                source,
            },
            source if missing => S3Error::NoSuchBucket { what, source },
            source => S3Error::Unreachable { what, source },
        }
    }

    fn key_id(&self) -> String {
        Credentials::resolve(
            self.config.credentials.as_ref(),
            self.config.profile.as_deref(),
        )
        .map(|c| c.access_key_id)
        .unwrap_or_default()
    }

    pub(crate) fn path(&self, key: &str) -> Path {
        Path::from(format!("{}{key}", self.prefix))
    }

    /// The layout key of an object listed from the bucket.
    fn key_of(&self, location: &Path) -> Option<String> {
        location
            .as_ref()
            .strip_prefix(&self.prefix)
            .map(str::to_string)
    }

    pub(crate) async fn get_opt(&self, key: &str) -> StorageResult<Option<Bytes>> {
        match self.store.get(&self.path(key)).await {
            Ok(found) => found
                .bytes()
                .await
                .map(Some)
                .map_err(s3_err(format!("reading {key}"))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(s3_err(format!("reading {key}"))(e)),
        }
    }

    pub(crate) async fn put_bytes(&self, key: &str, value: Bytes) -> StorageResult<()> {
        self.store
            .put(&self.path(key), PutPayload::from_bytes(value))
            .await
            .map(|_| ())
            .map_err(s3_err(format!("writing {key}")))
    }

    /// When the object was last written, as the store reports it (S3 keeps
    /// whole seconds).
    async fn head_modified(&self, key: &str) -> StorageResult<Option<SystemTime>> {
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta.last_modified.into())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(s3_err(format!("checking {key}"))(e)),
        }
    }

    async fn head_size(&self, key: &str) -> StorageResult<Option<u64>> {
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(s3_err(format!("checking {key}"))(e)),
        }
    }

    /// Delete one object, saying whether it was there. S3's DELETE succeeds
    /// either way, so a HEAD comes first; a concurrent delete between the
    /// two only makes both callers report `true`.
    async fn delete_object(&self, key: &str) -> StorageResult<bool> {
        if self.head_size(key).await?.is_none() {
            return Ok(false);
        }
        self.delete_quietly(key).await?;
        Ok(true)
    }

    pub(crate) async fn delete_quietly(&self, key: &str) -> StorageResult<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(s3_err(format!("deleting {key}"))(e)),
        }
    }

    /// Every key under `prefix/`, recursively (one paginated listing).
    pub(crate) async fn list_recursive(
        &self,
        prefix: &str,
    ) -> StorageResult<Vec<object_store::ObjectMeta>> {
        self.store
            .list(Some(&self.path(prefix)))
            .try_collect()
            .await
            .map_err(s3_err(format!("listing {prefix}")))
    }

    /// The key relative to `under/`, for objects listed under it.
    pub(crate) fn relative(&self, meta: &object_store::ObjectMeta, under: &str) -> Option<String> {
        let key = self.key_of(&meta.location)?;
        key.strip_prefix(under)?
            .strip_prefix('/')
            .map(str::to_string)
    }
}

#[async_trait]
impl Backend for S3Backend {
    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        self.get_opt(key).await
    }

    /// A single PUT: S3 makes it visible atomically (readers see the old or
    /// the new document) and durable once acknowledged, so both
    /// durabilities are the same here.
    async fn put(&self, key: &str, value: Bytes, _durability: Durability) -> StorageResult<()> {
        self.put_bytes(key, value).await
    }

    async fn delete(&self, key: &str) -> StorageResult<bool> {
        self.delete_object(key).await
    }

    /// S3 cannot change an object's time in place: the document is written
    /// again with the same bytes (documents are small), which is atomic.
    async fn touch(&self, key: &str) -> StorageResult<bool> {
        match self.get_opt(key).await? {
            Some(bytes) => self.put_bytes(key, bytes).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// A document, or a "directory" (any key under `key/`): the layout uses
    /// both, e.g. `repositories/<name>/_manifests` marks a repository.
    async fn exists(&self, key: &str) -> StorageResult<bool> {
        if self.head_size(key).await?.is_some() {
            return Ok(true);
        }
        let first = self
            .store
            .list(Some(&self.path(key)))
            .take(1)
            .try_collect::<Vec<_>>()
            .await
            .map_err(s3_err(format!("listing {key}")))?;
        Ok(!first.is_empty())
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.path(prefix)))
            .await
            .map_err(s3_err(format!("listing {prefix}")))?;
        let names = listed
            .common_prefixes
            .iter()
            .chain(listed.objects.iter().map(|o| &o.location))
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        Ok(names)
    }

    async fn delete_prefix(&self, prefix: &str) -> StorageResult<()> {
        self.delete_prefix_objects(prefix).await
    }

    async fn modified(&self, key: &str) -> StorageResult<Option<SystemTime>> {
        self.head_modified(key).await
    }

    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        self.head_size(&layout::blob(digest)).await
    }

    async fn blob_modified(&self, digest: &Digest) -> StorageResult<Option<SystemTime>> {
        self.head_modified(&layout::blob(digest)).await
    }

    async fn blob_read(&self, digest: &Digest, range: Range<u64>) -> StorageResult<ByteStream> {
        if range.is_empty() {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let key = layout::blob(digest);
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let found = match self.store.get_opts(&self.path(&key), options).await {
            Ok(found) => found,
            Err(e) if is_not_found(&e) => return Err(StorageError::BlobUnknown(digest.clone())),
            Err(e) => return Err(s3_err(format!("reading {key}"))(e)),
        };
        Ok(Box::pin(found.into_stream().map_err(io::Error::other)))
    }

    /// Always a PUT, even when the blob exists: rewriting the same verified
    /// bytes is atomic and renews the object's modification time, which is
    /// how garbage collection learns the blob is being pushed again.
    async fn blob_put_verified(&self, digest: &Digest, bytes: Bytes) -> StorageResult<()> {
        self.put_bytes(&layout::blob(digest), bytes).await
    }

    async fn blob_delete(&self, digest: &Digest) -> StorageResult<bool> {
        self.delete_object(&layout::blob(digest)).await
    }

    async fn blob_list(&self) -> StorageResult<Vec<Digest>> {
        let mut out = Vec::new();
        for meta in self.list_recursive(layout::BLOBS).await? {
            // blobs/<alg>/<hex[0..2]>/<hex>
            let Some(rel) = self.relative(&meta, layout::BLOBS) else {
                continue;
            };
            let parts: Vec<&str> = rel.split('/').collect();
            if let [alg, _shard, hex] = parts[..] {
                if let Ok(algorithm) = alg.parse::<Algorithm>() {
                    if let Ok(d) = Digest::new(algorithm, hex) {
                        out.push(d);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn blob_quarantine(&self, digest: &Digest) -> StorageResult<()> {
        let (from, to) = (layout::blob(digest), layout::quarantined(digest));
        self.store
            .copy(&self.path(&from), &self.path(&to))
            .await
            .map_err(s3_err(format!("quarantining {from}")))?;
        self.delete_quietly(&from).await
    }

    async fn blob_url(&self, digest: &Digest) -> StorageResult<Option<String>> {
        if !self.config.redirect {
            return Ok(None);
        }
        let key = layout::blob(digest);
        let url = self
            .store
            .signed_url(
                http::Method::GET,
                &self.path(&key),
                self.config.redirect_expiry,
            )
            .await
            .map_err(s3_err(format!("presigning {key}")))?;
        Ok(Some(url.to_string()))
    }

    async fn upload_create(&self, id: &str) -> StorageResult<()> {
        self.create_upload(id).await
    }

    async fn upload_size(&self, id: &str) -> StorageResult<Option<u64>> {
        Ok(self.load_state(id).await?.map(|s| s.size))
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        body: ByteStream,
        hasher: Hasher,
    ) -> StorageResult<AppendOutcome> {
        self.append(id, offset, body, hasher).await
    }

    fn follows_uploads(&self) -> bool {
        false
    }

    /// The parts of an unfinished multipart upload cannot be read back, so
    /// an upload cannot be followed while it grows; the pull-through cache,
    /// which needs that, refuses object storage at start-up.
    async fn upload_reader(&self, id: &str) -> StorageResult<Arc<dyn wharf_storage::UploadReader>> {
        Err(StorageError::io(
            format!("following upload {id}"),
            io::Error::new(
                io::ErrorKind::Unsupported,
                "an S3 multipart upload cannot be read before it is complete",
            ),
        ))
    }

    async fn upload_read(&self, id: &str) -> StorageResult<ByteStream> {
        self.read_back(id).await
    }

    async fn upload_hasher(&self, id: &str) -> StorageResult<Option<(u64, Hasher)>> {
        self.persisted_hasher(id).await
    }

    async fn upload_commit(&self, id: &str, digest: &Digest) -> StorageResult<()> {
        self.commit(id, digest).await
    }

    async fn upload_delete(&self, id: &str) -> StorageResult<bool> {
        self.remove_upload(id).await
    }

    async fn upload_list(&self) -> StorageResult<Vec<(String, u64)>> {
        self.list_uploads().await
    }
}
