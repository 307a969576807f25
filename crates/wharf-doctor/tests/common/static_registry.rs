//! A registry that serves one image (an index) from memory, with faults wharf's
//! own server never makes: 404 on every path, blob redirects, TLS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use wharf_testkit::image::Artifact;

use super::TAG;

/// How the registry misbehaves.
#[derive(Clone)]
pub enum Mode {
    /// A working registry.
    Serve,
    /// 404 for everything, `/v2/` included (a web server, not a registry).
    NotFound,
    /// Blob requests get `307` to `<base>/<digest>`.
    RedirectBlobs(String),
    /// Every `/v2/` request needs the token `/token` hands out anonymously
    /// for a `repository:…:pull` scope (the Docker token protocol).
    RequireToken,
}

const TOKEN: &str = "anonymous-pull-token";

/// Stops serving when dropped.
pub struct StaticRegistry {
    pub addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

impl StaticRegistry {
    pub async fn start(
        image: Artifact,
        mode: Mode,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> StaticRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, mut rx) = oneshot::channel::<()>();
        let shared = Arc::new((image, mode, addr));
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(conn) => conn,
                        Err(_) => continue,
                    },
                    _ = &mut rx => break,
                };
                let shared = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(answer(&shared.0, &shared.1, shared.2, &req)) }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            if let Ok(tls_stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(tls_stream), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        StaticRegistry {
            addr,
            _shutdown: tx,
        }
    }
}

fn answer(
    image: &Artifact,
    mode: &Mode,
    addr: SocketAddr,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if matches!(mode, Mode::RequireToken) {
        if let Some(refused) = token_gate(addr, req) {
            return refused;
        }
    }
    if matches!(mode, Mode::NotFound) || !path.starts_with("/v2/") {
        return status(StatusCode::NOT_FOUND);
    }
    if path == "/v2/" {
        return Response::new(Full::new(Bytes::from_static(b"{}")));
    }
    if let Some((_, reference)) = path.rsplit_once("/manifests/") {
        let (found, digest) = if reference == TAG {
            let digest = image.digest().to_string();
            (image.find(&digest), digest)
        } else {
            (image.find(reference), reference.to_owned())
        };
        return match found {
            Some((media_type, bytes)) => content(bytes, media_type, &digest, req.method()),
            None => status(StatusCode::NOT_FOUND),
        };
    }
    if let Some((_, digest)) = path.rsplit_once("/blobs/") {
        if let Mode::RedirectBlobs(base) = mode {
            return Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header("Location", format!("{base}/{digest}"))
                .body(Full::new(Bytes::new()))
                .expect("response");
        }
        return match image.find(digest) {
            Some((media_type, bytes)) => content(bytes, media_type, digest, req.method()),
            None => status(StatusCode::NOT_FOUND),
        };
    }
    status(StatusCode::NOT_FOUND)
}

/// Hand out the token at `/token`; refuse `/v2/` requests without it.
fn token_gate(addr: SocketAddr, req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    if req.uri().path() == "/token" {
        let query = req.uri().query().unwrap_or("");
        if !query.contains("scope=repository%3A") || !query.contains("service=test-registry") {
            return Some(status(StatusCode::BAD_REQUEST));
        }
        let body = format!(r#"{{"token":"{TOKEN}"}}"#);
        return Some(Response::new(Full::new(Bytes::from(body))));
    }
    let authorized = req
        .headers()
        .get("Authorization")
        .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
    if authorized {
        return None;
    }
    let challenge = format!(r#"Bearer realm="http://{addr}/token",service="test-registry""#);
    Some(
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("WWW-Authenticate", challenge)
            .body(Full::new(Bytes::new()))
            .expect("response"),
    )
}

fn content(bytes: &[u8], media_type: &str, digest: &str, method: &Method) -> Response<Full<Bytes>> {
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::copy_from_slice(bytes)
    };
    Response::builder()
        .header("Content-Type", media_type)
        .header("Content-Length", bytes.len())
        .header("Docker-Content-Digest", digest)
        .body(Full::new(body))
        .expect("response")
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()))
        .expect("response")
}
