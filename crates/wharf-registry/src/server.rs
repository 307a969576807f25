//! The accept loop and per-request plumbing: routing, common headers, error
//! bodies, the access log, graceful shutdown.
//!
//! The caller binds the listener (tests bind port 0) and owns shutdown. With
//! [`ServeOptions::tls`] every connection starts with a TLS handshake.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::auth;
use crate::body::{self, Body};
use crate::error::RegistryError;
use crate::handlers::{self, Request as HandlerRequest};
use crate::limits::Limits;
use crate::routes::{self, Query, Route};
use crate::Registry;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection asked to close (idle, shed or shutting down) gets
/// to say goodbye (an HTTP/2 GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// At the connection limit, connections idle for at least this long are
/// closed to make room; a client between two requests of a burst keeps its
/// connection.
const SHED_MIN_IDLE: Duration = Duration::from_secs(1);
/// At the connection limit, how often idle connections are asked again to
/// make room while the accept loop waits for a slot.
const SHED_INTERVAL: Duration = Duration::from_secs(1);
/// HTTP/2 pings on a busy connection find a peer that vanished.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Concurrent streams one HTTP/2 connection may open (hyper's default).
const H2_MAX_STREAMS: u32 = 200;

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
/// delays the next accept. At most [`Limits::max_connections`] connections
/// are open at once; at the limit, idle ones are closed to make room and the
/// next client waits in the listen backlog until a slot frees.
pub async fn serve_with(
    listener: TcpListener,
    registry: Registry,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = registry.config().limits.clone();
    let shared = Arc::new(Shared {
        builder: http_builder(&limits),
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        shed: Notify::new(),
        closing: watch::channel(false).0,
        limits,
    });
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = next_connection(&listener, &shared) => accepted,
            () = &mut shutdown => break,
        };
        let Some((stream, peer, slot)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            shared: shared.clone(),
            registry: registry.clone(),
            peer,
            _slot: slot,
        };
        let tls = options.tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.serve(stream).await,
                Some(acceptor) => {
                    let timeout = shared_limits(&connection).tls_handshake_timeout;
                    if let Some(stream) = tls_handshake(&acceptor, stream, peer, timeout).await {
                        connection.serve(stream).await;
                    }
                }
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    shared.closing.send_replace(true);
    // Every open connection holds a slot: all of them free means all closed.
    let all = u32::try_from(shared.limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = shared.slots.acquire_many(all) => tracing::info!("all connections closed"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("gave up waiting for connections to close"),
    }
    Ok(())
}

/// What every connection task shares with the accept loop.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    limits: Limits,
    /// One permit per open connection.
    slots: Arc<Semaphore>,
    /// Wakes idle connections to close when the slots run out.
    shed: Notify,
    /// Becomes `true` on shutdown.
    closing: watch::Sender<bool>,
}

fn shared_limits(connection: &Connection) -> &Limits {
    &connection.shared.limits
}

/// A connection slot, then the next connection. Without a free slot, idle
/// connections are asked to make room until one frees; the waiting client
/// sits in the listen backlog meanwhile. `None` when accept failed.
async fn next_connection(
    listener: &TcpListener,
    shared: &Shared,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let slot = match shared.slots.clone().try_acquire_owned() {
        Ok(slot) => slot,
        Err(_) => wait_for_slot(shared).await,
    };
    match listener.accept().await {
        Ok((stream, peer)) => Some((stream, peer, slot)),
        Err(e) => {
            // Running out of file descriptors must not kill the server.
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

async fn wait_for_slot(shared: &Shared) -> OwnedSemaphorePermit {
    tracing::warn!(
        max_connections = shared.limits.max_connections,
        "connection limit reached: closing idle connections, new ones wait"
    );
    loop {
        shared.shed.notify_waiters();
        tokio::select! {
            slot = shared.slots.clone().acquire_owned() => return slot.expect("the slots are never closed"),
            () = tokio::time::sleep(SHED_INTERVAL) => {}
        }
    }
}

/// Request headers up to this size are read; as much of a response body
/// is queued ahead of the socket, two blob read chunks.
const MAX_CONNECTION_BUFFER: usize = 512 * 1024;

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its headers must not hold a connection
    // forever (slowloris); bodies are bounded by `body::request_stream`, idle
    // connections by `Connection::serve`.
    builder
        .http1()
        .keep_alive(true)
        // Also the most a connection queues of a response body ahead of the
        // socket: 50 parallel pulls held 50 of these (BENCHMARKS.md).
        .max_buf_size(MAX_CONNECTION_BUFFER)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    builder
}

/// The TLS handshake, bounded in time. A failure is the client's problem
/// (plain HTTP sent to the TLS port, an untrusted certificate, a scanner),
/// so it is logged at debug and the connection closed.
async fn tls_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %peer, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, ?timeout, "TLS handshake timed out");
            None
        }
    }
}

/// One accepted connection and what it needs to be served.
struct Connection {
    shared: Arc<Shared>,
    registry: Registry,
    peer: SocketAddr,
    /// Held for as long as the connection is open.
    _slot: OwnedSemaphorePermit,
}

/// Why a connection is being closed by the server.
#[derive(Debug, Clone, Copy)]
enum Close {
    Idle,
    Shed,
    Shutdown,
}

impl Connection {
    /// HTTP/1.1 or HTTP/2 over `io` until the client ends it, it stays idle
    /// (no request in flight) for `idle_timeout`, the server needs its slot
    /// or shuts down. A request is in flight from its headers until its
    /// response body is sent or dropped.
    async fn serve<I>(self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let (registry, peer) = (self.registry.clone(), self.peer);
        let service = service_fn({
            let activity = activity.clone();
            move |req| {
                let registry = registry.clone();
                let guard = InFlight::start(&activity);
                async move {
                    let response = handle(&registry, req, peer).await;
                    Ok::<_, std::convert::Infallible>(guard.until_sent(response))
                }
            }
        });
        let conn = self
            .shared
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let limits = &self.shared.limits;
        let mut closing = self.shared.closing.subscribe();
        // One timer for the connection's life, looked at when it fires, so
        // requests themselves never touch it (nor wake this loop).
        let idle_check = tokio::time::sleep(limits.idle_timeout);
        tokio::pin!(idle_check);
        let close = loop {
            tokio::select! {
                biased;
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                    return;
                }
                () = &mut idle_check => {
                    let idle = activity.idle_for();
                    if idle.is_some_and(|idle| idle >= limits.idle_timeout) {
                        break Close::Idle;
                    }
                    // Busy: a whole timeout from now.
                    let idle = idle.unwrap_or_default();
                    idle_check
                        .as_mut()
                        .reset(tokio::time::Instant::now() + (limits.idle_timeout - idle));
                }
                () = self.shared.shed.notified() => {
                    if activity.idle_for().is_some_and(|idle| idle >= SHED_MIN_IDLE) {
                        break Close::Shed;
                    }
                }
                _ = closing.wait_for(|closing| *closing) => break Close::Shutdown,
            }
        };
        tracing::debug!(%peer, reason = ?close, "closing connection");
        conn.as_mut().graceful_shutdown();
        let grace = match close {
            Close::Shutdown => DRAIN_TIMEOUT,
            Close::Idle | Close::Shed => CLOSE_GRACE,
        };
        if tokio::time::timeout(grace, conn).await.is_err() {
            tracing::debug!(%peer, "connection did not close in time; dropped");
        }
    }
}

/// Whether a connection has requests in flight, and since when it has had
/// none: two atomics a request updates without waking anyone.
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `started` to the end of the last request.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    /// How long the connection has been idle; `None` while a request is in
    /// flight.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.started.elapsed().saturating_sub(since))
    }
}

/// Counts one request as in flight on its connection from its headers until
/// its response body is finished or dropped, so that a long download or
/// upload is never taken for an idle connection.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity.clone())
    }

    fn until_sent(self, response: Response<Body>) -> Response<Body> {
        response.map(|body| {
            body.map_frame(move |frame| {
                let _in_flight = &self;
                frame
            })
            .boxed_unsync()
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        // The end time first: whoever sees the count at zero sees it too.
        let now = activity.started.elapsed().as_millis() as u64;
        activity.idle_since_ms.fetch_max(now, Ordering::AcqRel);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
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
    let parsed = routes::parse(&parts.method, parts.uri.path(), &query, ns.as_deref());
    let route = match &parsed {
        Ok(endpoint) => Some(endpoint.route()),
        Err(unrouted) => unrouted.route,
    };
    let result = match parsed {
        Ok(endpoint) => {
            authorized_dispatch(registry, endpoint, &parts, &query, incoming, peer).await
        }
        Err(unrouted) => Err(unrouted.error),
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
        Some(pq) if route != Some(Route::Token) => pq.as_str(),
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
    let caller = auth::authorize(registry, &endpoint, &parts.headers, peer.ip()).await?;
    let audit = auth::AuditEvent::for_request(&endpoint, query);
    let request = HandlerRequest {
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
