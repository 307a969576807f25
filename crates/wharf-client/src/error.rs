//! One error type for every operation. Each error says what was being done
//! (operation, registry, repository, reference), what went wrong (the HTTP
//! status and the registry's own error codes when there are any) and which
//! [`ErrorKind`] it is, so a caller can print one clear line per image and
//! decide what to do without parsing text.
//!
//! Invariant: no secret (password, token, signed redirect URL) ever reaches a
//! message. Transport errors are stored without their URL for that reason.

use std::fmt;

use http::StatusCode;
use serde::Deserialize;

/// What kind of failure this is, for callers that react differently to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The repository, manifest, tag, blob or upload does not exist.
    NotFound,
    /// No or wrong credentials (HTTP 401, `UNAUTHORIZED`).
    Unauthorized,
    /// Authenticated but not allowed (HTTP 403, `DENIED`).
    Denied,
    /// HTTP 429 / `TOOMANYREQUESTS` that retries did not get past.
    RateLimited,
    /// Content does not match the digest it was asked for or announced with.
    DigestMismatch,
    /// Connecting, sending or receiving failed (refused, reset, timed out).
    Network,
    /// The TLS handshake failed (unknown CA, wrong name, expired certificate).
    Tls,
    /// The registry answered with a server error (5xx) that retries did not fix.
    Server,
    /// The registry answered something this client cannot use.
    Protocol,
    /// Local configuration is unusable: a CA file, an auth file, a helper.
    Config,
    /// The caller asked for something invalid (bad host, bad argument).
    Invalid,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Denied => "denied",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::DigestMismatch => "digest mismatch",
            ErrorKind::Network => "network error",
            ErrorKind::Tls => "TLS error",
            ErrorKind::Server => "server error",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Config => "configuration error",
            ErrorKind::Invalid => "invalid request",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the spec's error body `{"errors":[{"code":…,"message":…}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Deserialize)]
struct ApiErrors {
    #[serde(default)]
    errors: Vec<ApiError>,
}

/// Parse a registry error body; anything else (HTML, empty) yields nothing.
pub(crate) fn parse_api_errors(body: &[u8]) -> Vec<ApiError> {
    serde_json::from_slice::<ApiErrors>(body)
        .map(|e| e.errors)
        .unwrap_or_default()
}

/// What was being done: `get manifest 127.0.0.1:5000/app:v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub operation: &'static str,
    pub registry: String,
    pub repository: Option<String>,
    /// `:tag` or `@digest`, ready to append to the repository.
    pub reference: Option<String>,
}

impl Context {
    pub fn new(operation: &'static str, registry: &str) -> Context {
        Context {
            operation,
            registry: registry.to_string(),
            repository: None,
            reference: None,
        }
    }

    pub fn repository(mut self, repository: impl fmt::Display) -> Context {
        self.repository = Some(repository.to_string());
        self
    }

    pub fn tag_or_digest(mut self, target: impl fmt::Display) -> Context {
        let t = target.to_string();
        let sep = if t.contains(':') { '@' } else { ':' };
        self.reference = Some(format!("{sep}{t}"));
        self
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.operation, self.registry)?;
        if let Some(r) = &self.repository {
            write!(f, "/{r}")?;
        }
        if let Some(r) = &self.reference {
            f.write_str(r)?;
        }
        Ok(())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failed registry operation.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {message}")]
pub struct Error {
    kind: ErrorKind,
    context: Box<Context>,
    status: Option<StatusCode>,
    api_errors: Vec<ApiError>,
    message: String,
    /// Trying again cannot help (a name that does not exist, a peer that
    /// speaks another protocol), even though the kind is usually transient.
    permanent: bool,
    /// Already tried as often as the retry policy allows: a caller's own
    /// retry loop must not multiply the tries (a ping inside a request).
    pub(crate) retries_spent: bool,
    #[source]
    source: Option<Source>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, context: &Context, message: impl Into<String>) -> Error {
        Error {
            kind,
            context: Box::new(context.clone()),
            status: None,
            api_errors: Vec::new(),
            message: message.into(),
            permanent: false,
            retries_spent: false,
            source: None,
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<Source>) -> Error {
        self.source = Some(source.into());
        self
    }

    /// An unsuccessful HTTP answer, classified by status and error codes.
    pub(crate) fn http(context: &Context, status: StatusCode, api_errors: Vec<ApiError>) -> Error {
        let mut message = format!("HTTP {status}");
        for e in &api_errors {
            message.push_str(&format!(": {}", e.code));
            if !e.message.is_empty() {
                message.push_str(&format!(" ({})", e.message));
            }
        }
        let mut err = Error::new(classify(status, &api_errors), context, message);
        err.status = Some(status);
        err.api_errors = api_errors;
        err
    }

    /// A transport failure. The URL is dropped: it may be a signed one.
    pub(crate) fn transport(context: &Context, err: reqwest::Error) -> Error {
        let err = err.without_url();
        let peer = peer_mismatch(&err);
        let kind = if is_tls(&err) {
            ErrorKind::Tls
        } else if err.is_builder() {
            ErrorKind::Invalid
        } else {
            ErrorKind::Network
        };
        let (message, permanent) = match (peer, name_lookup(&err)) {
            (Some(PeerMismatch::PlainHttp), _) => (
                format!(
                    "this registry speaks plain HTTP, not TLS (hint: add --insecure={0}, or write http://{0})",
                    context.registry
                ),
                true,
            ),
            (Some(PeerMismatch::Tls), _) => (
                format!(
                    "this registry speaks TLS, not plain HTTP (hint: write https://{}, with --ca-file if its CA is not a system one)",
                    context.registry
                ),
                true,
            ),
            (None, Some(NameLookup::NoSuchHost)) => {
                (format!("no such host: {}", context.registry), true)
            }
            (None, _) => (describe_transport(&err), false),
        };
        let mut error = Error::new(kind, context, message).with_source(err);
        error.permanent = permanent;
        error
    }

    /// The peer answered a plain-HTTP request in TLS.
    pub(crate) fn peer_speaks_tls(&self) -> bool {
        self.source
            .as_deref()
            .and_then(|s| s.downcast_ref::<reqwest::Error>())
            .is_some_and(|e| peer_mismatch(e) == Some(PeerMismatch::Tls))
    }

    /// Say where in the operation it failed: `<prefix>: <message>`.
    pub(crate) fn prefixed(mut self, prefix: &str) -> Error {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    pub(crate) fn digest_mismatch(context: &Context, expected: &str, actual: &str) -> Error {
        Error::new(
            ErrorKind::DigestMismatch,
            context,
            format!("content has digest {actual}, expected {expected}"),
        )
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What went wrong, without the operation it happened in.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The HTTP status, when the registry answered at all.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// The registry's error codes and messages, when its body had them.
    pub fn api_errors(&self) -> &[ApiError] {
        &self.api_errors
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// Worth trying again later (the same request might succeed).
    pub fn is_transient(&self) -> bool {
        !self.permanent
            && matches!(
                self.kind,
                ErrorKind::Network | ErrorKind::RateLimited | ErrorKind::Server
            )
    }
}

/// Status first (it is what every registry gets right), then error codes.
fn classify(status: StatusCode, api_errors: &[ApiError]) -> ErrorKind {
    match status.as_u16() {
        401 => return ErrorKind::Unauthorized,
        403 => return ErrorKind::Denied,
        404 => return ErrorKind::NotFound,
        429 => return ErrorKind::RateLimited,
        _ => {}
    }
    for e in api_errors {
        match e.code.as_str() {
            "UNAUTHORIZED" => return ErrorKind::Unauthorized,
            "DENIED" => return ErrorKind::Denied,
            "TOOMANYREQUESTS" => return ErrorKind::RateLimited,
            "DIGEST_INVALID" => return ErrorKind::DigestMismatch,
            c if c.ends_with("_UNKNOWN") => return ErrorKind::NotFound,
            _ => {}
        }
    }
    if status.is_server_error() {
        ErrorKind::Server
    } else {
        ErrorKind::Protocol
    }
}

/// Every error in the chain, looking inside `io::Error`s too (their
/// `source()` skips the error they wrap, which is where rustls's lives).
fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    let mut next = Some(err);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|e| e as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
        Some(current)
    })
}

fn is_tls(err: &reqwest::Error) -> bool {
    chain(err).any(|e| e.downcast_ref::<rustls::Error>().is_some())
}

/// Which other protocol the peer spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerMismatch {
    /// A TLS client got plain bytes (`HTTP/1.1 400 …`) where a TLS record
    /// belongs: rustls calls it a corrupt message of type InvalidContentType.
    PlainHttp,
    /// A plain-HTTP client got a TLS record (an alert starts with 0x15)
    /// where a status line belongs.
    Tls,
}

fn peer_mismatch(err: &reqwest::Error) -> Option<PeerMismatch> {
    chain(err).find_map(|e| {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
            )
            .then_some(PeerMismatch::PlainHttp);
        }
        // hyper's parse errors are not public types; their text is stable.
        (e.to_string() == "invalid HTTP version parsed").then_some(PeerMismatch::Tls)
    })
}

/// What a failed name lookup says about the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameLookup {
    /// The resolver answered that the name does not exist (NXDOMAIN,
    /// `EAI_NONAME`, `EAI_NODATA`): asking again gives the same answer.
    NoSuchHost,
    /// The resolver could not answer (`EAI_AGAIN`, a timeout): worth retrying.
    Transient,
}

/// The resolver's verdict, when the failure was the name lookup. The std
/// resolver's errors carry only `gai_strerror`'s text, so that is matched.
fn name_lookup(err: &reqwest::Error) -> Option<NameLookup> {
    // hyper says "dns error" and wraps the resolver's own words.
    let text: Vec<String> = chain(err).map(|e| e.to_string()).collect();
    let text = text.join(": ");
    (text.contains("dns error") || text.contains("failed to lookup address information"))
        .then(|| classify_lookup(&text))
}

fn classify_lookup(text: &str) -> NameLookup {
    const NO_SUCH_HOST: &[&str] = &[
        "Name or service not known",
        "No address associated with hostname",
        "nodename nor servname provided, or not known",
    ];
    if NO_SUCH_HOST.iter().any(|m| text.contains(m)) {
        NameLookup::NoSuchHost
    } else {
        NameLookup::Transient
    }
}

/// A short cause: the innermost message is usually the informative one
/// ("connection refused", "invalid peer certificate: UnknownIssuer").
fn describe_transport(err: &reqwest::Error) -> String {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else if err.is_body() || err.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    match chain(err).last() {
        Some(root) if !std::ptr::addr_eq(root, err) => format!("{what}: {root}"),
        _ => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context::new("get manifest", "r.example")
            .repository("a/b")
            .tag_or_digest("v1")
    }

    #[test]
    fn message_names_operation_status_and_codes() {
        let e = Error::http(
            &ctx(),
            StatusCode::NOT_FOUND,
            parse_api_errors(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
        );
        assert_eq!(
            e.to_string(),
            "get manifest r.example/a/b:v1: HTTP 404 Not Found: MANIFEST_UNKNOWN (manifest unknown)"
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.api_errors()[0].code, "MANIFEST_UNKNOWN");
    }

    #[test]
    fn digests_print_with_at() {
        let c = Context::new("get blob", "r").repository("x").tag_or_digest(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        );
        assert!(c.to_string().starts_with("get blob r/x@sha256:e3b0"));
    }

    #[test]
    fn lookup_failures_are_told_apart() {
        for permanent in [
            "dns error: failed to lookup address information: Name or service not known",
            "failed to lookup address information: No address associated with hostname",
        ] {
            assert_eq!(classify_lookup(permanent), NameLookup::NoSuchHost);
        }
        assert_eq!(
            classify_lookup(
                "failed to lookup address information: Temporary failure in name resolution"
            ),
            NameLookup::Transient
        );
    }

    #[test]
    fn classification() {
        let k = |s: u16, body: &[u8]| {
            classify(StatusCode::from_u16(s).unwrap(), &parse_api_errors(body))
        };
        assert_eq!(k(401, b""), ErrorKind::Unauthorized);
        assert_eq!(k(403, b""), ErrorKind::Denied);
        assert_eq!(k(429, b""), ErrorKind::RateLimited);
        assert_eq!(k(503, b"<html>"), ErrorKind::Server);
        assert_eq!(
            k(400, br#"{"errors":[{"code":"DENIED"}]}"#),
            ErrorKind::Denied
        );
        assert_eq!(
            k(400, br#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}"#),
            ErrorKind::NotFound
        );
        assert_eq!(k(400, b"{}"), ErrorKind::Protocol);
    }
}
