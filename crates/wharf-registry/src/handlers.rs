//! One function per endpoint. Each takes what the route parsed plus the
//! request parts it needs and returns a response or a [`RegistryError`].

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::{Body as _, Incoming};
use serde_json::json;
use wharf_auth::Action;
use wharf_oci::{media_type, Algorithm, Digest, RepositoryName, Tag, Target};
use wharf_storage::{ManifestPutOptions, StorageError, TagPage};

use crate::auth::{token_endpoint, Caller, TokenRequest};
use crate::body::{self, Body};
use crate::error::{Code, RegistryError};
use crate::routes::{Access, Endpoint, Query};
use crate::Registry;

pub type HandlerResult = Result<Response<Body>, RegistryError>;

const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID: &str = "docker-upload-uuid";

pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub query: &'a Query,
    pub body: Incoming,
    /// Who asked; the auth layer already allowed the endpoint's action.
    pub caller: &'a Caller,
}

fn limits(registry: &Registry) -> &crate::Limits {
    &registry.config().limits
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn response(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status)
}

fn finish(builder: http::response::Builder, body: Body) -> HandlerResult {
    builder
        .body(body)
        .map_err(|e| RegistryError::new(Code::Internal, e.to_string()))
}

fn blob_location(repo: &RepositoryName, d: &Digest) -> String {
    format!("/v2/{repo}/blobs/{d}")
}

fn upload_location(repo: &RepositoryName, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// `Range: 0-<last byte>` as the spec writes it; distribution says `0-0`
/// for an empty upload and clients expect that.
fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// Pushes into a repository an upstream covers are refused unless that
/// upstream allows them: its content must stay what the upstream serves.
fn refuse_push_to_cache(registry: &Registry, endpoint: &Endpoint) -> Result<(), RegistryError> {
    let (Access::Repository(Action::Push), Some(repo)) = (endpoint.access(), endpoint.repository())
    else {
        return Ok(());
    };
    match registry.upstream_for(repo) {
        Some((_, coverage)) if !coverage.allow_push => Err(RegistryError::new(
            Code::Denied,
            format!(
                "{repo} is a pull-through cache of an upstream registry; pushes to it are refused"
            ),
        )),
        _ => Ok(()),
    }
}

pub async fn dispatch(registry: &Registry, endpoint: Endpoint, req: Request<'_>) -> HandlerResult {
    refuse_push_to_cache(registry, &endpoint)?;
    match endpoint {
        Endpoint::Base => finish(
            response(StatusCode::OK).header(header::CONTENT_TYPE, "application/json"),
            body::full("{}"),
        ),
        Endpoint::Health => text(StatusCode::OK, "ok\n"),
        Endpoint::Ready => ready(registry).await,
        Endpoint::Metrics => {
            let mut out = registry.metrics().render();
            out.push_str(
                &registry
                    .metrics()
                    .render_storage(registry.store().storage_usage()),
            );
            text(StatusCode::OK, out)
        }
        Endpoint::TokenGet => token_endpoint(registry, req, TokenRequest::Query).await,
        Endpoint::TokenPost => token_endpoint(registry, req, TokenRequest::OAuthForm).await,
        Endpoint::Catalog => catalog(registry, req.query, req.caller).await,
        Endpoint::TagsList(repo) => tags_list(registry, &repo, req.query).await,
        Endpoint::Referrers(repo, d) => referrers(registry, &repo, &d, req.query).await,
        Endpoint::ManifestGet(repo, target) => get_manifest(registry, &repo, &target, false).await,
        Endpoint::ManifestHead(repo, target) => get_manifest(registry, &repo, &target, true).await,
        Endpoint::ManifestPut(repo, target) => put_manifest(registry, &repo, &target, req).await,
        Endpoint::ManifestDelete(repo, target) => delete_manifest(registry, &repo, &target).await,
        Endpoint::BlobGet(repo, d) => get_blob(registry, &repo, &d, req.headers, false).await,
        Endpoint::BlobHead(repo, d) => get_blob(registry, &repo, &d, req.headers, true).await,
        Endpoint::BlobDelete(repo, d) => delete_blob(registry, &repo, &d).await,
        Endpoint::UploadStart(repo)
        | Endpoint::UploadMonolithic(repo)
        | Endpoint::BlobMount(repo) => start_upload(registry, &repo, req).await,
        Endpoint::UploadStatus(repo, id) => upload_status(registry, &repo, &id).await,
        Endpoint::UploadPatch(repo, id) => patch_upload(registry, &repo, &id, req).await,
        Endpoint::UploadPut(repo, id) => put_upload(registry, &repo, &id, req).await,
        Endpoint::UploadCancel(repo, id) => cancel_upload(registry, &repo, &id).await,
    }
}

// --- operations ------------------------------------------------------------

fn text(status: StatusCode, body: impl Into<String>) -> HandlerResult {
    finish(
        response(status).header(header::CONTENT_TYPE, "text/plain; version=0.0.4"),
        body::full(body.into()),
    )
}

/// Ready when the storage answers a read of its layout marker.
async fn ready(registry: &Registry) -> HandlerResult {
    match registry
        .store()
        .backend()
        .exists(wharf_storage::layout::VERSION_KEY)
        .await
    {
        Ok(true) => text(StatusCode::OK, "ready\n"),
        Ok(false) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage root has no layout marker\n",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            text(StatusCode::SERVICE_UNAVAILABLE, "storage does not answer\n")
        }
    }
}

// --- discovery -------------------------------------------------------------

fn page_params(query: &Query) -> Result<(Option<usize>, Option<&str>), RegistryError> {
    let n = match query.get("n") {
        None | Some("") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            RegistryError::new(
                Code::Unsupported,
                format!("n={n:?} is not a non-negative integer"),
            )
        })?),
    };
    Ok((n, query.get("last").filter(|l| !l.is_empty())))
}

fn link_header(path: &str, page: &TagPage, n: Option<usize>) -> Option<String> {
    let last = page.tags.last()?;
    if !page.more {
        return None;
    }
    let n = n.unwrap_or(page.tags.len());
    let last = percent_encoding::utf8_percent_encode(last, percent_encoding::NON_ALPHANUMERIC);
    Some(format!("<{path}?last={last}&n={n}>; rel=\"next\""))
}

fn json_page(json: serde_json::Value, link: Option<String>) -> HandlerResult {
    let mut b = response(StatusCode::OK).header(header::CONTENT_TYPE, "application/json");
    if let Some(link) = link {
        b = b.header(header::LINK, hv(&link));
    }
    finish(b, body::full(serde_json::to_vec(&json).expect("json")))
}

/// Lists only the repositories the caller may pull, so the catalog reveals
/// nothing about the others.
async fn catalog(registry: &Registry, query: &Query, caller: &Caller) -> HandlerResult {
    let (n, last) = page_params(query)?;
    let page = if registry.config().auth.is_some() {
        let all = registry.store().catalog(None, last).await?;
        visible_page(all.tags, n, |repo| caller.may_list(repo))
    } else {
        registry.store().catalog(n, last).await?
    };
    let link = link_header("/v2/_catalog", &page, n);
    json_page(json!({ "repositories": page.tags }), link)
}

/// The first `n` of `names` that pass `visible`, and whether more follow.
fn visible_page(names: Vec<String>, n: Option<usize>, visible: impl Fn(&str) -> bool) -> TagPage {
    let mut shown: Vec<String> = names.into_iter().filter(|r| visible(r)).collect();
    let more = n.is_some_and(|n| shown.len() > n);
    if let Some(n) = n {
        shown.truncate(n);
    }
    TagPage { tags: shown, more }
}

async fn tags_list(registry: &Registry, repo: &RepositoryName, query: &Query) -> HandlerResult {
    let (n, last) = page_params(query)?;
    let page = registry.store().tags(repo, n, last).await?;
    let link = link_header(&format!("/v2/{repo}/tags/list"), &page, n);
    json_page(json!({ "name": repo.as_str(), "tags": page.tags }), link)
}

/// A page of the subject's referrers. Pages are bounded in bytes (and by
/// `n` when asked); a `Link` header names the next one, carrying the filter.
async fn referrers(
    registry: &Registry,
    repo: &RepositoryName,
    subject: &Digest,
    query: &Query,
) -> HandlerResult {
    let filter = query.get("artifactType").filter(|a| !a.is_empty());
    let (n, last) = page_params(query)?;
    let page = registry
        .store()
        .referrers(repo, subject, filter, last, n)
        .await?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": page.descriptors,
    });
    let mut b = response(StatusCode::OK).header(header::CONTENT_TYPE, media_type::OCI_INDEX);
    if filter.is_some() {
        b = b.header("oci-filters-applied", "artifactType");
    }
    if let Some(after) = &page.next {
        let link = referrers_link(repo, subject, after, n, filter);
        b = b.header(header::LINK, hv(&link));
    }
    finish(b, body::full(serde_json::to_vec(&index).expect("json")))
}

fn referrers_link(
    repo: &RepositoryName,
    subject: &Digest,
    after: &str,
    n: Option<usize>,
    filter: Option<&str>,
) -> String {
    let encode = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut target = format!("/v2/{repo}/referrers/{subject}?last={}", encode(after));
    if let Some(n) = n {
        target.push_str(&format!("&n={n}"));
    }
    if let Some(filter) = filter {
        target.push_str(&format!("&artifactType={}", encode(filter)));
    }
    format!("<{target}>; rel=\"next\"")
}

// --- manifests -------------------------------------------------------------

async fn get_manifest(
    registry: &Registry,
    repo: &RepositoryName,
    target: &Target,
    head: bool,
) -> HandlerResult {
    let m = match registry.upstream_for(repo) {
        Some((upstream, _)) => upstream.manifest(repo, target).await?,
        None => registry.store().manifest_get(repo, target).await?,
    };
    let digest = m.digest.to_string();
    let b = response(StatusCode::OK)
        .header(header::CONTENT_TYPE, hv(&m.media_type))
        .header(header::CONTENT_LENGTH, m.bytes.len())
        .header(header::ETAG, hv(&["\"", &digest, "\""].concat()))
        .header(DIGEST_HEADER, hv(&digest));
    finish(
        b,
        if head {
            body::empty()
        } else {
            body::full(m.bytes)
        },
    )
}

async fn put_manifest(
    registry: &Registry,
    repo: &RepositoryName,
    target: &Target,
    req: Request<'_>,
) -> HandlerResult {
    let limit = registry.config().max_manifest_bytes;
    let declared = body::declared_length(req.headers);
    let bytes = body::read_limited(req.body, declared, limit, "manifest", limits(registry)).await?;
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let extra_tags = extra_tags(req.query, target)?;
    let options = ManifestPutOptions {
        sparse_indexes: registry.config().sparse_indexes,
        extra_tags,
        lazy_references: false,
    };
    let put = registry
        .store()
        .manifest_put(repo, target, bytes, content_type.as_deref(), &options)
        .await?;
    registry.metrics().manifest_pushed();
    let mut b = response(StatusCode::CREATED)
        .header(
            header::LOCATION,
            hv(&format!("/v2/{repo}/manifests/{}", put.digest)),
        )
        .header(DIGEST_HEADER, hv(&put.digest.to_string()))
        .header(header::CONTENT_LENGTH, 0);
    if let Some(subject) = &put.subject {
        b = b.header("oci-subject", hv(&subject.to_string()));
    }
    if matches!(target, Target::Digest(_)) {
        for tag in &put.tags {
            b = b.header("oci-tag", hv(tag.as_str()));
        }
    }
    finish(b, body::empty())
}

/// `?tag=` on a push by digest (end-7b).
fn extra_tags(query: &Query, target: &Target) -> Result<Vec<Tag>, RegistryError> {
    if matches!(target, Target::Tag(_)) {
        return Ok(Vec::new());
    }
    query
        .all("tag")
        .map(|t| {
            t.parse()
                .map_err(|e| RegistryError::manifest_invalid(format!("{e}")))
        })
        .collect()
}

fn deletes_allowed(registry: &Registry) -> Result<(), RegistryError> {
    if registry.config().delete_enabled {
        Ok(())
    } else {
        Err(
            RegistryError::new(Code::Unsupported, "deletes are disabled on this registry")
                .with_status(StatusCode::METHOD_NOT_ALLOWED),
        )
    }
}

async fn delete_manifest(
    registry: &Registry,
    repo: &RepositoryName,
    target: &Target,
) -> HandlerResult {
    deletes_allowed(registry)?;
    registry.store().manifest_delete(repo, target).await?;
    finish(
        response(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, 0),
        body::empty(),
    )
}

// --- blobs -----------------------------------------------------------------

/// Parse `Range: bytes=a-b` / `bytes=a-` / `bytes=-n` against `size`.
/// `Ok(None)` means "no (usable) range: send everything"; multiple ranges are
/// answered with the whole blob, which RFC 9110 allows.
fn parse_range(header: Option<&HeaderValue>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (false, _) => {
            let start: u64 = a.parse().map_err(|_| ())?;
            let end = if b.is_empty() {
                u64::MAX
            } else {
                b.parse().map_err(|_| ())?
            };
            if start > end {
                return Err(());
            }
            (start, end.min(size.saturating_sub(1)))
        }
        (true, true) => return Err(()),
    };
    if range.0 >= size {
        return Err(());
    }
    Ok(Some(range))
}

async fn get_blob(
    registry: &Registry,
    repo: &RepositoryName,
    d: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> HandlerResult {
    let store = registry.store();
    let size = match store.blob_size(repo, d).await? {
        Some(size) => {
            if registry.upstream_for(repo).is_some() {
                registry.metrics().cache_hit();
            }
            size
        }
        None => match registry.upstream_for(repo) {
            Some((upstream, _)) => {
                return get_upstream_blob(registry, upstream, repo, d, headers, head).await
            }
            None => return Err(StorageError::BlobUnknown(d.clone()).into()),
        },
    };
    serve_stored_blob(registry, d, size, headers, head).await
}

/// A blob in the store, whole or the `Range` asked for.
async fn serve_stored_blob(
    registry: &Registry,
    d: &Digest,
    size: u64,
    headers: &HeaderMap,
    head: bool,
) -> HandlerResult {
    // Object storage configured to hand out presigned URLs: the client
    // fetches the bytes (and any range of them) from the store directly.
    if !head {
        if let Some(url) = registry.store().backend().blob_url(d).await? {
            return finish(
                response(StatusCode::TEMPORARY_REDIRECT)
                    .header(header::LOCATION, hv(&url))
                    .header(DIGEST_HEADER, hv(&d.to_string()))
                    .header(header::CONTENT_LENGTH, 0),
                body::empty(),
            );
        }
    }
    let range = match parse_range(headers.get(header::RANGE), size) {
        Ok(r) => r,
        Err(()) => return finish(range_not_satisfiable(size), body::empty()),
    };
    let mut b = response(if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    })
    .header(header::CONTENT_TYPE, "application/octet-stream")
    .header(DIGEST_HEADER, hv(&d.to_string()))
    .header(header::ETAG, hv(&format!("\"{d}\"")))
    .header(header::ACCEPT_RANGES, "bytes");
    let (start, end_exclusive) = match range {
        Some((a, z)) => {
            b = b.header(header::CONTENT_RANGE, format!("bytes {a}-{z}/{size}"));
            (a, z + 1)
        }
        None => (0, size),
    };
    b = b.header(header::CONTENT_LENGTH, end_exclusive - start);
    if head || start == end_exclusive {
        return finish(b, body::empty());
    }
    let stream = registry.store().blob_read(d, start..end_exclusive).await?;
    registry.metrics().blob_sent(end_exclusive - start);
    finish(b, body::stream(stream))
}

fn blob_headers(d: &Digest) -> http::response::Builder {
    response(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(DIGEST_HEADER, hv(&d.to_string()))
        .header(header::ETAG, hv(&format!("\"{d}\"")))
}

/// A blob the store does not have, in a repository an upstream covers.
/// The whole blob streams as the shared download brings it. A `Range` is
/// answered 206 once the download has verified the whole blob (a part
/// cannot be checked by the client, so it must come from a blob known to be
/// right); when the upstream announced no size the range cannot be placed
/// before the end, and the whole blob is sent (RFC 9110 allows it).
async fn get_upstream_blob(
    registry: &Registry,
    upstream: &dyn crate::Upstream,
    repo: &RepositoryName,
    d: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> HandlerResult {
    if head {
        let size = upstream.blob_size(repo, d).await?;
        return finish(
            blob_headers(d).header(header::CONTENT_LENGTH, size),
            body::empty(),
        );
    }
    match upstream.blob(repo, d).await? {
        crate::UpstreamBlob::Stored => {
            // Another request brought it in meanwhile.
            let size = registry
                .store()
                .blob_size(repo, d)
                .await?
                .ok_or_else(|| RegistryError::from(StorageError::BlobUnknown(d.clone())))?;
            serve_stored_blob(registry, d, size, headers, head).await
        }
        crate::UpstreamBlob::Streaming {
            size: Some(size),
            open,
        } if headers.contains_key(header::RANGE) => {
            let Ok(range) = parse_range(headers.get(header::RANGE), size) else {
                return finish(range_not_satisfiable(size), body::empty());
            };
            let (a, z) = range.unwrap_or((0, size.saturating_sub(1)));
            let b = response(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(DIGEST_HEADER, hv(&d.to_string()))
                .header(header::ETAG, hv(&format!("\"{d}\"")))
                .header(header::ACCEPT_RANGES, "bytes")
                .header(header::CONTENT_RANGE, format!("bytes {a}-{z}/{size}"))
                .header(header::CONTENT_LENGTH, z + 1 - a);
            registry.metrics().blob_sent(z + 1 - a);
            finish(b, body::stream(open(Some(a..z + 1))))
        }
        crate::UpstreamBlob::Streaming { size, open } => {
            let mut b = blob_headers(d);
            if let Some(size) = size {
                b = b.header(header::CONTENT_LENGTH, size);
                registry.metrics().blob_sent(size);
            }
            finish(b, body::stream(open(None)))
        }
    }
}

fn range_not_satisfiable(size: u64) -> http::response::Builder {
    response(StatusCode::RANGE_NOT_SATISFIABLE)
        .header(header::CONTENT_RANGE, format!("bytes */{size}"))
        .header(header::CONTENT_LENGTH, 0)
}

async fn delete_blob(registry: &Registry, repo: &RepositoryName, d: &Digest) -> HandlerResult {
    deletes_allowed(registry)?;
    registry.store().blob_delete(repo, d).await?;
    finish(
        response(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, 0),
        body::empty(),
    )
}

// --- uploads ---------------------------------------------------------------

fn blob_created(repo: &RepositoryName, d: &Digest) -> HandlerResult {
    finish(
        response(StatusCode::CREATED)
            .header(header::LOCATION, hv(&blob_location(repo, d)))
            .header(DIGEST_HEADER, hv(&d.to_string()))
            .header(header::CONTENT_LENGTH, 0),
        body::empty(),
    )
}

fn upload_accepted(
    status: StatusCode,
    repo: &RepositoryName,
    id: &str,
    size: u64,
) -> HandlerResult {
    finish(
        response(status)
            .header(header::LOCATION, hv(&upload_location(repo, id)))
            .header(header::RANGE, hv(&upload_range(size)))
            .header(UPLOAD_UUID, hv(id))
            .header(header::CONTENT_LENGTH, 0),
        body::empty(),
    )
}

fn query_digest(query: &Query) -> Result<Option<Digest>, RegistryError> {
    query
        .get("digest")
        .map(|d| d.parse().map_err(RegistryError::digest_invalid))
        .transpose()
}

async fn start_upload(
    registry: &Registry,
    repo: &RepositoryName,
    req: Request<'_>,
) -> HandlerResult {
    let store = registry.store();
    if let Some(mount) = req.query.get("mount") {
        let d: Digest = mount.parse().map_err(RegistryError::digest_invalid)?;
        let from = match req.query.get("from").filter(|f| !f.is_empty()) {
            Some(f) => Some(
                f.parse::<RepositoryName>()
                    .map_err(RegistryError::name_invalid)?,
            ),
            None => None,
        };
        // Mounting from a repository the caller may not pull would copy its
        // blob out; answer as for an unmountable blob instead, which reveals
        // nothing about the source. Without `from` the blob could come from
        // any repository, so only an unrestricted registry mounts it.
        let source_readable = match &from {
            Some(f) => req.caller.may(f, wharf_auth::Action::Pull),
            None => req.caller.is_unrestricted(),
        };
        if source_readable && store.blob_mount(repo, from.as_ref(), &d).await? {
            return blob_created(repo, &d);
        }
        // Not mountable: the spec says to start an ordinary upload instead.
    }
    if let Some(d) = query_digest(req.query)? {
        let _slot = registry.uploads().take()?;
        store
            .put_blob(repo, &d, body::request_stream(req.body, limits(registry)))
            .await?;
        return blob_created(repo, &d);
    }
    let algorithm = match req.query.get("digest-algorithm") {
        Some(a) => a
            .parse::<Algorithm>()
            .map_err(|e| RegistryError::new(Code::Unsupported, e.to_string()))?,
        None => Algorithm::Sha256,
    };
    let id = store.start_upload(repo, algorithm).await?;
    upload_accepted(StatusCode::ACCEPTED, repo, &id, 0)
}

async fn upload_status(registry: &Registry, repo: &RepositoryName, id: &str) -> HandlerResult {
    let status = registry.store().upload_status(repo, id).await?;
    upload_accepted(StatusCode::NO_CONTENT, repo, id, status.size)
}

/// `Content-Range: <start>-<end>` (the spec's form; `bytes ` prefix and a
/// `/total` suffix tolerated). Returns the start and the chunk length.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, RegistryError> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || RegistryError::new(Code::RangeInvalid, "Content-Range must be <start>-<end>");
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s.strip_prefix("bytes ").unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b - a + 1)))
}

/// Check `Content-Range` against `Content-Length` before reading anything.
fn chunk_start(headers: &HeaderMap) -> Result<Option<u64>, RegistryError> {
    let range = content_range(headers)?;
    if let (Some((_, len)), Some(declared)) = (range, body::declared_length(headers)) {
        if len != declared {
            return Err(RegistryError::new(
                Code::RangeInvalid,
                format!("Content-Range covers {len} bytes but Content-Length is {declared}"),
            ));
        }
    }
    Ok(range.map(|(start, _)| start))
}

/// Attach the upload's state to a 416 so the client knows where to resume.
async fn with_upload_state(
    registry: &Registry,
    repo: &RepositoryName,
    id: &str,
    err: RegistryError,
) -> RegistryError {
    if err.code != Code::RangeInvalid {
        return err;
    }
    match registry.store().upload_status(repo, id).await {
        Ok(s) => err.with_upload_state(upload_location(repo, id), s.size),
        Err(_) => err,
    }
}

async fn patch_upload(
    registry: &Registry,
    repo: &RepositoryName,
    id: &str,
    req: Request<'_>,
) -> HandlerResult {
    let result = async {
        let start = chunk_start(req.headers)?;
        let _slot = registry.uploads().take()?;
        let stream = body::request_stream(req.body, limits(registry));
        Ok::<_, RegistryError>(
            registry
                .store()
                .append_upload(repo, id, start, stream)
                .await?,
        )
    }
    .await;
    match result {
        Ok(status) => upload_accepted(StatusCode::ACCEPTED, repo, id, status.size),
        Err(e) => Err(with_upload_state(registry, repo, id, e).await),
    }
}

async fn put_upload(
    registry: &Registry,
    repo: &RepositoryName,
    id: &str,
    req: Request<'_>,
) -> HandlerResult {
    let d = query_digest(req.query)?.ok_or_else(|| {
        RegistryError::new(
            Code::DigestInvalid,
            "the closing PUT needs ?digest=<digest>",
        )
    })?;
    let result = async {
        let start = chunk_start(req.headers)?;
        // Whether a final chunk follows is the body's to say, not the
        // headers': an HTTP/2 request may carry data frames without a
        // `Content-Length`, and only its end-of-stream flag marks it empty.
        let has_body = !req.body.is_end_stream();
        let _slot = has_body.then(|| registry.uploads().take()).transpose()?;
        let last = has_body.then(|| (start, body::request_stream(req.body, limits(registry))));
        Ok::<_, RegistryError>(registry.store().finish_upload(repo, id, &d, last).await?)
    }
    .await;
    match result {
        Ok(size) => {
            registry.metrics().blob_received(size);
            blob_created(repo, &d)
        }
        Err(e) => Err(with_upload_state(registry, repo, id, e).await),
    }
}

async fn cancel_upload(registry: &Registry, repo: &RepositoryName, id: &str) -> HandlerResult {
    registry.store().cancel_upload(repo, id).await?;
    finish(response(StatusCode::NO_CONTENT), body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(h: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        parse_range(Some(&HeaderValue::from_str(h).unwrap()), size)
    }

    #[test]
    fn ranges() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=50-1000", 100), Ok(Some((50, 99))));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=5-4", 100), Err(()));
        assert_eq!(range("bytes=x-4", 100), Err(()));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range(None, 100), Ok(None));
    }

    #[test]
    fn content_ranges() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_RANGE, HeaderValue::from_static("10-19"));
        assert_eq!(content_range(&h).unwrap(), Some((10, 10)));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert_eq!(chunk_start(&h).unwrap(), Some(10));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert_eq!(chunk_start(&h).unwrap_err().code, Code::RangeInvalid);
        h.insert(header::CONTENT_RANGE, HeaderValue::from_static("19-10"));
        assert!(content_range(&h).is_err());
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-9/100"),
        );
        assert_eq!(content_range(&h).unwrap(), Some((0, 10)));
    }

    #[test]
    fn empty_upload_range_is_0_0() {
        assert_eq!(upload_range(0), "0-0");
        assert_eq!(upload_range(10), "0-9");
    }
}
