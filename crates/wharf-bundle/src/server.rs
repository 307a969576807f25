//! A verified bundle served as a read-only registry on loopback, for a
//! tool that reads only from a registry: `wharf load --containers-storage`
//! runs `skopeo copy --preserve-digests` from here per image. (`wharf load
//! --to` needs no server: it reads the bundle through
//! [`crate::BundleSource`].) Only what copying needs is served: `/v2/`,
//! manifests by digest, blobs by digest (read by offset from the tar, one
//! chunk at a time).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use wharf_oci::name::host_component;
use wharf_oci::{Digest, Reference, Target};

use crate::reader::{Bundle, BundleImage, Location};
use crate::source::read_ahead;

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A running loopback registry over one bundle; stopped on drop.
pub struct BundleServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Drop for BundleServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl BundleServer {
    /// Serve `bundle` on 127.0.0.1 (a free port).
    pub async fn start(bundle: Arc<Bundle>) -> std::io::Result<BundleServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stopped.changed() => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let bundle = bundle.clone();
                let service = service_fn(move |req| {
                    let bundle = bundle.clone();
                    async move { Ok::<_, Infallible>(handle(&bundle, &req)) }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(BundleServer { addr, stop })
    }

    /// `127.0.0.1:port`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Where this source serves `image`: by digest, under a path that keeps
    /// its name readable in logs.
    pub fn reference(&self, image: &BundleImage) -> Reference {
        let repo = host_component(image.name.host())
            .ok()
            .and_then(|h| image.name.repository().prefixed(&h).ok())
            .unwrap_or_else(|| image.name.repository().clone());
        Reference::new(
            &self.host(),
            repo,
            Target::Digest(image.manifest.digest.clone()),
        )
    }
}

/// One request. The repository in the path does not matter: a bundle is
/// one content-addressed store.
fn handle(bundle: &Arc<Bundle>, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the bundle is read-only",
        );
    }
    if path == "/v2/" || path == "/v2" {
        return json(StatusCode::OK, "{}");
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such path");
    };
    if let Some((_, reference)) = rest.rsplit_once("/manifests/") {
        return manifest(bundle, reference, head);
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        return blob(bundle, digest, head);
    }
    error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such path")
}

fn manifest(bundle: &Bundle, reference: &str, head: bool) -> Response<Body> {
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "the bundle has no such manifest (only digests are served)",
        )
    };
    let Ok(digest) = reference.parse::<Digest>() else {
        return unknown();
    };
    let (Some(media_type), Ok(Some(bytes))) =
        (bundle.manifest_type(&digest), bundle.manifest(&digest))
    else {
        return unknown();
    };
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", media_type)
        .header("content-length", bytes.len())
        .header("docker-content-digest", digest.to_string());
    let body = if head { Bytes::new() } else { bytes };
    builder.body(full(body)).expect("a valid response")
}

fn blob(bundle: &Arc<Bundle>, digest: &str, head: bool) -> Response<Body> {
    let Ok(digest) = digest.parse::<Digest>() else {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "not a digest");
    };
    let Some(location) = bundle.blob(&digest) else {
        let message = if bundle.is_omitted(&digest) {
            format!(
                "{digest} is left to the base bundle{}: load that first",
                bundle.base().map(|b| format!(" {b}")).unwrap_or_default()
            )
        } else {
            format!("{digest} is not in the bundle")
        };
        return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", &message);
    };
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream")
        .header("content-length", location.size)
        .header("docker-content-digest", digest.to_string());
    if head {
        return builder.body(full(Bytes::new())).expect("a valid response");
    }
    let body = chunks(bundle.clone(), location);
    builder.body(body).expect("a valid response")
}

/// The blob's bytes as a response body.
fn chunks(bundle: Arc<Bundle>, location: Location) -> Body {
    let frames = read_ahead(bundle, location).map(|chunk| chunk.map(Frame::data));
    BodyExt::boxed_unsync(StreamBody::new(frames))
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(Bytes::from_static(body.as_bytes())))
        .expect("a valid response")
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(Bytes::from(body)))
        .expect("a valid response")
}
