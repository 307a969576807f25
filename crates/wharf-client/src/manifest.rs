//! Manifests: HEAD, GET (verified), PUT.
//!
//! Manifests are moved byte for byte: the digest of an image is the digest
//! of its manifest's exact bytes, so nothing here re-serialises them.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};
use wharf_oci::{media_type, Digest, Reference, RepositoryName, Target};

use crate::auth::{pull_scope, push_scope};
use crate::client::{expect_status, Body, Call, Client};
use crate::error::{Context, Error, ErrorKind, Result};

const DIGEST_HEADER: &str = "docker-content-digest";

/// What a manifest HEAD tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// A manifest as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    /// The digest of `bytes` (verified).
    pub digest: Digest,
}

fn accept_header() -> String {
    media_type::MANIFEST_ACCEPT.join(", ")
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    header_str(headers, CONTENT_TYPE.as_str())
        .map(media_type::essence)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `Docker-Content-Digest`, when present and well-formed.
fn digest_header(headers: &HeaderMap, ctx: &Context) -> Result<Option<Digest>> {
    match header_str(headers, DIGEST_HEADER) {
        None => Ok(None),
        Some(d) => d.trim().parse().map(Some).map_err(|_| {
            Error::new(
                ErrorKind::Protocol,
                ctx,
                format!("the registry sent an invalid Docker-Content-Digest {d:?}"),
            )
        }),
    }
}

fn manifest_ctx(
    operation: &'static str,
    host: &str,
    repo: &RepositoryName,
    target: &Target,
) -> Context {
    Context::new(operation, host)
        .repository(repo)
        .tag_or_digest(target)
}

/// Check `bytes` against the digest asked for and the one announced.
fn verify_manifest(
    bytes: &[u8],
    requested: Option<&Digest>,
    announced: Option<&Digest>,
    ctx: &Context,
) -> Result<Digest> {
    for expected in [requested, announced].into_iter().flatten() {
        let actual = Digest::of(expected.algorithm(), bytes);
        if &actual != expected {
            return Err(Error::digest_mismatch(
                ctx,
                &expected.to_string(),
                &actual.to_string(),
            ));
        }
    }
    Ok(requested
        .or(announced)
        .cloned()
        .unwrap_or_else(|| Digest::sha256_of(bytes)))
}

impl Client {
    fn manifest_url(
        &self,
        host: &str,
        repo: &RepositoryName,
        target: &Target,
        ctx: &Context,
    ) -> Result<reqwest::Url> {
        self.url(host, &format!("{repo}/manifests/{target}"), ctx)
    }

    /// The digest, media type and size of a manifest without its body.
    /// Falls back to a GET when the registry sends no digest for a tag.
    pub async fn head_manifest(&self, reference: &Reference) -> Result<ManifestInfo> {
        let (host, repo, target) = (reference.host(), reference.repository(), reference.target());
        let ctx = manifest_ctx("head manifest", host, repo, &target);
        let call = Call::new(
            host,
            Method::HEAD,
            self.manifest_url(host, repo, &target, &ctx)?,
            &ctx,
        )
        .scope(pull_scope(repo.as_str()))
        .header(ACCEPT, &accept_header());
        let response = expect_status(self.execute(call).await?, &[StatusCode::OK], &ctx).await?;
        let headers = response.headers();
        let announced = digest_header(headers, &ctx)?;
        let digest = match (&target, announced) {
            (Target::Digest(d), _) => d.clone(),
            (Target::Tag(_), Some(d)) => d,
            (Target::Tag(_), None) => {
                let m = self.get_manifest(reference).await?;
                return Ok(ManifestInfo {
                    size: m.bytes.len() as u64,
                    digest: m.digest,
                    media_type: m.media_type,
                });
            }
        };
        let size = header_str(headers, CONTENT_LENGTH.as_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let media_type = content_type(headers).ok_or_else(|| {
            Error::new(
                ErrorKind::Protocol,
                &ctx,
                "the registry sent no Content-Type",
            )
        })?;
        Ok(ManifestInfo {
            digest,
            media_type,
            size,
        })
    }

    /// The manifest's exact bytes. When pulling by digest, the bytes must
    /// hash to it; a `Docker-Content-Digest` must match the bytes too.
    pub async fn get_manifest(&self, reference: &Reference) -> Result<Manifest> {
        let (host, repo, target) = (reference.host(), reference.repository(), reference.target());
        let ctx = manifest_ctx("get manifest", host, repo, &target);
        let call = Call::new(
            host,
            Method::GET,
            self.manifest_url(host, repo, &target, &ctx)?,
            &ctx,
        )
        .scope(pull_scope(repo.as_str()))
        .header(ACCEPT, &accept_header());
        let response = expect_status(self.execute(call).await?, &[StatusCode::OK], &ctx).await?;
        let announced = digest_header(response.headers(), &ctx)?;
        let media_type = content_type(response.headers());
        let bytes = self.read_manifest_body(response, &ctx).await?;
        let requested = match &target {
            Target::Digest(d) => Some(d),
            Target::Tag(_) => None,
        };
        let digest = verify_manifest(&bytes, requested, announced.as_ref(), &ctx)?;
        // Without a Content-Type, the document's own mediaType decides.
        let media_type = match media_type {
            Some(m) if m != "application/json" && m != "text/plain" => m,
            _ => wharf_oci::ParsedManifest::parse(&bytes, None)
                .map(|p| p.media_type)
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Protocol,
                        &ctx,
                        format!("cannot tell the manifest's type: {e}"),
                    )
                })?,
        };
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    async fn read_manifest_body(
        &self,
        mut response: reqwest::Response,
        ctx: &Context,
    ) -> Result<Bytes> {
        let limit = self.config().max_manifest_bytes;
        if response.content_length().is_some_and(|l| l > limit as u64) {
            return Err(too_large(ctx, limit));
        }
        let mut out = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Error::transport(ctx, e))?
        {
            if out.len() + chunk.len() > limit {
                return Err(too_large(ctx, limit));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }

    /// Push a manifest under a tag or its digest; returns its digest.
    ///
    /// Retried on transient failures: a PUT of the same bytes to the same
    /// place is idempotent (content-addressed, the tag ends up the same).
    pub async fn put_manifest(
        &self,
        host: &str,
        repo: &RepositoryName,
        target: &Target,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<Digest> {
        let ctx = manifest_ctx("put manifest", host, repo, target);
        let computed = match target {
            Target::Digest(d) => verify_manifest(&bytes, Some(d), None, &ctx)?,
            Target::Tag(_) => Digest::sha256_of(&bytes),
        };
        let call = Call::new(
            host,
            Method::PUT,
            self.manifest_url(host, repo, target, &ctx)?,
            &ctx,
        )
        .scope(push_scope(repo.as_str()))
        .header(CONTENT_TYPE, media_type)
        .body(Body::Bytes(bytes.clone()));
        let response = expect_status(
            self.execute(call).await?,
            &[StatusCode::CREATED, StatusCode::OK, StatusCode::ACCEPTED],
            &ctx,
        )
        .await?;
        // The registry must have stored exactly these bytes.
        if let Some(stored) = digest_header(response.headers(), &ctx)? {
            verify_manifest(&bytes, None, Some(&stored), &ctx)?;
        }
        Ok(computed)
    }
}

fn too_large(ctx: &Context, limit: usize) -> Error {
    Error::new(
        ErrorKind::Protocol,
        ctx,
        format!("the manifest is larger than {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification() {
        let ctx = Context::new("get manifest", "r");
        let bytes = b"{}";
        let good = Digest::sha256_of(bytes);
        let bad = Digest::sha256_of(b"other");
        assert_eq!(
            verify_manifest(bytes, Some(&good), None, &ctx).unwrap(),
            good
        );
        assert_eq!(verify_manifest(bytes, None, None, &ctx).unwrap(), good);
        assert_eq!(
            verify_manifest(bytes, Some(&bad), None, &ctx)
                .unwrap_err()
                .kind(),
            ErrorKind::DigestMismatch
        );
        assert_eq!(
            verify_manifest(bytes, None, Some(&bad), &ctx)
                .unwrap_err()
                .kind(),
            ErrorKind::DigestMismatch
        );
        // A sha512 announcement is checked with sha512.
        let d512 = Digest::of(wharf_oci::Algorithm::Sha512, bytes);
        assert_eq!(
            verify_manifest(bytes, None, Some(&d512), &ctx).unwrap(),
            d512
        );
    }

    #[test]
    fn accept_lists_every_manifest_type() {
        let a = accept_header();
        for t in [
            media_type::OCI_INDEX,
            media_type::OCI_MANIFEST,
            media_type::DOCKER_MANIFEST_LIST,
            media_type::DOCKER_MANIFEST,
        ] {
            assert!(a.contains(t));
        }
    }
}
