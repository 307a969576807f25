//! HTTP/1.1 over a stream this crate opened itself (hyper's client
//! connection API), plus what a registry client adds on top: bearer tokens
//! and redirects followed one hop at a time, so a redirect to an address
//! this node cannot reach is caught and named.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;

use crate::challenge::{bearer_challenge, BearerChallenge};
use crate::net::{self, human_duration, BoxedIo, NetError, Origin, Resolver};

/// Redirects followed before giving up (Go's http.Client stops at 10).
const MAX_REDIRECTS: usize = 10;
const USER_AGENT: &str = concat!("wharf-doctor/", env!("CARGO_PKG_VERSION"));

/// One HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Empty<Bytes>>,
}

/// Start HTTP/1.1 on an open stream.
pub async fn handshake(io: BoxedIo, timeout: Duration) -> Result<Conn, HttpError> {
    let started = http1::handshake(TokioIo::new(io));
    let (sender, connection) = tokio::time::timeout(timeout, started)
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
        .map_err(|e| HttpError::Protocol(e.to_string()))?;
    // The connection task ends when the sender is dropped or the peer closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn { sender })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("no answer within {}", human_duration(*.0))]
    Timeout(Duration),
    #[error("{0}")]
    Protocol(String),
}

/// A response with its body read up to a limit.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body was longer than the limit; the rest was not read.
    pub truncated: bool,
}

impl Response {
    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Conn {
    /// Send one request and read at most `body_limit` bytes of the answer.
    pub async fn send(
        &mut self,
        request: Request<Empty<Bytes>>,
        body_limit: usize,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let exchange = async {
            self.sender
                .ready()
                .await
                .map_err(|e| HttpError::Protocol(e.to_string()))?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(|e| HttpError::Protocol(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let (body, truncated) = read_limited(body, body_limit).await?;
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
                truncated,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout(timeout))?
    }
}

async fn read_limited(
    mut body: hyper::body::Incoming,
    limit: usize,
) -> Result<(Bytes, bool), HttpError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| HttpError::Protocol(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            let room = limit - buf.len();
            if data.len() > room {
                buf.extend_from_slice(&data[..room]);
                return Ok((buf.freeze(), true));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok((buf.freeze(), false))
}

/// One redirect followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub status: u16,
    pub location: String,
}

/// The final answer of a request and the redirects that led to it.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub response: Response,
    pub hops: Vec<Hop>,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The host itself could not be reached again.
    Net(NetError),
    Http(HttpError),
    /// A redirect pointed somewhere this node cannot reach.
    Redirect {
        location: String,
        hops: Vec<Hop>,
        error: NetError,
    },
    TooManyRedirects(Vec<Hop>),
    /// The bearer token could not be had.
    Token {
        realm: String,
        reason: String,
    },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Net(e) => e.fmt(f),
            FetchError::Http(e) => e.fmt(f),
            FetchError::Redirect {
                location, error, ..
            } => write!(f, "redirected to {location}, which is unreachable: {error}"),
            FetchError::TooManyRedirects(_) => f.write_str("more than 10 redirects"),
            FetchError::Token { realm, reason } => write!(f, "no token from {realm}: {reason}"),
        }
    }
}

/// Settings for requests to one registry host.
pub struct HostClient {
    resolver: Resolver,
    tls: Arc<ClientConfig>,
    verified: bool,
    timeout: Duration,
    origin: Origin,
    extra_headers: Vec<(String, Vec<String>)>,
    /// `repository:<name>:pull`, asked for in token requests.
    scope: String,
    conn: Option<Conn>,
    token: Option<String>,
}

/// What a request asks for.
pub struct Call<'a> {
    pub method: Method,
    pub path_and_query: &'a str,
    pub headers: Vec<(header::HeaderName, String)>,
    pub body_limit: usize,
}

impl HostClient {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        resolver: Resolver,
        tls: Arc<ClientConfig>,
        verified: bool,
        timeout: Duration,
        origin: Origin,
        extra_headers: Vec<(String, Vec<String>)>,
        scope: String,
        conn: Option<Conn>,
    ) -> HostClient {
        HostClient {
            resolver,
            tls,
            verified,
            timeout,
            origin,
            extra_headers,
            scope,
            conn,
            token: None,
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Send a request to the host, answering one bearer challenge and
    /// following redirects hop by hop.
    pub async fn call(&mut self, call: &Call<'_>) -> Result<Exchange, FetchError> {
        let mut origin = self.origin.clone();
        let mut path = call.path_and_query.to_owned();
        let mut hops = Vec::new();
        let mut answered_challenge = false;
        loop {
            let at_host = origin == self.origin;
            let response = if at_host {
                self.send_to_host(call, &path).await?
            } else {
                self.send_elsewhere(call, &origin, &path)
                    .await
                    .map_err(|error| redirect_error(error, &origin, &path, &hops))?
            };
            if response.status == StatusCode::UNAUTHORIZED && at_host && !answered_challenge {
                answered_challenge = true;
                if let Some(challenge) = bearer_challenge(&response.headers) {
                    self.token = Some(self.fetch_token(&challenge).await?);
                    continue;
                }
            }
            match redirect_target(&response, &origin, &path) {
                Some((next_origin, next_path, location)) => {
                    if hops.len() >= MAX_REDIRECTS {
                        return Err(FetchError::TooManyRedirects(hops));
                    }
                    hops.push(Hop {
                        status: response.status.as_u16(),
                        location,
                    });
                    origin = next_origin;
                    path = next_path;
                }
                None => return Ok(Exchange { response, hops }),
            }
        }
    }

    async fn send_to_host(&mut self, call: &Call<'_>, path: &str) -> Result<Response, FetchError> {
        if self.conn.is_none() {
            let (io, _) = net::open(
                &self.resolver,
                &self.origin,
                &self.tls,
                self.verified,
                self.timeout,
            )
            .await
            .map_err(FetchError::Net)?;
            self.conn = Some(
                handshake(io, self.timeout)
                    .await
                    .map_err(FetchError::Http)?,
            );
        }
        let request = self.build(call, &self.origin, path, true);
        let conn = self.conn.as_mut().expect("connected above");
        let result = conn.send(request, call.body_limit, self.timeout).await;
        // A body left unread (or a failed exchange) spoils the connection.
        if !matches!(&result, Ok(r) if !r.truncated) {
            self.conn = None;
        }
        result.map_err(FetchError::Http)
    }

    /// Redirect targets and token realms get a fresh connection each time:
    /// they are where unreachable addresses hide.
    async fn send_elsewhere(
        &self,
        call: &Call<'_>,
        origin: &Origin,
        path: &str,
    ) -> Result<Response, NetOrHttp> {
        let (io, _) = net::open(
            &self.resolver,
            origin,
            &self.tls,
            self.verified,
            self.timeout,
        )
        .await
        .map_err(NetOrHttp::Net)?;
        let mut conn = handshake(io, self.timeout).await.map_err(NetOrHttp::Http)?;
        let request = self.build(call, origin, path, false);
        conn.send(request, call.body_limit, self.timeout)
            .await
            .map_err(NetOrHttp::Http)
    }

    fn build(
        &self,
        call: &Call<'_>,
        origin: &Origin,
        path: &str,
        at_host: bool,
    ) -> Request<Empty<Bytes>> {
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(path)
            .header(header::HOST, &origin.authority)
            .header(header::USER_AGENT, USER_AGENT);
        // Host headers and credentials go to the host only, as Go's client
        // drops Authorization on a redirect to another host.
        if at_host {
            for (name, values) in &self.extra_headers {
                for value in values {
                    request = request.header(name.as_str(), value.as_str());
                }
            }
            if let Some(token) = &self.token {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
        }
        for (name, value) in &call.headers {
            request = request.header(name, value.as_str());
        }
        request.body(Empty::new()).unwrap_or_else(|_| {
            // Only a header value with control characters can fail here.
            Request::new(Empty::new())
        })
    }

    /// The anonymous token containerd's authorizer would fetch.
    async fn fetch_token(&self, challenge: &BearerChallenge) -> Result<String, FetchError> {
        let token_error = |reason: String| FetchError::Token {
            realm: challenge.realm.clone(),
            reason,
        };
        let url = challenge.token_url(&self.scope);
        let (origin, path) = Origin::of_url(&url)
            .ok_or_else(|| token_error(format!("realm {url:?} is not an http(s) URL")))?;
        let call = Call {
            method: Method::GET,
            path_and_query: &path,
            headers: vec![(header::ACCEPT, "application/json".to_owned())],
            body_limit: 1024 * 1024,
        };
        let response = self
            .send_elsewhere(&call, &origin, &path)
            .await
            .map_err(|e| token_error(e.to_string()))?;
        if !response.status.is_success() {
            return Err(token_error(format!(
                "the token service answered {}",
                response.status
            )));
        }
        parse_token(&response.body).ok_or_else(|| token_error("no token in the answer".to_owned()))
    }
}

/// A failure talking to somewhere other than the host.
#[derive(Debug)]
enum NetOrHttp {
    Net(NetError),
    Http(HttpError),
}

impl std::fmt::Display for NetOrHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetOrHttp::Net(e) => e.fmt(f),
            NetOrHttp::Http(e) => e.fmt(f),
        }
    }
}

fn redirect_error(error: NetOrHttp, origin: &Origin, path: &str, hops: &[Hop]) -> FetchError {
    match error {
        NetOrHttp::Net(error) => FetchError::Redirect {
            location: origin.url(path),
            hops: hops.to_vec(),
            error,
        },
        NetOrHttp::Http(e) => FetchError::Http(e),
    }
}

fn parse_token(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct TokenAnswer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: TokenAnswer = serde_json::from_slice(body).ok()?;
    answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
}

/// Where a 3xx response sends the client, resolved against the request URL.
fn redirect_target(
    response: &Response,
    origin: &Origin,
    path: &str,
) -> Option<(Origin, String, String)> {
    if !matches!(response.status.as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response.header(header::LOCATION)?.trim().to_owned();
    let (next_origin, next_path) = if let Some(rest) = location.strip_prefix("//") {
        Origin::of_url(&format!("{}://{rest}", origin.scheme()))?
    } else if location.contains("://") {
        Origin::of_url(&location)?
    } else if location.starts_with('/') {
        (origin.clone(), location.clone())
    } else {
        let dir = path.split('?').next().unwrap_or("/");
        let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
        (origin.clone(), format!("{dir}{location}"))
    };
    let absolute = next_origin.url(&next_path);
    Some((next_origin, next_path, absolute))
}

/// Go's `url.QueryEscape`, which containerd uses for `?ns=`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn response(status: u16, location: &str) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(header::LOCATION, HeaderValue::from_str(location).unwrap());
        Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::new(),
            truncated: false,
        }
    }

    #[test]
    fn redirects_resolve_against_the_request() {
        let origin = Origin::new(false, "127.0.0.1:5000");
        let path = "/v2/a/blobs/sha256:x";
        let (o, p, abs) =
            redirect_target(&response(307, "http://127.0.0.1:9/b?sig=1"), &origin, path).unwrap();
        assert_eq!((o.port, p.as_str()), (9, "/b?sig=1"));
        assert_eq!(abs, "http://127.0.0.1:9/b?sig=1");
        let (o, p, _) = redirect_target(&response(302, "/elsewhere"), &origin, path).unwrap();
        assert_eq!((o, p.as_str()), (origin.clone(), "/elsewhere"));
        let (_, p, _) = redirect_target(&response(301, "other"), &origin, path).unwrap();
        assert_eq!(p, "/v2/a/blobs/other");
        assert!(redirect_target(&response(200, "/x"), &origin, path).is_none());
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(query_escape("127.0.0.1:5000"), "127.0.0.1%3A5000");
        assert_eq!(query_escape("docker.io"), "docker.io");
        assert_eq!(
            query_escape("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }

    #[test]
    fn tokens_come_from_either_field() {
        assert_eq!(parse_token(br#"{"token":"t"}"#).as_deref(), Some("t"));
        assert_eq!(
            parse_token(br#"{"access_token":"a"}"#).as_deref(),
            Some("a")
        );
        assert_eq!(parse_token(br#"{"token":""}"#), None);
    }
}
