//! Harness for the pull-through cache: an upstream wharf registry on a
//! loopback port (the test kit's), a redirector in front of it that answers
//! every blob GET with a 307 to the upstream's own port (as registries hand
//! blobs to a CDN) and can misbehave on demand, and the cache under test in
//! front of that.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};
use wharf_cache::{Cache, CacheConfig, Endpoint, UpstreamConfig};
use wharf_client::{Client, ClientConfig};
use wharf_oci::media_type::{DOCKER_MANIFEST, OCI_MANIFEST};
use wharf_oci::{Digest, RepositoryName, Target};
use wharf_registry::metrics::Metrics;
use wharf_registry::{Registry, RegistryConfig};
use wharf_storage::Store;
use wharf_testkit::image::{push, random_image, Artifact, Format};
use wharf_testkit::WharfRegistry;

/// The upstream's name as images use it; served by the cache for
/// `?ns=registry.k8s.io` and under `/v2/registry.k8s.io/…`.
pub const UPSTREAM_HOST: &str = "registry.k8s.io";

/// A one-layer image of `layer_len` bytes, unique to `seed`.
pub fn image(seed: u64, layer_len: usize, docker: bool) -> Artifact {
    let format = if docker { Format::Docker } else { Format::Oci };
    random_image(format, seed, layer_len)
}

/// Push `image` to `repo:tag` of the upstream.
pub async fn push_upstream(upstream: &WharfRegistry, repo: &str, tag: &str, image: &Artifact) {
    let client = Client::new(ClientConfig::default()).expect("build a client");
    let repo: RepositoryName = repo.parse().expect("repository");
    push(&client, &upstream.host, &repo, Some(tag), image).await;
}

/// How the redirector answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Proxy everything; blob GETs get a 307 to the upstream's port.
    Normal,
    /// Blob GETs: the right length of the wrong bytes.
    WrongDigest,
    /// Blob GETs: half the announced length, then the connection ends.
    Truncated,
    /// Blob GETs: a 307 to the same URL, forever.
    RedirectLoop,
    /// Blob GETs: a 307 to an ftp:// URL.
    FtpRedirect,
    /// Manifest GETs: a 6 MiB body.
    HugeManifest,
    /// Every request: no answer until the client gives up.
    Silent,
    /// Blob GETs: served here, half at once and the rest on [`Redirector::release`].
    HalfThenWait,
    /// Manifest GETs: held until [`Redirector::release_manifest`], then proxied.
    ManifestsWait,
}

struct RedirectorState {
    upstream: SocketAddr,
    mode: Mutex<Mode>,
    counts: Mutex<HashMap<String, usize>>,
    release: Notify,
    http: reqwest::Client,
}

/// The upstream as the cache sees it. Counts every request by
/// `METHOD path`.
pub struct Redirector {
    pub addr: SocketAddr,
    state: Arc<RedirectorState>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

type Body = BoxBody<Bytes, io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|n| match n {}).boxed()
}

fn is_blob_get(req: &Request<Incoming>) -> bool {
    req.method() == http::Method::GET && req.uri().path().contains("/blobs/sha256:")
}

fn is_manifest_get(req: &Request<Incoming>) -> bool {
    req.method() == http::Method::GET && req.uri().path().contains("/manifests/")
}

impl Redirector {
    pub async fn start(upstream: SocketAddr) -> Redirector {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(RedirectorState {
            upstream,
            mode: Mutex::new(Mode::Normal),
            counts: Mutex::new(HashMap::new()),
            release: Notify::new(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        });
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = {
            let state = state.clone();
            let tasks = tasks.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let state = state.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(state, req).await) }
                    });
                    let task = tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                    tasks.lock().unwrap().push(task.abort_handle());
                }
            })
        };
        Redirector {
            addr,
            state,
            tasks,
            accept,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Requests seen for `METHOD path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        let key = format!("{method} {path}");
        *self.state.counts.lock().unwrap().get(&key).unwrap_or(&0)
    }

    /// Every request seen.
    pub fn total(&self) -> usize {
        self.state.counts.lock().unwrap().values().sum()
    }

    /// Let a [`Mode::HalfThenWait`] response finish.
    pub fn release(&self) {
        self.state.release.notify_waiters();
    }

    /// Let one held [`Mode::ManifestsWait`] request go on, whether it is
    /// already waiting or about to.
    pub fn release_manifest(&self) {
        self.state.release.notify_one();
    }

    /// Stop answering: the listener closes and open connections drop.
    pub fn stop(&self) {
        self.accept.abort();
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(state: Arc<RedirectorState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    *state
        .counts
        .lock()
        .unwrap()
        .entry(format!("{} {path}", req.method()))
        .or_default() += 1;
    let mode = *state.mode.lock().unwrap();
    let upstream = format!("http://{}{}", state.upstream, path);
    match mode {
        Mode::Silent => std::future::pending().await,
        Mode::WrongDigest if is_blob_get(&req) => {
            let real = fetch(&state, &upstream).await;
            let mut wrong = real.to_vec();
            if let Some(b) = wrong.last_mut() {
                *b ^= 0xff;
            }
            Response::new(full(wrong))
        }
        Mode::Truncated if is_blob_get(&req) => {
            let real = fetch(&state, &upstream).await;
            let half = real.slice(..real.len() / 2);
            let body = stream::iter([Ok::<_, io::Error>(Frame::data(half))]);
            Response::builder()
                .header("content-length", real.len())
                .body(StreamBody::new(body).boxed())
                .unwrap()
        }
        Mode::RedirectLoop if is_blob_get(&req) => redirect(&path),
        Mode::FtpRedirect if is_blob_get(&req) => redirect(&format!("ftp://127.0.0.1{path}")),
        Mode::HugeManifest if is_manifest_get(&req) => Response::builder()
            .header("content-type", OCI_MANIFEST)
            .body(full(vec![b' '; 6 * 1024 * 1024]))
            .unwrap(),
        Mode::HalfThenWait if is_blob_get(&req) => half_then_wait(state.clone(), &upstream).await,
        Mode::ManifestsWait if is_manifest_get(&req) => {
            state.release.notified().await;
            proxy(&state, req, &upstream).await
        }
        _ if is_blob_get(&req) => redirect(&upstream),
        _ => proxy(&state, req, &upstream).await,
    }
}

fn redirect(location: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::TEMPORARY_REDIRECT)
        .header("location", location)
        .body(full(Bytes::new()))
        .unwrap()
}

async fn fetch(state: &RedirectorState, url: &str) -> Bytes {
    state
        .http
        .get(url)
        .send()
        .await
        .expect("upstream answers")
        .bytes()
        .await
        .expect("upstream body")
}

async fn half_then_wait(state: Arc<RedirectorState>, url: &str) -> Response<Body> {
    let real = fetch(&state, url).await;
    let half = real.len() / 2;
    let (first, rest) = (real.slice(..half), real.slice(half..));
    let body = stream::unfold(0, move |step| {
        let (state, first, rest) = (state.clone(), first.clone(), rest.clone());
        async move {
            match step {
                0 => Some((Ok::<_, io::Error>(Frame::data(first)), 1)),
                1 => {
                    state.release.notified().await;
                    Some((Ok(Frame::data(rest)), 2))
                }
                _ => None,
            }
        }
    });
    Response::builder()
        .header("content-length", real.len())
        .body(StreamBody::new(body).boxed())
        .unwrap()
}

async fn proxy(state: &RedirectorState, req: Request<Incoming>, url: &str) -> Response<Body> {
    let mut forward = state.http.request(req.method().clone(), url);
    for (name, value) in req.headers() {
        if name != http::header::HOST {
            forward = forward.header(name, value);
        }
    }
    let body = req
        .into_body()
        .collect()
        .await
        .expect("request body")
        .to_bytes();
    let response = forward.body(body).send().await.expect("upstream answers");
    let mut out = Response::builder().status(response.status());
    for (name, value) in response.headers() {
        out = out.header(name, value);
    }
    let bytes = response.bytes().await.expect("upstream body");
    out.body(full(bytes)).unwrap()
}

/// The cache under test, listening on a loopback port.
pub struct CacheServer {
    pub addr: SocketAddr,
    pub store: Store,
    /// The storage root.
    pub root: std::path::PathBuf,
    pub metrics: Arc<Metrics>,
    pub http: reqwest::Client,
    _registry: WharfRegistry,
}

pub struct CacheOptions {
    pub tag_ttl: Duration,
    pub read_timeout: Duration,
    pub allow_push: bool,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            tag_ttl: Duration::from_secs(600),
            read_timeout: Duration::from_secs(5),
            allow_push: false,
        }
    }
}

impl CacheServer {
    pub async fn start(upstream: SocketAddr, options: CacheOptions) -> CacheServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_fs(dir.path().join("store")).expect("store");
        let mut u = UpstreamConfig::new(UPSTREAM_HOST);
        u.endpoint = Some(Endpoint::parse(&format!("http://{upstream}")).unwrap());
        u.tag_ttl = options.tag_ttl;
        u.allow_push = options.allow_push;
        let mut config = CacheConfig::new(vec![u]);
        config.read_timeout = options.read_timeout;
        config.connect_timeout = Duration::from_secs(2);
        config.retry.max_attempts = 2;
        config.retry.initial_backoff = Duration::from_millis(10);
        config.max_manifest_bytes = 1024 * 1024;
        let metrics = Arc::new(Metrics::default());
        let cache = Cache::new(store.clone(), metrics.clone(), &config).expect("cache");
        let registry = Registry::with_upstream(
            store.clone(),
            RegistryConfig::default(),
            metrics.clone(),
            Arc::new(cache),
        );
        let root = dir.path().join("store");
        let served = WharfRegistry::serve_in(dir, registry).await;
        CacheServer {
            addr: served.addr(),
            store,
            root,
            metrics,
            // A requester must never be handed a redirect: do not follow any.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            _registry: served,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header("accept", format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"))
            .send()
            .await
            .expect("the cache answers")
    }

    /// GET and read the whole body; `Err` when the body broke off.
    pub async fn get_body(&self, path: &str) -> (StatusCode, Result<Bytes, reqwest::Error>) {
        let r = self.get(path).await;
        (r.status(), r.bytes().await)
    }

    pub async fn has_blob(&self, digest: &str) -> bool {
        let d: Digest = digest.parse().unwrap();
        self.store.backend().blob_size(&d).await.unwrap().is_some()
    }

    /// The cached repository that mirrors `repo` upstream.
    pub fn repo(&self, repo: &str) -> RepositoryName {
        format!("{UPSTREAM_HOST}/{repo}").parse().unwrap()
    }

    /// Pretend the manifest was last pulled `ago` (its revision's
    /// modification time, which the cache refreshes on every pull).
    pub fn last_pulled(&self, repo: &str, digest: &str, ago: Duration) {
        let key = wharf_storage::layout::revision(&self.repo(repo), &digest.parse().unwrap());
        let file = std::fs::File::options()
            .write(true)
            .open(self.root.join(key))
            .expect("the revision exists");
        file.set_modified(std::time::SystemTime::now() - ago)
            .expect("set the modification time");
    }

    pub async fn has_manifest(&self, repo: &str, digest: &str) -> bool {
        let target = Target::Digest(digest.parse().unwrap());
        self.store
            .manifest_get(&self.repo(repo), &target)
            .await
            .is_ok()
    }

    /// Uploads in the storage: a failed download must leave none behind.
    pub async fn uploads(&self) -> usize {
        self.store.backend().upload_list().await.unwrap().len()
    }

    pub fn metric(&self, name: &str) -> u64 {
        let text = self.metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in the metrics:\n{text}"))
    }
}

/// The spec error codes in a JSON error body.
pub fn error_codes(body: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(body).expect("a JSON error body");
    v["errors"]
        .as_array()
        .expect("an errors array")
        .iter()
        .map(|e| e["code"].as_str().unwrap_or_default().to_string())
        .collect()
}
