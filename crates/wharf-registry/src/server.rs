//! The accept loop and per-request plumbing: routing, common headers, error
//! bodies, the access log, graceful shutdown.
//!
//! The caller binds the listener (tests bind port 0) and owns shutdown. With
//! [`ServeOptions::tls`] every connection starts with a TLS handshake.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::auth;
use crate::body::{self, Body};
use crate::error::{Code, RegistryError};
use crate::handlers::{self, Request as HandlerRequest};
use crate::routes::{self, Query};
use crate::Registry;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client gets to finish the TLS handshake: a silent or
/// plain-HTTP client must not hold a connection slot for longer.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How connections are served. The default is plain HTTP.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Run a TLS handshake on every accepted connection before HTTP. The
    /// acceptor owns the certificates; the server knows nothing about them.
    pub tls: Option<TlsAcceptor>,
}

/// Serve plain HTTP until `shutdown` completes, then stop accepting and let
/// in-flight requests finish (up to a bound).
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, registry, ServeOptions::default(), shutdown).await
}

/// [`serve`] with options, e.g. HTTPS. The accept loop only accepts: the TLS
/// handshake runs on the connection's own task, so a slow client never
/// delays the next accept.
pub async fn serve_with(
    listener: TcpListener,
    registry: Registry,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(http_builder());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Running out of file descriptors must not kill the server.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: builder.clone(),
            registry: registry.clone(),
            watcher: graceful.watcher(),
            peer,
        };
        let tls = options.tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.serve(stream).await,
                Some(acceptor) => {
                    if let Some(stream) = tls_handshake(&acceptor, stream, peer).await {
                        connection.serve(stream).await;
                    }
                }
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("gave up waiting for connections to close"),
    }
    Ok(())
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its headers must not hold a connection
    // forever (slowloris); bodies are bounded by the upload logic instead.
    builder
        .http1()
        .keep_alive(true)
        .max_buf_size(1024 * 1024)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
}

/// The TLS handshake, bounded in time. A failure is the client's problem
/// (plain HTTP sent to the TLS port, an untrusted certificate, a scanner),
/// so it is logged at debug and the connection closed.
async fn tls_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %peer, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, timeout = ?TLS_HANDSHAKE_TIMEOUT, "TLS handshake timed out");
            None
        }
    }
}

/// One accepted connection and what it needs to be served.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    registry: Registry,
    watcher: Watcher,
    peer: SocketAddr,
}

impl Connection {
    /// HTTP/1.1 or HTTP/2 over `io` until the client or a shutdown ends it.
    async fn serve<I>(self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            builder,
            registry,
            watcher,
            peer,
        } = self;
        let service = service_fn(move |req| {
            let registry = registry.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(&registry, req, peer).await) }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
    }
}

async fn handle(
    registry: &Registry,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    let (parts, incoming) = req.into_parts();
    let query = Query::parse(parts.uri.query());
    // `?ns=` naming this very registry asks for its own images, stored at
    // their plain path (where a node pulling the name directly finds them).
    let ns = query
        .get("ns")
        .filter(|n| !n.is_empty() && !registry.config().is_own_name(n))
        .map(str::to_string);
    let parsed = routes::parse(&parts.method, parts.uri.path(), ns.as_deref());
    let route = parsed
        .as_ref()
        .map_or(routes::INVALID_ROUTE, |e| e.metrics_route());
    let is_token_endpoint = matches!(parsed, Ok(routes::Endpoint::Token));
    let result = match parsed {
        Ok(endpoint) if routes::allows(&endpoint, &parts.method) => {
            authorized_dispatch(registry, endpoint, &parts, &query, incoming, peer).await
        }
        Ok(_) => Err(RegistryError::new(
            Code::MethodNotAllowed,
            format!("{} is not allowed on this endpoint", parts.method),
        )),
        Err(e) => Err(e),
    };
    let mut response = match result {
        Ok(r) => r,
        Err(e) => error_response(&e, parts.method == Method::HEAD),
    };
    let headers = response.headers_mut();
    headers.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    // Bodies are what clients pushed: a browser must never guess a type
    // (HTML, script) for one of them on the registry's origin.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(ns) = ns.and_then(|n| HeaderValue::from_str(&n).ok()) {
        headers.insert("oci-namespace", ns);
    }
    registry
        .metrics()
        .request(route, &parts.method, response.status());
    // The token endpoint's query names accounts and scopes: log only its path.
    let logged_uri = match parts.uri.path_and_query() {
        Some(pq) if !is_token_endpoint => pq.as_str(),
        _ => parts.uri.path(),
    };
    tracing::info!(
        target: "wharf::access",
        method = %parts.method,
        // HTTP/2 requests carry an absolute URI: only the path and query are
        // logged, and for the token endpoint only the path.
        path = %logged_uri,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        %peer,
    );
    response
}

/// Decides the request in the auth layer before any handler (and so any
/// storage access) runs, then dispatches it and audits the write it made.
async fn authorized_dispatch(
    registry: &Registry,
    endpoint: routes::Endpoint,
    parts: &http::request::Parts,
    query: &Query,
    body: Incoming,
    peer: std::net::SocketAddr,
) -> Result<Response<Body>, RegistryError> {
    let caller = auth::authorize(
        registry,
        &endpoint,
        &parts.method,
        &parts.headers,
        peer.ip(),
    )
    .await?;
    let audit = auth::AuditEvent::for_request(&endpoint, &parts.method, query);
    let request = HandlerRequest {
        method: &parts.method,
        headers: &parts.headers,
        query,
        body,
        caller: &caller,
    };
    let result = handlers::dispatch(registry, endpoint, request).await;
    if let Some(event) = audit {
        event.log(&caller, &result);
    }
    result
}

fn error_response(e: &RegistryError, head: bool) -> Response<Body> {
    let bytes = e.body();
    let mut b = Response::builder()
        .status(e.status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, bytes.len());
    if let Some((location, size)) = &e.upload_state {
        if let Ok(loc) = HeaderValue::from_str(location) {
            b = b.header(header::LOCATION, loc);
        }
        b = b.header(header::RANGE, format!("0-{}", size.saturating_sub(1)));
    }
    for (name, value) in &e.headers {
        b = b.header(name, value);
    }
    if e.status == StatusCode::METHOD_NOT_ALLOWED {
        b = b.header(header::ALLOW, "GET, HEAD, PUT, PATCH, POST, DELETE");
    }
    b.body(if head {
        body::empty()
    } else {
        body::full(bytes)
    })
    .expect("static error response")
}
