//! Blob downloads that verify while streaming and resume after a broken
//! connection.
//!
//! [`BlobStream`] hashes every byte it yields. If the connection breaks
//! part-way, it asks again with `Range: bytes=<offset>-` (through the whole
//! auth/redirect/retry path, so an expired CDN URL is simply fetched anew)
//! and carries on hashing from where it stopped. Only after the last byte
//! does it compare the digest; a mismatch is the stream's final item, an
//! error, so a consumer writing to disk must not commit before the end.
//! Memory use is one chunk, whatever the blob's size.

use std::ops::Range;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Fuse, Stream, StreamExt};
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use http::{Method, StatusCode};
use wharf_oci::{Digest, Hasher, RepositoryName};

use crate::auth::pull_scope;
use crate::client::{expect_status, Call, Client};
use crate::error::{Context, Error, ErrorKind, Result};

/// A verified blob download. Yields the blob's bytes in order; the last item
/// is an error if the content does not hash to the digest. Once ended it
/// keeps answering `None` (an HTTP/2 upload polls its body past the end).
pub struct BlobStream {
    size: Option<u64>,
    inner: Fuse<BoxStream<'static, Result<Bytes>>>,
}

impl BlobStream {
    /// The blob's size, as the registry announced it.
    pub fn size(&self) -> Option<u64> {
        self.size
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl futures_util::stream::FusedStream for BlobStream {
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

type Body = BoxStream<'static, reqwest::Result<Bytes>>;

/// The state of one download between chunks.
struct Download {
    client: Client,
    host: String,
    repo: RepositoryName,
    digest: Digest,
    ctx: Context,
    body: Body,
    /// `None` when the consumer hashes the bytes itself.
    hasher: Option<Hasher>,
    offset: u64,
    size: Option<u64>,
    /// Bytes still to drop because a server ignored our `Range`.
    skip: u64,
    resumes_left: u32,
    done: bool,
}

fn blob_ctx(
    operation: &'static str,
    host: &str,
    repo: &RepositoryName,
    digest: &Digest,
) -> Context {
    Context::new(operation, host)
        .repository(repo)
        .tag_or_digest(digest)
}

/// Start of a `Content-Range: bytes <start>-<end>/<size>`.
fn content_range_start(response: &reqwest::Response) -> Option<u64> {
    let v = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = v.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

impl Download {
    async fn next_item(&mut self) -> Option<Result<Bytes>> {
        loop {
            if self.done {
                return None;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    if let Some(item) = self.accept(chunk) {
                        return Some(item);
                    }
                }
                Some(Err(e)) => {
                    let err = Error::transport(&self.ctx, e);
                    if let Err(e) = self.resume(err).await {
                        return self.fail(e);
                    }
                }
                None => {
                    if self.size.is_some_and(|s| self.offset < s) {
                        let err = Error::new(
                            ErrorKind::Network,
                            &self.ctx,
                            format!("the connection ended after {} bytes", self.offset),
                        );
                        if let Err(e) = self.resume(err).await {
                            return self.fail(e);
                        }
                        continue;
                    }
                    self.done = true;
                    return self
                        .verify()
                        .map(|()| None)
                        .unwrap_or_else(|e| Some(Err(e)));
                }
            }
        }
    }

    /// Hash and count a chunk; `None` when all of it was skipped.
    fn accept(&mut self, mut chunk: Bytes) -> Option<Result<Bytes>> {
        if self.skip > 0 {
            let drop = self.skip.min(chunk.len() as u64);
            self.skip -= drop;
            chunk = chunk.slice(drop as usize..);
        }
        if chunk.is_empty() {
            return None;
        }
        let end = self.offset + chunk.len() as u64;
        if self.size.is_some_and(|s| end > s) {
            let size = self.size.unwrap_or(0);
            return self.fail(Error::new(
                ErrorKind::DigestMismatch,
                &self.ctx,
                format!("the registry sent more than the announced {size} bytes"),
            ));
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&chunk);
        }
        self.offset = end;
        self.client
            .reporter()
            .blob_progress(&self.digest, chunk.len() as u64);
        Some(Ok(chunk))
    }

    fn fail(&mut self, e: Error) -> Option<Result<Bytes>> {
        self.done = true;
        Some(Err(e))
    }

    fn verify(&mut self) -> Result<()> {
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        let actual = hasher.finish();
        if actual != self.digest {
            return Err(Error::digest_mismatch(
                &self.ctx,
                &self.digest.to_string(),
                &actual.to_string(),
            ));
        }
        self.client.reporter().blob_finished(&self.digest);
        Ok(())
    }

    /// Continue from `offset` after `cause` broke the transfer.
    async fn resume(&mut self, cause: Error) -> Result<()> {
        if self.resumes_left == 0 || cause.kind() != ErrorKind::Network {
            return Err(cause);
        }
        self.resumes_left -= 1;
        tracing::debug!(digest = %self.digest, offset = self.offset, "resuming a blob download");
        self.client
            .reporter()
            .blob_resumed(&self.digest, self.offset);
        let response = self
            .client
            .blob_request(
                &self.host,
                &self.repo,
                &self.digest,
                Some(self.offset),
                &self.ctx,
            )
            .await?;
        let response = expect_status(
            response,
            &[StatusCode::OK, StatusCode::PARTIAL_CONTENT],
            &self.ctx,
        )
        .await?;
        self.skip = if response.status() == StatusCode::PARTIAL_CONTENT {
            match content_range_start(&response) {
                Some(start) if start == self.offset => 0,
                _ => {
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        &self.ctx,
                        format!(
                            "asked to resume at byte {}, the registry answered another range",
                            self.offset
                        ),
                    ))
                }
            }
        } else {
            // The server ignored Range and sends everything again.
            self.offset
        };
        self.body = response.bytes_stream().boxed();
        Ok(())
    }
}

impl Client {
    /// GET a blob, from `from` onwards when given.
    async fn blob_request(
        &self,
        host: &str,
        repo: &RepositoryName,
        digest: &Digest,
        from: Option<u64>,
        ctx: &Context,
    ) -> Result<reqwest::Response> {
        let url = self.url(host, &format!("{repo}/blobs/{digest}"), ctx)?;
        let mut call = Call::new(host, Method::GET, url, ctx).scope(pull_scope(repo.as_str()));
        if let Some(start) = from.filter(|s| *s > 0) {
            call = call.header(RANGE, &format!("bytes={start}-"));
        }
        self.execute(call).await
    }

    /// Does the repository have this blob? Its size if so.
    pub async fn head_blob(
        &self,
        host: &str,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let ctx = blob_ctx("head blob", host, repo, digest);
        let url = self.url(host, &format!("{repo}/blobs/{digest}"), &ctx)?;
        let call = Call::new(host, Method::HEAD, url, &ctx).scope(pull_scope(repo.as_str()));
        let response = self.execute(call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = expect_status(response, &[StatusCode::OK], &ctx).await?;
        Ok(Some(
            response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ))
    }

    /// Download a blob as a verified, resumable stream (see the module docs).
    pub async fn get_blob(
        &self,
        host: &str,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<BlobStream> {
        self.blob_stream(host, repo, digest, true).await
    }

    /// [`Client::get_blob`] without the hashing, for a consumer that hashes
    /// every byte itself on its way to storage (a pull-through cache writing
    /// into a storage upload), so the blob is hashed once, not twice. It
    /// resumes, and fails when the registry sends more or fewer bytes than
    /// it announced; the digest is the consumer's to check.
    pub async fn get_blob_unverified(
        &self,
        host: &str,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<BlobStream> {
        self.blob_stream(host, repo, digest, false).await
    }

    async fn blob_stream(
        &self,
        host: &str,
        repo: &RepositoryName,
        digest: &Digest,
        verify: bool,
    ) -> Result<BlobStream> {
        let ctx = blob_ctx("get blob", host, repo, digest);
        let response = self.blob_request(host, repo, digest, None, &ctx).await?;
        let response = expect_status(response, &[StatusCode::OK], &ctx).await?;
        let size = response.content_length();
        self.reporter().blob_started(digest, size);
        let download = Download {
            client: self.clone(),
            host: host.to_string(),
            repo: repo.clone(),
            digest: digest.clone(),
            ctx,
            body: response.bytes_stream().boxed(),
            hasher: verify.then(|| digest.algorithm().hasher()),
            offset: 0,
            size,
            skip: 0,
            resumes_left: self.config().max_blob_resumes,
            done: false,
        };
        let inner = stream::unfold(download, |mut d| async move {
            let item = d.next_item().await?;
            Some((item, d))
        })
        .boxed()
        .fuse();
        Ok(BlobStream { size, inner })
    }

    /// Bytes `range` of a blob, unverified (a part cannot be checked
    /// against the whole blob's digest).
    pub async fn get_blob_range(
        &self,
        host: &str,
        repo: &RepositoryName,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let ctx = blob_ctx("get blob range", host, repo, digest);
        if range.is_empty() {
            return Err(Error::new(
                ErrorKind::Invalid,
                &ctx,
                "the byte range is empty",
            ));
        }
        let url = self.url(host, &format!("{repo}/blobs/{digest}"), &ctx)?;
        let call = Call::new(host, Method::GET, url, &ctx)
            .scope(pull_scope(repo.as_str()))
            .header(RANGE, &format!("bytes={}-{}", range.start, range.end - 1));
        let response = expect_status(
            self.execute(call).await?,
            &[StatusCode::PARTIAL_CONTENT],
            &ctx,
        )
        .await?;
        if content_range_start(&response) != Some(range.start) {
            return Err(Error::new(
                ErrorKind::Protocol,
                &ctx,
                "the registry answered another range",
            ));
        }
        let err_ctx = ctx.clone();
        Ok(response
            .bytes_stream()
            .map(move |r| r.map_err(|e| Error::transport(&err_ctx, e)))
            .boxed())
    }
}
