//! Blob uploads: cross-repository mount, monolithic (POST then one PUT) and
//! chunked (POST, PATCH…, PUT).
//!
//! What is retried, and why that is safe:
//! - `POST …/uploads/` (start, or mount): no body; a repeat at worst leaves
//!   an unused upload session, which registries expire.
//! - `PATCH` of a chunk: not blindly. After a failure the client asks the
//!   registry how much of the upload it holds (`GET` on the session): if the
//!   chunk arrived, it moves on; if the upload still ends where the chunk
//!   starts, it sends the chunk again; anything else is an error.
//! - The closing `PUT …?digest=` without a body is retried; and whenever a
//!   closing `PUT` fails, the blob is looked up with `HEAD`: if the registry
//!   has it (the answer was lost, not the upload), the upload succeeded.
//! - A `PUT` whose body is a caller's stream cannot be replayed, so it is
//!   sent once; the caller retries the whole push with a fresh stream.

use bytes::{Bytes, BytesMut};
use futures_util::stream::{Stream, StreamExt};
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use http::{Method, StatusCode};
use reqwest::{Response, Url};
use wharf_oci::{Digest, RepositoryName};

use crate::auth::{pull_scope, push_scope};
use crate::client::{error_from, expect_status, Body, Call, Client};
use crate::error::{Context, Error, ErrorKind, Result};

const OCTET_STREAM: &str = "application/octet-stream";

/// An open upload session on a registry.
#[derive(Debug, Clone)]
pub struct UploadSession {
    host: String,
    repo: RepositoryName,
    location: Url,
}

impl UploadSession {
    pub fn repository(&self) -> &RepositoryName {
        &self.repo
    }
}

/// What a mount request achieved.
#[derive(Debug)]
pub enum MountOutcome {
    /// The registry linked the blob; nothing to upload.
    Mounted,
    /// The registry could not mount and opened an upload session instead.
    Upload(UploadSession),
}

fn upload_ctx(
    operation: &'static str,
    host: &str,
    repo: &RepositoryName,
    digest: Option<&Digest>,
) -> Context {
    let ctx = Context::new(operation, host).repository(repo);
    match digest {
        Some(d) => ctx.tag_or_digest(d),
        None => ctx,
    }
}

/// The session URL a response points to, resolved against the request's.
fn next_location(current: &Url, response: &Response, ctx: &Context) -> Result<Url> {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Protocol,
                ctx,
                "the registry sent no upload Location",
            )
        })?;
    current
        .join(location)
        .map_err(|_| Error::new(ErrorKind::Protocol, ctx, "the upload Location is not a URL"))
}

/// The number of bytes an upload holds, from `Range: 0-<last>`.
fn uploaded_size(response: &Response) -> Option<u64> {
    let v = response.headers().get(RANGE)?.to_str().ok()?;
    let last: u64 = v
        .trim()
        .strip_prefix("bytes=")
        .unwrap_or(v.trim())
        .split('-')
        .nth(1)?
        .parse()
        .ok()?;
    // Registries answer "0-0" for an empty upload as well as for one byte;
    // reading it as empty makes a resend the worst outcome.
    Some(if last == 0 { 0 } else { last + 1 })
}

fn with_digest(location: &Url, digest: &Digest) -> Url {
    let mut url = location.clone();
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    url
}

impl Client {
    fn uploads_url(&self, host: &str, repo: &RepositoryName, ctx: &Context) -> Result<Url> {
        self.url(host, &format!("{repo}/blobs/uploads/"), ctx)
    }

    /// Open an upload session.
    pub async fn start_upload(&self, host: &str, repo: &RepositoryName) -> Result<UploadSession> {
        let ctx = upload_ctx("start upload", host, repo, None);
        let url = self.uploads_url(host, repo, &ctx)?;
        let call = Call::new(host, Method::POST, url.clone(), &ctx)
            .scope(push_scope(repo.as_str()))
            .body(Body::Bytes(Bytes::new()));
        let response =
            expect_status(self.execute(call).await?, &[StatusCode::ACCEPTED], &ctx).await?;
        Ok(UploadSession {
            host: host.to_string(),
            repo: repo.clone(),
            location: next_location(&url, &response, &ctx)?,
        })
    }

    /// Ask the registry to link `digest` from repository `from` into `repo`
    /// without moving its bytes. The token asked for covers pull on `from`.
    /// Without `from`, registries that can (wharf among them) mount from
    /// any repository they hold the blob in; the others open an ordinary
    /// upload session, which the caller then uses: the request is never
    /// wasted.
    pub async fn mount_blob(
        &self,
        host: &str,
        repo: &RepositoryName,
        from: Option<&RepositoryName>,
        digest: &Digest,
    ) -> Result<MountOutcome> {
        let ctx = upload_ctx("mount blob", host, repo, Some(digest));
        let mut url = self.uploads_url(host, repo, &ctx)?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string());
        if let Some(from) = from {
            url.query_pairs_mut().append_pair("from", from.as_str());
        }
        let mut call = Call::new(host, Method::POST, url.clone(), &ctx)
            .scope(push_scope(repo.as_str()))
            .body(Body::Bytes(Bytes::new()));
        if let Some(from) = from {
            call = call.scope(pull_scope(from.as_str()));
        }
        let response = expect_status(
            self.execute(call).await?,
            &[StatusCode::CREATED, StatusCode::ACCEPTED],
            &ctx,
        )
        .await?;
        if response.status() == StatusCode::CREATED {
            return Ok(MountOutcome::Mounted);
        }
        Ok(MountOutcome::Upload(UploadSession {
            host: host.to_string(),
            repo: repo.clone(),
            location: next_location(&url, &response, &ctx)?,
        }))
    }

    /// Upload a blob from a stream of `size` bytes in one `PUT`.
    pub async fn push_blob<S, E>(
        &self,
        host: &str,
        repo: &RepositoryName,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let session = self.start_upload(host, repo).await?;
        self.upload_monolithic(session, digest, size, body).await
    }

    /// Upload a blob held in memory (retried as a whole on failures).
    pub async fn push_blob_bytes(
        &self,
        host: &str,
        repo: &RepositoryName,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<()> {
        let session = self.start_upload(host, repo).await?;
        let ctx = upload_ctx("push blob", host, repo, Some(digest));
        let size = bytes.len() as u64;
        self.reporter().blob_started(digest, Some(size));
        let call = Call::new(
            host,
            Method::PUT,
            with_digest(&session.location, digest),
            &ctx,
        )
        .scope(push_scope(repo.as_str()))
        .header(CONTENT_TYPE, OCTET_STREAM)
        .body(Body::Bytes(bytes));
        self.close_upload(call, &session, digest, size, &ctx).await
    }

    /// Finish `session` with the whole blob in the closing `PUT`.
    pub async fn upload_monolithic<S, E>(
        &self,
        session: UploadSession,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let ctx = upload_ctx("push blob", &session.host, &session.repo, Some(digest));
        self.reporter().blob_started(digest, Some(size));
        let (reporter, d) = (self.reporter_handle(), digest.clone());
        let counted = body.inspect(move |item| {
            if let Ok(chunk) = item {
                reporter.blob_progress(&d, chunk.len() as u64);
            }
        });
        let call = Call::new(
            &session.host,
            Method::PUT,
            with_digest(&session.location, digest),
            &ctx,
        )
        .scope(push_scope(session.repo.as_str()))
        .header(CONTENT_TYPE, OCTET_STREAM)
        .header(CONTENT_LENGTH, &size.to_string())
        .body(Body::stream(reqwest::Body::wrap_stream(counted)))
        .no_retry();
        self.close_upload(call, &session, digest, size, &ctx).await
    }

    /// Upload a stream in `PATCH` chunks of `chunk_size` bytes (one chunk
    /// is held in memory), then close the session.
    pub async fn upload_chunked<S, E>(
        &self,
        session: UploadSession,
        digest: &Digest,
        body: S,
        chunk_size: usize,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let ctx = upload_ctx("push blob", &session.host, &session.repo, Some(digest));
        let chunk_size = chunk_size.max(1);
        self.reporter().blob_started(digest, None);
        let mut body = std::pin::pin!(body);
        let mut buffer = BytesMut::new();
        let mut location = session.location.clone();
        let mut offset = 0u64;
        let mut ended = false;
        loop {
            while !ended && buffer.len() < chunk_size {
                match body.next().await {
                    Some(Ok(b)) => buffer.extend_from_slice(&b),
                    Some(Err(e)) => {
                        return Err(Error::new(
                            ErrorKind::Invalid,
                            &ctx,
                            format!("reading the blob to upload failed: {e}"),
                        ))
                    }
                    None => ended = true,
                }
            }
            if buffer.is_empty() {
                break;
            }
            let chunk = buffer.split_to(chunk_size.min(buffer.len())).freeze();
            let len = chunk.len() as u64;
            location = self
                .patch_chunk(&session, location, offset, chunk, &ctx)
                .await?;
            offset += len;
            self.reporter().blob_progress(digest, len);
        }
        let call = Call::new(
            &session.host,
            Method::PUT,
            with_digest(&location, digest),
            &ctx,
        )
        .scope(push_scope(session.repo.as_str()))
        .body(Body::Bytes(Bytes::new()));
        self.close_upload(call, &session, digest, offset, &ctx)
            .await
    }

    /// Send one chunk; returns the session's next location.
    async fn patch_chunk(
        &self,
        session: &UploadSession,
        location: Url,
        offset: u64,
        chunk: Bytes,
        ctx: &Context,
    ) -> Result<Url> {
        let policy = &self.config().retry;
        let end = offset + chunk.len() as u64;
        let mut attempt = 1;
        loop {
            let call = Call::new(&session.host, Method::PATCH, location.clone(), ctx)
                .scope(push_scope(session.repo.as_str()))
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header(CONTENT_RANGE, &format!("{offset}-{}", end - 1))
                .body(Body::Bytes(chunk.clone()))
                .no_retry();
            let failure = match self.execute(call).await {
                Ok(r) if r.status() == StatusCode::ACCEPTED => {
                    return next_location(&location, &r, ctx)
                }
                Ok(r)
                    if r.status().is_server_error()
                        || r.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    error_from(r, ctx).await
                }
                Ok(r) => return Err(error_from(r, ctx).await),
                Err(e) if e.kind() == ErrorKind::Network => e,
                Err(e) => return Err(e),
            };
            if attempt >= policy.max_attempts {
                return Err(failure);
            }
            tokio::time::sleep(policy.backoff(attempt - 1)).await;
            attempt += 1;
            // Did the chunk arrive before the failure was noticed?
            let (held, status_location) = self.upload_status(session, &location, ctx).await?;
            if held == end {
                return Ok(status_location);
            }
            if held != offset {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    ctx,
                    format!("after a failed chunk the upload holds {held} bytes, expected {offset} or {end}"),
                ));
            }
        }
    }

    /// `GET` on the session: how many bytes it holds, and where it is now.
    async fn upload_status(
        &self,
        session: &UploadSession,
        location: &Url,
        ctx: &Context,
    ) -> Result<(u64, Url)> {
        let call = Call::new(&session.host, Method::GET, location.clone(), ctx)
            .scope(push_scope(session.repo.as_str()));
        let response = expect_status(
            self.execute(call).await?,
            &[StatusCode::NO_CONTENT, StatusCode::OK],
            ctx,
        )
        .await?;
        let held = uploaded_size(&response).ok_or_else(|| {
            Error::new(ErrorKind::Protocol, ctx, "the upload status has no Range")
        })?;
        let next = next_location(location, &response, ctx).unwrap_or_else(|_| location.clone());
        Ok((held, next))
    }

    /// Send the closing `PUT`; on failure, success is still possible if the
    /// registry has the blob (the answer, not the upload, was lost).
    async fn close_upload(
        &self,
        call: Call<'_>,
        session: &UploadSession,
        digest: &Digest,
        size: u64,
        ctx: &Context,
    ) -> Result<()> {
        let failure = match self.execute(call).await {
            Ok(r) if r.status() == StatusCode::CREATED => {
                self.reporter().blob_finished(digest);
                return Ok(());
            }
            Ok(r) => error_from(r, ctx).await,
            Err(e) => e,
        };
        if failure.is_transient() || failure.is_not_found() {
            if let Ok(Some(held)) = self.head_blob(&session.host, &session.repo, digest).await {
                if held == size {
                    self.reporter().blob_finished(digest);
                    return Ok(());
                }
            }
        }
        Err(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_appended_to_session_urls() {
        let d = Digest::sha256_of(b"");
        let u = Url::parse("http://r/v2/a/blobs/uploads/1?_state=x").unwrap();
        assert_eq!(
            with_digest(&u, &d).as_str(),
            format!(
                "http://r/v2/a/blobs/uploads/1?_state=x&digest=sha256%3A{}",
                d.hex()
            )
        );
    }
}
