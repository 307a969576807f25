//! The [`Client`] handle and the one path every request takes:
//!
//! ```text
//! execute ─ retry loop (429/502/503/504, network errors; Retry-After)
//!   └ send_authenticated ─ ping once per registry, attach auth, re-auth once on 401
//!       └ send_following_redirects ─ ≤ 10 hops, http(s) only,
//!                                    Authorization only to the registry's own origin
//! ```
//!
//! reqwest's own redirect handling is switched off so that the rule about
//! `Authorization` is this crate's, visible here and tested, whatever
//! reqwest's defaults become.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Method, StatusCode};
use reqwest::{Response, Url};

use crate::auth::{read_limited, Auth, Known};
use crate::challenge::AuthChallenge;
use crate::config::{base_url_with, ClientConfig, SchemeChoice};
use crate::credentials::{Credential, CredentialSources, CredentialStore};
use crate::error::{parse_api_errors, Context, Error, ErrorKind, Result};
use crate::progress::{NoReporter, RedirectEvent, Reporter, RetryEvent, RetryReason};
use crate::trust::Transport;

/// Redirect hops followed before giving up.
pub const MAX_REDIRECTS: usize = 10;

/// A registry client. Cheap to clone; clones share the connection pool,
/// the credential cache and the token cache, so one `Client` serves many
/// concurrent tasks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    reporter: Arc<dyn Reporter>,
}

struct Inner {
    transport: Arc<Transport>,
    config: ClientConfig,
    auth: Auth,
    /// Hosts found to answer in TLS although their first scheme was plain
    /// HTTP ([`SchemeChoice::HttpUnlessTls`]).
    tls_found: Mutex<HashSet<String>>,
    /// Hosts whose ping failed after every retry, when, and why.
    unreachable: Mutex<HashMap<String, (Instant, String)>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// What `/v2/` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// `"bearer"`, `"basic"`, or `None` when the registry is open.
    pub auth_scheme: Option<&'static str>,
    /// `Docker-Distribution-Api-Version`, when sent.
    pub api_version: Option<String>,
}

/// A request body. Only `Empty` and `Bytes` can be sent twice, so only they
/// are retried, re-authenticated or replayed to a redirect target.
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    Stream(Mutex<Option<reqwest::Body>>),
}

impl Body {
    pub fn stream(body: reqwest::Body) -> Body {
        Body::Stream(Mutex::new(Some(body)))
    }

    fn replayable(&self) -> bool {
        !matches!(self, Body::Stream(_))
    }

    /// The body for one send; `Err` when a stream was already sent.
    fn for_send(&self) -> std::result::Result<Option<reqwest::Body>, ()> {
        match self {
            Body::Empty => Ok(None),
            Body::Bytes(b) => Ok(Some(reqwest::Body::from(b.clone()))),
            Body::Stream(s) => s.lock().expect("lock").take().map(Some).ok_or(()),
        }
    }
}

/// One logical request.
pub(crate) struct Call<'a> {
    pub host: &'a str,
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
    /// Token scopes the request needs.
    pub scopes: Vec<String>,
    /// Safe to send again after a failure (see the crate docs).
    pub retry: bool,
    pub ctx: &'a Context,
}

impl<'a> Call<'a> {
    pub fn new(host: &'a str, method: Method, url: Url, ctx: &'a Context) -> Call<'a> {
        Call {
            host,
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            scopes: Vec::new(),
            retry: true,
            ctx,
        }
    }

    pub fn scope(mut self, scope: String) -> Self {
        self.scopes.push(scope);
        self
    }

    pub fn header(mut self, name: http::header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    pub fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client> {
        let transport = Arc::new(Transport::new(&config)?);
        let credentials = CredentialStore::new(config.credentials.clone());
        Ok(Client {
            inner: Arc::new(Inner {
                auth: Auth::new(transport.clone(), credentials),
                transport,
                config,
                tls_found: Mutex::default(),
                unreachable: Mutex::default(),
            }),
            reporter: Arc::new(NoReporter),
        })
    }

    /// Check `credential` against `host` the way `docker login` does:
    /// `GET /v2/` authenticated with it (a token obtained with it first,
    /// when the registry asks for one). Nothing is saved; an `Ok` means
    /// the registry accepted the credential.
    pub async fn verify_credential(&self, host: &str, credential: Credential) -> Result<()> {
        let mut config = self.inner.config.clone();
        config.credentials = CredentialSources::none().with_explicit(host, credential);
        let checker = Client::new(config)?.with_reporter(self.reporter.clone());
        let ctx = Context::new("log in to", host);
        let url = checker.base_url(host, &ctx)?;
        let response = checker
            .execute(Call::new(host, Method::GET, url, &ctx))
            .await?;
        if response.status().is_success() {
            return Ok(());
        }
        let mut err = error_from(response, &ctx).await;
        if err.kind() == ErrorKind::Unauthorized {
            err = err.prefixed("the registry refused the credentials");
        }
        Err(err)
    }

    /// The same client (shared pool and caches) reporting to `reporter`.
    pub fn with_reporter(&self, reporter: Arc<dyn Reporter>) -> Client {
        Client {
            inner: self.inner.clone(),
            reporter,
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(crate) fn reporter(&self) -> &dyn Reporter {
        self.reporter.as_ref()
    }

    pub(crate) fn reporter_handle(&self) -> Arc<dyn Reporter> {
        self.reporter.clone()
    }

    /// `<scheme>://<endpoint>/v2/<path>`.
    pub(crate) fn url(&self, host: &str, path: &str, ctx: &Context) -> Result<Url> {
        let base = self.base_url(host, ctx)?;
        base.join(path).map_err(|_| {
            Error::new(
                ErrorKind::Invalid,
                ctx,
                format!("cannot build a URL for {path:?}"),
            )
        })
    }

    fn base_url(&self, host: &str, ctx: &Context) -> Result<Url> {
        base_url_with(self.scheme(host), host).ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                ctx,
                format!("{host:?} is not a registry host"),
            )
        })
    }

    /// The scheme requests to `host` use now.
    fn scheme(&self, host: &str) -> &'static str {
        if self.inner.tls_found.lock().expect("lock").contains(host) {
            "https"
        } else {
            self.inner.config.scheme(host)
        }
    }

    /// `url` with the scheme `host` was found to speak, when `url` was
    /// built for the registry before that was known.
    fn current_url(&self, host: &str, url: &Url) -> Url {
        let scheme = self.scheme(host);
        let for_registry = url.host_str().is_some()
            && base_url_with(url.scheme(), host).is_some_and(|b| b.origin() == url.origin());
        let mut current = url.clone();
        if for_registry && url.scheme() != scheme {
            // http and https are both "special" schemes: this cannot fail.
            let _ = current.set_scheme(scheme);
        }
        current
    }

    /// `GET /v2/`: is this a registry, and how does it authenticate?
    /// The answer is remembered for later requests.
    pub async fn ping(&self, host: &str) -> Result<Ping> {
        let ctx = Context::new("ping", host);
        let known = self.ping_inner(host, &ctx).await?;
        let auth_scheme = match known.0 {
            Known::Open => None,
            Known::Challenge(c) => Some(c.scheme_name()),
        };
        Ok(Ping {
            auth_scheme,
            api_version: known.1,
        })
    }

    async fn ping_inner(&self, host: &str, ctx: &Context) -> Result<(Known, Option<String>)> {
        if let Some(e) = self.recently_unreachable(host, ctx) {
            return Err(e);
        }
        let result = self.ping_once(host, ctx).await;
        if let Err(e) = &result {
            if e.kind() == ErrorKind::Network && e.retries_spent {
                let gave_up = (Instant::now(), e.message().to_string());
                self.inner
                    .unreachable
                    .lock()
                    .expect("lock")
                    .insert(host.to_string(), gave_up);
            }
        }
        result
    }

    /// The registry did not answer a ping through all its retries moments
    /// ago: every request then waiting on a ping fails at once instead of
    /// retrying all over again.
    fn recently_unreachable(&self, host: &str, ctx: &Context) -> Option<Error> {
        let map = self.inner.unreachable.lock().expect("lock");
        let (when, message) = map.get(host)?;
        (when.elapsed() < self.inner.config.unreachable_memory).then(|| {
            let mut e = Error::new(ErrorKind::Network, ctx, message.clone());
            e.retries_spent = true;
            e
        })
    }

    async fn ping_once(&self, host: &str, ctx: &Context) -> Result<(Known, Option<String>)> {
        let url = self.base_url(host, ctx)?;
        self.reporter.trying(host, url.as_str());
        let outcome = self
            .execute_with(Call::new(host, Method::GET, url.clone(), ctx), false)
            .await;
        let response = match outcome {
            Err(e) if e.peer_speaks_tls() && self.may_switch_to_tls(host, &url) => {
                self.ping_over_tls(host, ctx).await?
            }
            Ok(r)
                if r.status() == StatusCode::BAD_REQUEST && self.may_switch_to_tls(host, &url) =>
            {
                // Go's and nginx's TLS servers answer plain HTTP in plain HTTP.
                let body = read_limited(r, ctx).await.unwrap_or_default();
                if !is_tls_servers_answer(&body) {
                    return Err(Error::http(
                        ctx,
                        StatusCode::BAD_REQUEST,
                        parse_api_errors(&body),
                    ));
                }
                self.ping_over_tls(host, ctx).await?
            }
            other => other?,
        };
        let status = response.status();
        let version = response
            .headers()
            .get("docker-distribution-api-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let known = if status.is_success() {
            Known::Open
        } else if status == StatusCode::UNAUTHORIZED {
            match challenge_of(response.headers()) {
                Some(c) => Known::Challenge(c),
                None => {
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        ctx,
                        "HTTP 401 without a usable WWW-Authenticate challenge",
                    ))
                }
            }
        } else {
            return Err(error_from(response, ctx).await);
        };
        self.inner.auth.learn(host, known.clone());
        Ok((known, version))
    }

    /// The registry answered in TLS: HTTPS from now on, starting with the ping.
    async fn ping_over_tls(&self, host: &str, ctx: &Context) -> Result<Response> {
        tracing::debug!(registry = host, "the registry answers in TLS; using HTTPS");
        self.inner
            .tls_found
            .lock()
            .expect("lock")
            .insert(host.to_string());
        let url = self.base_url(host, ctx)?;
        self.reporter.trying(host, url.as_str());
        self.execute_with(Call::new(host, Method::GET, url, ctx), false)
            .await
    }

    fn may_switch_to_tls(&self, host: &str, url: &Url) -> bool {
        url.scheme() == "http"
            && self.inner.config.scheme_choice(host) == SchemeChoice::HttpUnlessTls
    }

    /// What `call`'s registry wants: known, learned by a ping, or, where
    /// no ping is needed, assumed open until a 401 says otherwise.
    async fn known_or_ping(&self, call: &Call<'_>) -> Result<Known> {
        if let Some(k) = self.inner.auth.known(call.host) {
            return Ok(k);
        }
        if self.may_skip_ping(call) {
            if let Some(e) = self.recently_unreachable(call.host, call.ctx) {
                return Err(e);
            }
            // The request stands in for the ping, and is reported as the
            // ping would be.
            let base = self.base_url(call.host, call.ctx)?;
            self.reporter.trying(call.host, base.as_str());
            return Ok(Known::Open);
        }
        // Boxed: the ping itself goes through `execute_with`.
        Ok(Box::pin(self.ping_inner(call.host, call.ctx)).await?.0)
    }

    /// A ping costs a round trip before the first real request, which a
    /// pull through a cache on a WAN link feels. It is only needed to find
    /// out whether a registry speaks TLS; when the scheme is settled, the
    /// request itself goes out anonymously and a 401 teaches the challenge
    /// (as containerd does). A body sent as a stream cannot be sent again
    /// after that 401, so it waits for a ping.
    fn may_skip_ping(&self, call: &Call<'_>) -> bool {
        call.body.replayable()
            && self.inner.config.scheme_choice(call.host) != SchemeChoice::HttpUnlessTls
    }

    /// A request that stood in for the ping gave up on the network: later
    /// ones fail at once, as they would after a failed ping.
    fn remember_if_unreachable(&self, call: &Call<'_>, error: &Error) {
        if error.kind() == ErrorKind::Network
            && error.retries_spent
            && self.inner.auth.known(call.host).is_none()
            && self.may_skip_ping(call)
        {
            let gave_up = (Instant::now(), error.message().to_string());
            self.inner
                .unreachable
                .lock()
                .expect("lock")
                .insert(call.host.to_string(), gave_up);
        }
    }

    /// Send `call` with authentication, redirects and retries; returns the
    /// final response whatever its status.
    pub(crate) async fn execute(&self, call: Call<'_>) -> Result<Response> {
        self.execute_with(call, true).await
    }

    async fn execute_with(&self, call: Call<'_>, authenticate: bool) -> Result<Response> {
        let policy = &self.inner.config.retry;
        let mut attempt = 1;
        loop {
            let outcome = if authenticate {
                self.send_authenticated(&call).await
            } else {
                self.send_following_redirects(&call, &call.url, None).await
            };
            let can_retry = call.retry && call.body.replayable() && attempt < policy.max_attempts;
            if !can_retry {
                return outcome.map_err(|mut e| {
                    e.retries_spent |= call.retry && call.body.replayable();
                    if authenticate {
                        self.remember_if_unreachable(&call, &e);
                    }
                    e
                });
            }
            let (reason, delay, from_retry_after) = match &outcome {
                Ok(r) if is_retryable_status(r.status()) => {
                    match retry_after(r.headers(), SystemTime::now()) {
                        Some(d) if d > policy.max_retry_after => return outcome,
                        Some(d) => (RetryReason::Status(r.status()), d, true),
                        None => (
                            RetryReason::Status(r.status()),
                            policy.backoff(attempt - 1),
                            false,
                        ),
                    }
                }
                Err(e)
                    if e.kind() == ErrorKind::Network && e.is_transient() && !e.retries_spent =>
                {
                    (RetryReason::Network, policy.backoff(attempt - 1), false)
                }
                _ => return outcome,
            };
            let error = match &outcome {
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.message().to_string(),
            };
            drop(outcome);
            self.reporter.retrying(&RetryEvent {
                operation: call.ctx.operation,
                registry: call.host,
                attempt,
                max_attempts: policy.max_attempts,
                reason,
                error,
                delay,
                from_retry_after,
            });
            tracing::debug!(
                operation = call.ctx.operation,
                registry = call.host,
                attempt,
                ?delay,
                "retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn send_authenticated(&self, call: &Call<'_>) -> Result<Response> {
        let ctx = call.ctx;
        let base = self.base_url(call.host, ctx)?;
        let known = self.known_or_ping(call).await?;
        // The ping may have found that the registry speaks TLS.
        let base = self.current_url(call.host, &base);
        let url = self.current_url(call.host, &call.url);
        let auth = &self.inner.auth;
        let header = auth
            .header(call.host, &base, &known, &call.scopes, ctx)
            .await?;
        let response = self
            .send_following_redirects(call, &url, header.as_ref())
            .await?;
        if response.status() != StatusCode::UNAUTHORIZED || !call.body.replayable() {
            if known == Known::Open && self.inner.auth.known(call.host).is_none() {
                // Answered without credentials: what a ping would have found.
                self.inner.auth.learn(call.host, Known::Open);
            }
            return Ok(response);
        }
        let Some(challenge) = challenge_of(response.headers()) else {
            return Ok(response);
        };
        // The same Basic credentials would only be refused again.
        if challenge == AuthChallenge::Basic && header.is_some() {
            return Ok(response);
        }
        let fresh = auth
            .reauthenticate(call.host, &base, challenge, &call.scopes, ctx)
            .await?;
        match fresh {
            Some(h) => self.send_following_redirects(call, &url, Some(&h)).await,
            None => Ok(response),
        }
    }

    async fn send_following_redirects(
        &self,
        call: &Call<'_>,
        start: &Url,
        auth: Option<&HeaderValue>,
    ) -> Result<Response> {
        let ctx = call.ctx;
        let origin = start.origin();
        let mut url = start.clone();
        let mut method = call.method.clone();
        let mut with_body = true;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self
                .inner
                .transport
                .for_url(&url)?
                .request(method.clone(), url.clone())
                .headers(call.headers.clone());
            // Credentials are for the registry: a CDN or object store that
            // a blob redirects to must never see them.
            if let Some(a) = auth.filter(|_| url.origin() == origin) {
                request = request.header(AUTHORIZATION, a.clone());
            }
            if with_body {
                match call.body.for_send() {
                    Ok(Some(b)) => request = request.body(b),
                    Ok(None) => {}
                    Err(()) => {
                        return Err(Error::new(
                            ErrorKind::Protocol,
                            ctx,
                            "the registry redirected a streamed upload, which cannot be sent twice",
                        ))
                    }
                }
            }
            let response = request.send().await.map_err(|e| Error::transport(ctx, e))?;
            if !is_redirect(response.status()) {
                return Ok(response);
            }
            let Some(next) = redirect_target(&url, response.headers(), ctx)? else {
                return Ok(response);
            };
            let status = response.status();
            if status == StatusCode::SEE_OTHER
                || (method == Method::POST && matches!(status.as_u16(), 301 | 302))
            {
                method = Method::GET;
                with_body = false;
            }
            tracing::debug!(
                operation = ctx.operation,
                host = next.host_str(),
                "following a redirect"
            );
            self.reporter.redirected(&RedirectEvent {
                operation: ctx.operation,
                registry: call.host,
                status,
                to_origin: next.origin().ascii_serialization(),
            });
            url = next;
        }
        Err(Error::new(
            ErrorKind::Protocol,
            ctx,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }
}

/// The body a TLS server sends to a plain-HTTP request (Go's net/http,
/// nginx), as opposed to a registry's own 400.
fn is_tls_servers_answer(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.contains("Client sent an HTTP request to an HTTPS server")
        || text.contains("The plain HTTP request was sent to HTTPS port")
}

/// Where a redirect points, resolved against the current URL; only
/// http(s) targets are followed.
fn redirect_target(current: &Url, headers: &HeaderMap, ctx: &Context) -> Result<Option<Url>> {
    let Some(location) = headers.get(LOCATION).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let next = current.join(location).map_err(|_| {
        Error::new(
            ErrorKind::Protocol,
            ctx,
            "a redirect's Location is not a URL",
        )
    })?;
    match next.scheme() {
        "http" | "https" => Ok(Some(next)),
        other => Err(Error::new(
            ErrorKind::Protocol,
            ctx,
            format!("refusing to follow a redirect to a {other}: URL"),
        )),
    }
}

fn challenge_of(headers: &HeaderMap) -> Option<AuthChallenge> {
    AuthChallenge::select(
        headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// Turn an unsuccessful response into an error, with the registry's error
/// codes when its body has them.
pub(crate) async fn error_from(response: Response, ctx: &Context) -> Error {
    let status = response.status();
    // A broken or oversized error body still leaves the status to report.
    let body = read_limited(response, ctx).await.unwrap_or_default();
    Error::http(ctx, status, parse_api_errors(&body))
}

/// `Ok(response)` when its status is one of `expected`, else the error.
pub(crate) async fn expect_status(
    response: Response,
    expected: &[StatusCode],
    ctx: &Context,
) -> Result<Response> {
    if expected.contains(&response.status()) {
        Ok(response)
    } else {
        Err(error_from(response, ctx).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn redirect_targets() {
        let ctx = Context::new("get blob", "r");
        let cur = Url::parse("http://r/v2/a/blobs/x").unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(redirect_target(&cur, &h, &ctx).unwrap(), None);
        h.insert(LOCATION, HeaderValue::from_static("/cdn/x?sig=1"));
        assert_eq!(
            redirect_target(&cur, &h, &ctx).unwrap().unwrap().as_str(),
            "http://r/cdn/x?sig=1"
        );
        h.insert(LOCATION, HeaderValue::from_static("file:///etc/passwd"));
        assert_eq!(
            redirect_target(&cur, &h, &ctx).unwrap_err().kind(),
            ErrorKind::Protocol
        );
    }
}
