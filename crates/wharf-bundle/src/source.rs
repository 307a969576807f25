//! A verified bundle served as a read-only registry on loopback, so that
//! `wharf load --to` is a copy like any other: `wharf_transfer` moves it with
//! the same parallelism, HEAD-before-upload, mounts and reports as `wharf
//! sync`. Only what copying needs is served: `/v2/`, manifests by digest,
//! blobs by digest (read by offset from the tar, one chunk at a time).
//! [`BundleBlobs`] hands the same blobs to the copy directly, so that the
//! bytes of `wharf load` skip this server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use wharf_oci::name::host_component;
use wharf_oci::{Digest, Reference, Target};
use wharf_transfer::{BlobBody, LocalBlobs};

use crate::reader::{Bundle, BundleImage, Location};

const CHUNK: u64 = 1 << 20;

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A running loopback registry over one bundle; stopped on drop.
pub struct BundleSource {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Drop for BundleSource {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl BundleSource {
    /// Serve `bundle` on 127.0.0.1 (a free port).
    pub async fn start(bundle: Arc<Bundle>) -> std::io::Result<BundleSource> {
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
        Ok(BundleSource { addr, stop })
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

/// Chunks of the tar read ahead of the consumer.
const READ_AHEAD: usize = 2;

/// `location`'s bytes, read in 1 MiB chunks by a blocking task that stays
/// up to [`READ_AHEAD`] chunks ahead of the consumer (so reading from disk
/// and sending overlap) and stops when the consumer drops the stream.
pub(crate) fn read_ahead(bundle: Arc<Bundle>, location: Location) -> BlobBody {
    let (sender, receiver) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let end = location.offset + location.size;
        let mut at = location.offset;
        while at < end {
            let len = CHUNK.min(end - at) as usize;
            let mut buf = vec![0u8; len];
            let chunk = bundle.read_at(&mut buf, at).map(|()| Bytes::from(buf));
            let failed = chunk.is_err();
            if sender.blocking_send(chunk).is_err() || failed {
                return;
            }
            at += len as u64;
        }
    });
    stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    })
    .boxed()
}

/// A verified bundle's blobs for [`wharf_transfer::Transfer::with_local_blobs`]:
/// `wharf load` reads them straight from the tar.
pub struct BundleBlobs(pub Arc<Bundle>);

impl LocalBlobs for BundleBlobs {
    fn open(&self, digest: &Digest) -> Option<BlobBody> {
        let location = self.0.blob(digest)?;
        Some(read_ahead(self.0.clone(), location))
    }
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
