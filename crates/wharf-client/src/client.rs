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

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Method, StatusCode};
use reqwest::{Response, Url};

use crate::auth::{read_limited, Auth, Known};
use crate::challenge::AuthChallenge;
use crate::config::ClientConfig;
use crate::credentials::CredentialStore;
use crate::error::{parse_api_errors, Context, Error, ErrorKind, Result};
use crate::progress::{NoReporter, Reporter, RetryEvent, RetryReason};

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
    http: reqwest::Client,
    config: ClientConfig,
    auth: Auth,
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

fn build_http(config: &ClientConfig) -> Result<reqwest::Client> {
    let ctx = Context::new("configure the client for", "all registries");
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(config.user_agent.clone())
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .pool_idle_timeout(Duration::from_secs(90));
    for path in &config.ca_files {
        let config_err = |why: String| Error::new(ErrorKind::Config, &ctx, why);
        let pem = std::fs::read(path)
            .map_err(|e| config_err(format!("cannot read CA file {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
            config_err(format!(
                "CA file {} holds no valid PEM certificate",
                path.display()
            ))
        })?;
        if certs.is_empty() {
            return Err(config_err(format!(
                "CA file {} holds no certificate",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| {
        Error::new(ErrorKind::Config, &ctx, "cannot build the HTTP client").with_source(e)
    })
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client> {
        let http = build_http(&config)?;
        let credentials = CredentialStore::new(config.credentials.clone());
        Ok(Client {
            inner: Arc::new(Inner {
                auth: Auth::new(http.clone(), credentials),
                http,
                config,
            }),
            reporter: Arc::new(NoReporter),
        })
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
        self.inner.config.base_url(host).ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                ctx,
                format!("{host:?} is not a registry host"),
            )
        })
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
        let url = self.base_url(host, ctx)?;
        let call = Call::new(host, Method::GET, url, ctx);
        let response = self.execute_with(call, false).await?;
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

    async fn known_or_ping(&self, host: &str, ctx: &Context) -> Result<Known> {
        match self.inner.auth.known(host) {
            Some(k) => Ok(k),
            // Boxed: the ping itself goes through `execute_with`.
            None => Ok(Box::pin(self.ping_inner(host, ctx)).await?.0),
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
                self.send_following_redirects(&call, None).await
            };
            let can_retry = call.retry && call.body.replayable() && attempt < policy.max_attempts;
            if !can_retry {
                return outcome;
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
                Err(e) if e.kind() == ErrorKind::Network => {
                    (RetryReason::Network, policy.backoff(attempt - 1), false)
                }
                _ => return outcome,
            };
            drop(outcome);
            self.reporter.retrying(&RetryEvent {
                operation: call.ctx.operation,
                registry: call.host,
                attempt,
                reason,
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
        let known = self.known_or_ping(call.host, ctx).await?;
        let auth = &self.inner.auth;
        let header = auth
            .header(call.host, &base, &known, &call.scopes, ctx)
            .await?;
        let response = self.send_following_redirects(call, header.as_ref()).await?;
        if response.status() != StatusCode::UNAUTHORIZED || !call.body.replayable() {
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
            Some(h) => self.send_following_redirects(call, Some(&h)).await,
            None => Ok(response),
        }
    }

    async fn send_following_redirects(
        &self,
        call: &Call<'_>,
        auth: Option<&HeaderValue>,
    ) -> Result<Response> {
        let ctx = call.ctx;
        let origin = call.url.origin();
        let mut url = call.url.clone();
        let mut method = call.method.clone();
        let mut with_body = true;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self
                .inner
                .http
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
            url = next;
        }
        Err(Error::new(
            ErrorKind::Protocol,
            ctx,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }
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
