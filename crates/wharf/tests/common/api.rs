//! A minimal OCI Distribution client used to push test data directly and to
//! check what the registry stores, independently of the container tools.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use serde_json::Value;

use wharf_oci::media_type::{DOCKER_MANIFEST_LIST, MANIFEST_ACCEPT, OCI_INDEX, OCI_MANIFEST};
use wharf_testkit::image::Artifact;
use wharf_testkit::sha256_digest;

/// A request that failed: the HTTP status when there was an answer, and what happened.
#[derive(Debug)]
pub struct ApiError {
    pub status: Option<u16>,
    pub message: String,
}

impl ApiError {
    fn failed(message: String) -> ApiError {
        ApiError {
            status: None,
            message,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A manifest as served by the registry.
pub struct FetchedManifest {
    pub content_type: String,
    /// The `Docker-Content-Digest` header.
    pub digest: String,
    pub body: Vec<u8>,
}

pub struct Api {
    client: Client,
    base: String,
}

impl Api {
    /// A client for the registry at `base` (e.g. `http://127.0.0.1:5000`).
    pub fn new(base: &str) -> Api {
        let client = Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client");
        Api {
            client,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Resolves a `Location` header, which may be relative or absolute.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            self.url(location)
        }
    }

    /// GET a manifest by tag or digest.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest, ApiError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let what = format!("GET {url}");
        let request = self
            .client
            .get(&url)
            .header(ACCEPT, MANIFEST_ACCEPT.join(", "));
        let resp = send(request, &what, &[200])?;
        Ok(FetchedManifest {
            content_type: header(&resp, CONTENT_TYPE.as_str()),
            digest: header(&resp, "docker-content-digest"),
            body: read_body(resp, &what)?,
        })
    }

    /// GET a blob.
    pub fn blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>, ApiError> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let what = format!("GET {url}");
        let resp = send(self.client.get(&url), &what, &[200])?;
        read_body(resp, &what)
    }

    /// HEAD a blob: whether `repo` serves it.
    pub fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool, ApiError> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = send(self.client.head(&url), &format!("HEAD {url}"), &[200, 404])?;
        Ok(resp.status() == 200)
    }

    /// DELETE a manifest by tag or digest (202).
    pub fn delete_manifest(&self, repo: &str, reference: &str) -> Result<(), ApiError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        send(self.client.delete(&url), &format!("DELETE {url}"), &[202]).map(drop)
    }

    /// All repository names, following `Link` pagination.
    pub fn catalog(&self) -> Result<Vec<String>, ApiError> {
        self.paginated("/v2/_catalog?n=1000", "repositories")
    }

    /// All tags of `repo`, following `Link` pagination.
    pub fn tags(&self, repo: &str) -> Result<Vec<String>, ApiError> {
        self.paginated(&format!("/v2/{repo}/tags/list?n=1000"), "tags")
    }

    fn paginated(&self, first: &str, field: &str) -> Result<Vec<String>, ApiError> {
        let mut items = Vec::new();
        let mut next = Some(self.url(first));
        while let Some(url) = next.take() {
            let what = format!("GET {url}");
            let resp = send(self.client.get(&url), &what, &[200])?;
            next = next_link(&resp).map(|link| self.absolute(&link));
            let body: Value = serde_json::from_slice(&read_body(resp, &what)?)
                .map_err(|e| ApiError::failed(format!("{what}: {e}")))?;
            // A repository without tags may answer `"tags": null`.
            if let Some(list) = body[field].as_array() {
                items.extend(list.iter().filter_map(|v| v.as_str().map(str::to_owned)));
            }
        }
        Ok(items)
    }

    /// POST to the uploads endpoint of `repo` (with `query`, e.g. a mount
    /// request); returns the status (201 or 202) and the absolute `Location`.
    fn post_upload(&self, repo: &str, query: &str) -> Result<(u16, String), ApiError> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/{query}"));
        let request = self.client.post(&url).header(CONTENT_LENGTH, 0);
        let resp = send(request, &format!("POST {url}"), &[201, 202])?;
        let location = self.absolute(&header(&resp, LOCATION.as_str()));
        Ok((resp.status().as_u16(), location))
    }

    /// Starts an upload session and returns its absolute location.
    pub fn start_upload(&self, repo: &str) -> Result<String, ApiError> {
        match self.post_upload(repo, "")? {
            (202, location) => Ok(location),
            (status, _) => Err(ApiError::failed(format!(
                "POST /v2/{repo}/blobs/uploads/: expected 202, got {status}"
            ))),
        }
    }

    /// Bytes an upload session holds (`GET` of its location, `Range: 0-<last>`).
    pub fn upload_size(&self, location: &str) -> Result<u64, ApiError> {
        let what = format!("GET {location}");
        let resp = send(self.client.get(location), &what, &[204])?;
        let range = header(&resp, "range");
        let last: u64 = range
            .strip_prefix("0-")
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| ApiError::failed(format!("{what}: bad Range {range:?}")))?;
        Ok(if last == 0 { 0 } else { last + 1 })
    }

    /// Closes an upload session with `PUT ?digest=`, sending `bytes` (may be empty).
    fn finish_upload(&self, location: &str, digest: &str, bytes: &[u8]) -> Result<(), ApiError> {
        let url = with_query(location, "digest", digest);
        let request = self
            .client
            .put(&url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, bytes.len())
            .body(bytes.to_vec());
        send(request, &format!("PUT {url}"), &[201]).map(drop)
    }

    /// Monolithic upload: POST, then one PUT with the whole body. Returns the digest.
    pub fn push_blob_monolithic(&self, repo: &str, bytes: &[u8]) -> Result<String, ApiError> {
        let digest = sha256_digest(bytes);
        let location = self.start_upload(repo)?;
        self.finish_upload(&location, &digest, bytes)?;
        Ok(digest)
    }

    /// Chunked upload: POST, one PATCH per chunk, then PUT with the digest.
    pub fn push_blob_chunked(
        &self,
        repo: &str,
        bytes: &[u8],
        chunk_size: usize,
    ) -> Result<String, ApiError> {
        let digest = sha256_digest(bytes);
        let mut location = self.start_upload(repo)?;
        let mut offset = 0;
        for chunk in bytes.chunks(chunk_size) {
            let end = offset + chunk.len() - 1;
            let request = self
                .client
                .patch(&location)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, format!("{offset}-{end}"))
                .body(chunk.to_vec());
            let resp = send(request, &format!("PATCH {location}"), &[202])?;
            location = self.absolute(&header(&resp, LOCATION.as_str()));
            offset += chunk.len();
        }
        self.finish_upload(&location, &digest, &[])?;
        Ok(digest)
    }

    /// Cross-repository mount of `bytes` (already in `from`). A registry may
    /// answer 202 with a plain upload session instead; then the blob is uploaded there.
    pub fn mount_blob(&self, repo: &str, from: &str, bytes: &[u8]) -> Result<String, ApiError> {
        let digest = sha256_digest(bytes);
        let (status, location) = self.post_upload(repo, &format!("?mount={digest}&from={from}"))?;
        if status == 202 {
            self.finish_upload(&location, &digest, bytes)?;
        }
        Ok(digest)
    }

    /// PUT a manifest under a tag or digest; the returned digest must match.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), ApiError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let what = format!("PUT {url}");
        let request = self
            .client
            .put(&url)
            .header(CONTENT_TYPE, media_type)
            .body(bytes.to_vec());
        let resp = send(request, &what, &[201])?;
        let returned = header(&resp, "docker-content-digest");
        let expected = sha256_digest(bytes);
        if !returned.is_empty() && returned != expected {
            return Err(ApiError::failed(format!(
                "{what}: Docker-Content-Digest {returned}, expected {expected}"
            )));
        }
        Ok(())
    }

    /// Fetches `reference` in `repo` and checks it completely: the body hashes
    /// to `Docker-Content-Digest`, and every manifest and blob it references is
    /// served with the right hash and size. Returns the manifest digest;
    /// problems go to `findings`.
    pub fn verify_tree(
        &self,
        repo: &str,
        reference: &str,
        findings: &mut Findings,
    ) -> Option<String> {
        let fetched = match self.manifest(repo, reference) {
            Ok(fetched) => fetched,
            Err(e) => {
                findings.problems.push(e.to_string());
                return None;
            }
        };
        let actual = sha256_digest(&fetched.body);
        let at = format!("{repo}:{reference}");
        if fetched.digest != actual {
            findings.problems.push(format!(
                "{at}: Docker-Content-Digest {} but body hashes to {actual}",
                fetched.digest
            ));
        }
        if reference.starts_with("sha256:") && reference != actual {
            findings
                .problems
                .push(format!("{at}: body hashes to {actual}"));
        }
        let manifest: Value = match serde_json::from_slice(&fetched.body) {
            Ok(value) => value,
            Err(e) => {
                findings
                    .problems
                    .push(format!("{at}: manifest is not JSON: {e}"));
                return Some(actual);
            }
        };
        if [OCI_INDEX, DOCKER_MANIFEST_LIST].contains(&fetched.content_type.as_str()) {
            for (child, _) in descriptors(&manifest["manifests"]) {
                self.verify_tree(repo, &child, findings);
            }
        } else {
            let mut blobs = descriptors(&manifest["layers"]);
            blobs.extend(descriptors(&manifest["config"]));
            for (digest, size) in blobs {
                self.verify_blob(repo, &digest, size, findings);
            }
        }
        Some(actual)
    }

    /// The blob is served with the right hash and size (checked once per walk).
    pub fn verify_blob(&self, repo: &str, digest: &str, size: u64, findings: &mut Findings) {
        if !findings
            .checked_blobs
            .insert((repo.to_owned(), digest.to_owned()))
        {
            return;
        }
        match self.blob(repo, digest) {
            Err(e) => findings.problems.push(e.to_string()),
            Ok(bytes) => {
                let actual = sha256_digest(&bytes);
                if actual != digest || bytes.len() as u64 != size {
                    findings.problems.push(format!(
                        "{repo}@{digest}: served {} bytes hashing to {actual}, expected {size} bytes",
                        bytes.len()
                    ));
                }
            }
        }
    }
}

/// What a verification walk found. Blobs already checked are remembered, so
/// a walk over many manifests sharing layers fetches each blob once per repository.
#[derive(Default)]
pub struct Findings {
    pub problems: Vec<String>,
    checked_blobs: BTreeSet<(String, String)>,
}

/// `(digest, size)` of a descriptor or of each descriptor in an array.
pub fn descriptors(value: &Value) -> Vec<(String, u64)> {
    let one = |d: &Value| {
        Some((
            d["digest"].as_str()?.to_owned(),
            d["size"].as_u64().unwrap_or(0),
        ))
    };
    match value {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        Value::Object(_) => one(value).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn header(resp: &Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Sends `request` (described by `what`, e.g. `PUT <url>`) and checks that
/// the answer has one of the `wanted` statuses.
fn send(request: RequestBuilder, what: &str, wanted: &[u16]) -> Result<Response, ApiError> {
    let resp = request
        .send()
        .map_err(|e| ApiError::failed(format!("{what}: {e}")))?;
    let status = resp.status();
    if wanted.contains(&status.as_u16()) {
        return Ok(resp);
    }
    let body = resp.text().unwrap_or_default();
    Err(ApiError {
        status: Some(status.as_u16()),
        message: format!("{what}: expected {wanted:?}, got {status}: {body}"),
    })
}

fn read_body(resp: Response, what: &str) -> Result<Vec<u8>, ApiError> {
    resp.bytes()
        .map(|b| b.to_vec())
        .map_err(|e| ApiError::failed(format!("{what}: reading the body: {e}")))
}

fn with_query(url: &str, key: &str, value: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{key}={value}")
}

/// The target of a `Link: <url>; rel="next"` header.
fn next_link(resp: &Response) -> Option<String> {
    let link = resp.headers().get("link")?.to_str().ok()?;
    let start = link.find('<')? + 1;
    let end = link.find('>')?;
    Some(link[start..end].to_owned())
}

/// A small OCI image manifest over `config` and `layers`.
pub fn oci_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}"#,
                sha256_digest(l),
                l.len()
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        sha256_digest(config),
        config.len(),
        layers.join(",")
    )
    .into_bytes()
}

/// Push `artifact` (children of an index first) as `repo:tag`.
pub fn push_artifact(api: &Api, repo: &str, tag: &str, artifact: &Artifact) {
    for child in &artifact.children {
        push_artifact(api, repo, &child.digest().to_string(), child);
    }
    for blob in &artifact.blobs {
        api.push_blob_monolithic(repo, &blob.bytes)
            .expect("push blob");
    }
    api.put_manifest(repo, tag, artifact.media_type, &artifact.manifest)
        .expect("push manifest");
}

/// Push blobs and manifest; returns the manifest digest.
pub fn push_image(
    api: &Api,
    repo: &str,
    reference: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> Result<String, ApiError> {
    api.push_blob_monolithic(repo, config)?;
    for l in layers {
        api.push_blob_monolithic(repo, l)?;
    }
    let manifest = oci_manifest(config, layers);
    api.put_manifest(repo, reference, OCI_MANIFEST, &manifest)?;
    Ok(sha256_digest(&manifest))
}

/// [`push_image`] while garbage collection may run with no grace period: a
/// blob collected between its upload and the manifest makes the manifest
/// PUT fail with MANIFEST_BLOB_UNKNOWN (400), and a client pushes again.
pub fn push_image_while_collecting(
    api: &Api,
    repo: &str,
    reference: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> String {
    for _ in 0..20 {
        match push_image(api, repo, reference, config, layers) {
            Ok(digest) => return digest,
            Err(e) if e.status == Some(400) => continue,
            Err(e) => panic!("push {repo}:{reference} failed: {e}"),
        }
    }
    panic!("push {repo}:{reference} kept losing its blobs to garbage collection")
}

/// Push an image the way a client that checks first does: each blob the
/// registry already serves (HEAD) is skipped, the rest are uploaded, then the
/// manifest goes up. Garbage collection may remove a blob between the HEAD
/// and the manifest; the PUT then fails with MANIFEST_BLOB_UNKNOWN (400) and
/// the client starts over. Returns the manifest digest and how many blobs
/// were skipped.
pub fn push_image_skipping_present(
    api: &Api,
    repo: &str,
    reference: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> (String, usize) {
    let manifest = oci_manifest(config, layers);
    let mut skipped = 0;
    for _ in 0..20 {
        for blob in std::iter::once(config).chain(layers.iter().copied()) {
            let present = api
                .blob_exists(repo, &sha256_digest(blob))
                .unwrap_or_else(|e| panic!("{e}"));
            if present {
                skipped += 1;
            } else {
                api.push_blob_monolithic(repo, blob)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        match api.put_manifest(repo, reference, OCI_MANIFEST, &manifest) {
            Ok(()) => return (sha256_digest(&manifest), skipped),
            Err(e) if e.status == Some(400) => continue,
            Err(e) => panic!("push {repo}:{reference} failed: {e}"),
        }
    }
    panic!("push {repo}:{reference} kept losing its blobs to garbage collection")
}
