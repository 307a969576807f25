//! Shared harness for the registry's HTTP-level tests: the test kit's
//! in-process server per test, a captured-response type, spec error-body assertions and the
//! push helpers every suite needs.
//!
//! Each test file uses a different subset of these helpers.
#![allow(dead_code)]

pub mod content;
pub mod raw;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use wharf_registry::RegistryConfig;
use wharf_storage::Store;
use wharf_testkit::{sha256_digest, WharfRegistry};

pub use content::*;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ND_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_LAYER_ND: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The `code` values the spec's "Error Codes" table allows (code-1 … code-14).
pub const SPEC_ERROR_CODES: [&str; 14] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// `WHARF_TEST_STORAGE=s3` runs the suites against S3 storage on a Garage
/// server the test binary starts (scripts/test.sh runs the conformance
/// suites both ways).
pub fn s3_selected() -> bool {
    std::env::var("WHARF_TEST_STORAGE").as_deref() == Ok("s3")
}

/// An empty registry in the shared Garage bucket, under a prefix of its own.
async fn s3_store() -> Store {
    let garage = wharf_storage_s3::garage::Garage::shared();
    let prefix = format!("test-{}", uuid::Uuid::new_v4());
    let backend = wharf_storage_s3::S3Backend::open(garage.s3_config(&prefix))
        .await
        .expect("open the S3 bucket");
    Store::new(std::sync::Arc::new(backend))
}

/// The test kit's in-process registry, with the spec-level request
/// helpers the conformance suites share. Dropping it signals shutdown.
pub struct TestRegistry {
    base: Url,
    client: reqwest::Client,
    served: WharfRegistry,
}

impl TestRegistry {
    pub async fn start() -> TestRegistry {
        TestRegistry::start_with(RegistryConfig::default()).await
    }

    pub async fn start_with(config: RegistryConfig) -> TestRegistry {
        TestRegistry::start_with_client(config, reqwest::Client::new()).await
    }

    /// `client` sends every request of the helpers (e.g. with a default
    /// `Authorization` header).
    pub async fn start_with_client(
        config: RegistryConfig,
        client: reqwest::Client,
    ) -> TestRegistry {
        let served = if s3_selected() {
            WharfRegistry::start_on_store(s3_store().await, config).await
        } else {
            WharfRegistry::start_with(config).await
        };
        TestRegistry {
            base: Url::parse(&served.url("/")).expect("base URL"),
            client,
            served,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.served.addr()
    }

    /// The temporary directory that holds the store (as `<dir>/store`) and
    /// nothing else.
    pub fn dir(&self) -> &Path {
        self.served.dir()
    }

    pub fn store_root(&self) -> PathBuf {
        self.served.store_root()
    }

    /// `path` may carry a query string.
    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("valid request path")
    }

    /// Resolve a `Location` header, which the spec lets be absolute or relative.
    pub fn resolve(&self, location: &str) -> Url {
        self.base
            .join(location)
            .expect("Location must be a valid URL reference")
    }

    /// Signal shutdown and wait for `serve` to return.
    pub async fn stop(self) -> io::Result<()> {
        self.served.stop().await
    }

    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.client.request(method, url)
    }

    pub async fn send(&self, request: RequestBuilder) -> Resp {
        let response = request.send().await.expect("the registry must answer");
        Resp::read(response).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.request(Method::GET, self.url(path))).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.send(self.request(Method::HEAD, self.url(path))).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.request(Method::DELETE, self.url(path)))
            .await
    }

    pub async fn get_url(&self, url: Url) -> Resp {
        self.send(self.request(Method::GET, url)).await
    }

    /// end-4a: open an upload; returns the upload URL.
    pub async fn start_upload(&self, repo: &str) -> Url {
        self.start_upload_at(&format!("/v2/{repo}/blobs/uploads/"))
            .await
    }

    /// end-4a/end-4c: POST to `path_and_query` (which may name a
    /// `digest-algorithm`); returns the upload URL.
    pub async fn start_upload_at(&self, path_and_query: &str) -> Url {
        let resp = self
            .send(
                self.request(Method::POST, self.url(path_and_query))
                    .header("Content-Length", "0"),
            )
            .await;
        resp.expect_status(202, "end-4a: POST to open an upload must be 202 Accepted");
        self.resolve(resp.location())
    }

    /// PATCH one chunk with an explicit `Content-Range`.
    pub async fn patch_chunk(&self, upload: &Url, start: usize, data: &[u8]) -> Resp {
        let end = start + data.len() - 1;
        self.send(
            self.request(Method::PATCH, upload.clone())
                .header("Content-Type", OCTET_STREAM)
                .header("Content-Range", format!("{start}-{end}"))
                .body(data.to_vec()),
        )
        .await
    }

    /// The closing PUT of an upload with `?digest=` and an optional
    /// final body.
    pub async fn close_upload(&self, upload: &Url, digest: &str, body: Vec<u8>) -> Resp {
        self.send(
            self.request(Method::PUT, with_query(upload, "digest", digest))
                .header("Content-Type", OCTET_STREAM)
                .body(body),
        )
        .await
    }

    /// Push a blob by POST then PUT (end-4a, end-6) and assert it was created.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        self.push_blob_as(repo, data, &digest).await;
        digest
    }

    /// POST then PUT; a non-sha256 digest opens the upload with
    /// `?digest-algorithm=` as end-4c advises.
    pub async fn push_blob_as(&self, repo: &str, data: &[u8], digest: &str) {
        let upload = match digest.split_once(':') {
            Some(("sha256", _)) | None => self.start_upload(repo).await,
            Some((algorithm, _)) => {
                let path = format!("/v2/{repo}/blobs/uploads/?digest-algorithm={algorithm}");
                self.start_upload_at(&path).await
            }
        };
        let resp = self.close_upload(&upload, digest, data.to_vec()).await;
        resp.expect_status(
            201,
            "end-6: a monolithic PUT of a valid blob must be 201 Created",
        );
    }

    pub async fn push_blobs(&self, repo: &str, blobs: &[&Blob]) {
        for blob in blobs {
            self.push_blob_as(repo, &blob.data, &blob.digest).await;
        }
    }

    /// end-7: PUT a manifest and return the raw response.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        self.send(
            self.request(
                Method::PUT,
                self.url(&format!("/v2/{repo}/manifests/{reference}")),
            )
            .header("Content-Type", media_type)
            .body(body.to_vec()),
        )
        .await
    }

    /// PUT a manifest and assert 201 Created.
    pub async fn push_manifest(&self, repo: &str, reference: &str, manifest: &Manifest) -> Resp {
        let resp = self
            .put_manifest(repo, reference, &manifest.media_type, &manifest.body)
            .await;
        resp.expect_status(201, "end-7: a valid manifest PUT must be 201 Created");
        resp
    }

    /// Push an image's blobs and its manifest under `reference`.
    pub async fn push_image(&self, repo: &str, reference: &str, image: &Image) -> Resp {
        self.push_blobs(repo, &image.blobs()).await;
        self.push_manifest(repo, reference, &image.manifest).await
    }

    /// Push each child image by digest, then the index under `reference`.
    pub async fn push_index(
        &self,
        repo: &str,
        reference: &str,
        children: &[Image],
        index: &Manifest,
    ) -> Resp {
        for child in children {
            self.push_image(repo, &child.manifest.digest, child).await;
        }
        self.push_manifest(repo, reference, index).await
    }
}

/// `url` with one more query parameter, keeping any the registry put there.
pub fn with_query(url: &Url, key: &str, value: &str) -> Url {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair(key, value);
    url
}

/// A fully read response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub async fn read(response: reqwest::Response) -> Resp {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("read the response body");
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header value"))
    }

    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ASCII header value"))
            .collect()
    }

    pub fn location(&self) -> &str {
        self.header("Location")
            .unwrap_or_else(|| panic!("response {} must carry a Location header", self.status))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body must be JSON ({e}): {}", self.text()))
    }

    pub fn expect_status(&self, status: u16, why: &str) -> &Resp {
        assert_eq!(self.status(), status, "{why} (body: {})", self.text());
        self
    }

    pub fn expect_status_in(&self, allowed: &[u16], why: &str) -> &Resp {
        assert!(
            allowed.contains(&self.status()),
            "{why}: got {} , allowed {allowed:?} (body: {})",
            self.status(),
            self.text()
        );
        self
    }

    pub fn expect_header(&self, name: &str, value: &str, why: &str) -> &Resp {
        assert_eq!(self.header(name), Some(value), "{why}");
        self
    }

    /// The spec's error body: `{"errors":[{"code":…}]}`, every code from
    /// the spec's table and at least one of them in `expected`.
    pub fn expect_error(&self, status: u16, expected: &[&str], why: &str) -> &Resp {
        self.expect_status(status, why);
        let codes = error_codes(self);
        assert!(
            codes.iter().any(|c| expected.contains(&c.as_str())),
            "{why}: error codes {codes:?} must include one of {expected:?}"
        );
        self
    }
}

/// Every `code` of a spec error body, asserting the body's shape on the way.
pub fn error_codes(resp: &Resp) -> Vec<String> {
    let body = resp.json();
    let errors = body["errors"].as_array().unwrap_or_else(|| {
        panic!(
            "Error Codes: a JSON error body must have an \"errors\" array: {}",
            resp.text()
        )
    });
    assert!(
        !errors.is_empty(),
        "Error Codes: the errors array must not be empty"
    );
    errors.iter().map(error_code).collect()
}

fn error_code(entry: &serde_json::Value) -> String {
    let code = entry["code"]
        .as_str()
        .unwrap_or_else(|| panic!("Error Codes: each error needs a string \"code\": {entry}"));
    assert!(
        SPEC_ERROR_CODES.contains(&code),
        "Error Codes: code {code:?} must be one of the spec's table"
    );
    if let Some(message) = entry.get("message") {
        assert!(
            message.is_string(),
            "Error Codes: \"message\" must be a string when present: {entry}"
        );
    }
    code.to_string()
}

/// Parse `Link: <url>; rel="next"` and return the URL.
pub fn next_link(resp: &Resp) -> Option<String> {
    let link = resp.header("Link")?;
    assert!(
        link.contains("rel=\"next\""),
        "end-8b: a Link header must use the relation type rel=\"next\": {link}"
    );
    let start = link.find('<').expect("Link must hold <url>") + 1;
    let end = link.find('>').expect("Link must hold <url>");
    Some(link[start..end].to_string())
}

/// The `tags` array of a tags-list response.
pub fn tags_of(resp: &Resp) -> Vec<String> {
    let body = resp.json();
    match &body["tags"] {
        serde_json::Value::Null => Vec::new(),
        tags => tags
            .as_array()
            .expect("end-8a: \"tags\" must be an array")
            .iter()
            .map(|t| t.as_str().expect("tags are strings").to_string())
            .collect(),
    }
}
