//! The auth layer: who is asking, and may they do what the endpoint does.
//!
//! Every request is decided here from its route, method and headers alone,
//! before a handler runs, so no answer can depend on whether a repository
//! exists: a client that may not pull a repository gets the same 401 or 403
//! for one that exists as for one that does not.
//!
//! Two modes share the rules: `basic` (Basic credentials on every request,
//! checked against htpasswd) and `token` (the Docker token protocol: clients
//! trade credentials for a short-lived ES256 token at `/auth/token`; Basic
//! credentials are accepted on registry requests too, as some clients send
//! them).
//!
//! Secrets never leave this module: passwords, `Authorization` values and
//! tokens appear in no log line and no error body.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use wharf_auth::{
    token, AccessPolicy, Action, Claims, LimitPolicy, LockedOut, LoginLimiter, Refused,
    Reservation, Scope, TokenService, UserStore,
};
use wharf_oci::RepositoryName;

use crate::body;
use crate::error::{Code, RegistryError};
use crate::handlers::{HandlerResult, Request};
use crate::routes::{Access, Endpoint, Query};
use crate::Registry;

/// Longest `Authorization` value looked at; anything longer is refused
/// unread (a real token is a few KiB).
const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;
/// Largest `POST /auth/token` form body.
const MAX_TOKEN_FORM: usize = 64 * 1024;
/// Longest a login waits for the checks already in flight for its user
/// name or address before it is told to come back (429).
const LOGIN_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// How clients prove who they are.
enum Mode {
    Basic {
        realm: String,
    },
    Token {
        service: TokenService,
        /// The token endpoint's URL; `None`: `http://<Host>/auth/token`.
        realm: Option<String>,
    },
}

/// Users, rules and the rate limiter of one registry.
pub struct AuthLayer {
    users: Arc<UserStore>,
    policy: AccessPolicy,
    limiter: Arc<LoginLimiter>,
    /// Woken whenever a password check ends, for the logins waiting for
    /// room under the limiter.
    check_ended: tokio::sync::Notify,
    mode: Mode,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::Basic { .. } => "basic",
            Mode::Token { .. } => "token",
        };
        f.debug_struct("AuthLayer")
            .field("mode", &mode)
            .field("users", &self.users)
            .field("rules", &self.policy.rules().len())
            .finish_non_exhaustive()
    }
}

impl AuthLayer {
    /// Basic credentials on every request; `realm` names the protection
    /// space in the challenge.
    pub fn basic(users: Arc<UserStore>, policy: AccessPolicy, realm: &str) -> AuthLayer {
        AuthLayer {
            users,
            policy,
            limiter: Arc::default(),
            check_ended: tokio::sync::Notify::new(),
            mode: Mode::Basic {
                realm: realm.to_string(),
            },
        }
    }

    /// The token protocol. `realm` is the token endpoint's URL as clients
    /// reach it; `None` derives it from the request's `Host`.
    pub fn token(
        users: Arc<UserStore>,
        policy: AccessPolicy,
        service: TokenService,
        realm: Option<String>,
    ) -> AuthLayer {
        AuthLayer {
            users,
            policy,
            limiter: Arc::default(),
            check_ended: tokio::sync::Notify::new(),
            mode: Mode::Token { service, realm },
        }
    }

    pub fn with_limits(mut self, limits: LimitPolicy) -> AuthLayer {
        self.limiter = Arc::new(LoginLimiter::new(limits));
        self
    }

    pub fn users(&self) -> &UserStore {
        &self.users
    }

    pub fn policy(&self) -> &AccessPolicy {
        &self.policy
    }
}

/// Who sent a request, as decided before any handler ran.
pub struct Caller {
    user: Option<String>,
    address: IpAddr,
    grant: Grant,
}

enum Grant {
    /// No auth layer: everything is allowed.
    Everything,
    /// Anonymous or Basic credentials: the rules decide.
    Rules(Arc<AuthLayer>),
    /// A bearer token: its `access` claim decides.
    Token(Arc<AuthLayer>, Claims),
}

impl Caller {
    /// The caller of a registry without an auth layer.
    pub fn unrestricted(address: IpAddr) -> Caller {
        Caller {
            user: None,
            address,
            grant: Grant::Everything,
        }
    }

    /// No auth layer is configured.
    pub fn is_unrestricted(&self) -> bool {
        matches!(self.grant, Grant::Everything)
    }

    pub fn may(&self, repository: &RepositoryName, action: Action) -> bool {
        match &self.grant {
            Grant::Everything => true,
            Grant::Rules(layer) => {
                layer
                    .policy
                    .allows(self.user.as_deref(), repository.as_str(), action)
            }
            Grant::Token(_, claims) => claims.grants(repository.as_str(), action),
        }
    }

    /// For the catalog, which a token does not list repository by repository:
    /// the rules decide for the token's user.
    pub fn may_list(&self, repository: &str) -> bool {
        match &self.grant {
            Grant::Everything => true,
            Grant::Rules(layer) | Grant::Token(layer, _) => {
                layer
                    .policy
                    .allows(self.user.as_deref(), repository, Action::Pull)
            }
        }
    }

    fn label(&self) -> &str {
        self.user.as_deref().unwrap_or("anonymous")
    }
}

/// What an endpoint needs from the caller, with the repository and
/// reference an access decision names.
enum Requirement {
    Open,
    Authenticated,
    Catalog,
    Repository(RepositoryName, Action, String),
}

fn requirement(endpoint: &Endpoint) -> Requirement {
    match (endpoint.access(), endpoint.repository()) {
        (Access::Open, _) => Requirement::Open,
        (Access::Authenticated, _) => Requirement::Authenticated,
        (Access::Catalog, _) => Requirement::Catalog,
        (Access::Repository(action), Some(repo)) => {
            Requirement::Repository(repo.clone(), action, endpoint.reference())
        }
        // Every operation that needs a repository action names a repository
        // (checked for each operation by the routes' tests); were one not
        // to, only an authenticated user gets past this layer.
        (Access::Repository(_), None) => Requirement::Authenticated,
    }
}

/// Decides the request: the caller, or the 401/403/429 to answer.
pub async fn authorize(
    registry: &Registry,
    endpoint: &Endpoint,
    headers: &HeaderMap,
    address: IpAddr,
) -> Result<Caller, RegistryError> {
    let Some(layer) = registry.config().auth.clone() else {
        return Ok(Caller::unrestricted(address));
    };
    let required = requirement(endpoint);
    if matches!(required, Requirement::Open) {
        return Ok(Caller {
            user: None,
            address,
            grant: Grant::Rules(layer),
        });
    }
    let caller = identify(&layer, headers, address).await?;
    match required {
        Requirement::Open => Ok(caller),
        Requirement::Authenticated | Requirement::Catalog => {
            let is_catalog = matches!(required, Requirement::Catalog);
            let anonymous_ok = is_catalog && layer.policy.anonymous_pull_anywhere();
            if caller.user.is_some() || anonymous_ok {
                Ok(caller)
            } else {
                let scope = is_catalog.then(|| "registry:catalog:*".into());
                Err(unauthorized(
                    &layer,
                    headers,
                    scope,
                    "authentication required",
                ))
            }
        }
        Requirement::Repository(repo, action, reference) => {
            if caller.may(&repo, action) {
                Ok(caller)
            } else {
                Err(deny(&layer, &caller, headers, &repo, action, &reference))
            }
        }
    }
}

/// 401 when better credentials could help (none given, or a token without
/// the scope the rules would grant), 403 when the user may not.
fn deny(
    layer: &AuthLayer,
    caller: &Caller,
    headers: &HeaderMap,
    repo: &RepositoryName,
    action: Action,
    reference: &str,
) -> RegistryError {
    let may_with_new_token = matches!(caller.grant, Grant::Token(..))
        && layer
            .policy
            .allows(caller.user.as_deref(), repo.as_str(), action);
    let outcome = if caller.user.is_none() {
        "unauthenticated"
    } else {
        "denied"
    };
    audit(
        caller.label(),
        caller.address,
        action.as_str(),
        repo.as_str(),
        reference,
        outcome,
    );
    if caller.user.is_none() || may_with_new_token {
        // A push also needs pull (clients check what exists first).
        let actions = if action == Action::Push {
            "pull,push"
        } else {
            action.as_str()
        };
        let scope = format!("repository:{repo}:{actions}");
        return unauthorized(layer, headers, Some(scope), "authentication required");
    }
    RegistryError::new(
        Code::Denied,
        format!("{} may not {action} {repo}", caller.label()),
    )
}

/// The caller named by the `Authorization` header (anonymous without one).
async fn identify(
    layer: &Arc<AuthLayer>,
    headers: &HeaderMap,
    address: IpAddr,
) -> Result<Caller, RegistryError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller {
            user: None,
            address,
            grant: Grant::Rules(layer.clone()),
        });
    };
    let malformed = |why: &str| {
        audit("unknown", address, "login", "", "", why);
        unauthorized(layer, headers, None, "malformed Authorization header")
    };
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(malformed("oversized-authorization"));
    }
    let Ok(value) = value.to_str() else {
        return Err(malformed("malformed-authorization"));
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let Some((user, password)) = basic_credentials(rest) else {
            return Err(malformed("malformed-authorization"));
        };
        if user.is_empty() && password.is_empty() {
            // Some clients answer a Basic challenge with empty credentials
            // when they have none: that is an anonymous request.
            return Ok(Caller {
                user: None,
                address,
                grant: Grant::Rules(layer.clone()),
            });
        }
        let user = login(layer, headers, &user, &password, address).await?;
        return Ok(Caller {
            user: Some(user),
            address,
            grant: Grant::Rules(layer.clone()),
        });
    }
    match (&layer.mode, scheme.eq_ignore_ascii_case("bearer")) {
        (Mode::Token { service, .. }, true) => match service.verify(rest.trim()) {
            Ok(claims) => Ok(Caller {
                user: claims.user().map(str::to_string),
                address,
                grant: Grant::Token(layer.clone(), claims),
            }),
            Err(rejected) => {
                audit(
                    "unknown",
                    address,
                    "token",
                    "",
                    "",
                    &format!("invalid-token: {}", rejected.0),
                );
                Err(
                    unauthorized(layer, headers, None, "invalid or expired token").with_header(
                        header::WWW_AUTHENTICATE,
                        challenge_invalid_token(layer, headers),
                    ),
                )
            }
        },
        _ => Err(malformed("unsupported-scheme")),
    }
}

/// `user:password` from a Basic credential, if well-formed.
fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    if user.is_empty() && !password.is_empty() {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

/// Checks a password under the rate limiter. A locked-out attempt is refused
/// with 429 before bcrypt runs; a wrong password is 401.
async fn login(
    layer: &Arc<AuthLayer>,
    headers: &HeaderMap,
    user: &str,
    password: &str,
    address: IpAddr,
) -> Result<String, RegistryError> {
    let reservation = match reserve_check(layer, user, address).await {
        Ok(reservation) => reservation,
        Err(locked) => {
            audit(user, address, "login", "", "", "rate-limited");
            return Err(too_many_logins(locked));
        }
    };
    let verified = {
        let (layer, user, password) = (layer.clone(), user.to_string(), password.to_string());
        // bcrypt takes a good fraction of a second: keep it off the
        // connection threads. The outcome is recorded by the blocking task
        // itself, so a client that hangs up mid-check frees no room for
        // another guess before its check has ended and counted.
        tokio::task::spawn_blocking(move || {
            let verified = layer.users.verify(&user, &password);
            if verified {
                reservation.succeeded();
            } else {
                reservation.failed(Instant::now());
            }
            layer.check_ended.notify_waiters();
            verified
        })
        .await
        .unwrap_or(false)
    };
    if verified {
        Ok(user.to_string())
    } else {
        audit(user, address, "login", "", "", "bad-credentials");
        Err(unauthorized(
            layer,
            headers,
            None,
            "invalid user name or password",
        ))
    }
}

/// Room under the limiter for one password check. While the user name's
/// or the address's checks in flight could each still fail, a further
/// attempt waits for one of them to end (a success lets it through, and
/// the success cache spares it bcrypt; failures lock it out), up to
/// [`LOGIN_QUEUE_WAIT`].
async fn reserve_check(
    layer: &AuthLayer,
    user: &str,
    address: IpAddr,
) -> Result<Reservation, LockedOut> {
    let deadline = tokio::time::Instant::now() + LOGIN_QUEUE_WAIT;
    loop {
        // Registered before asking, so an end between the answer and the
        // wait is not missed.
        let ended = layer.check_ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        match layer.limiter.reserve(user, address, Instant::now()) {
            Ok(reservation) => return Ok(reservation),
            Err(Refused::LockedOut(locked)) => return Err(locked),
            Err(Refused::Busy) => {
                if tokio::time::timeout_at(deadline, ended).await.is_err() {
                    return Err(LockedOut {
                        retry_after: Duration::from_secs(1),
                    });
                }
            }
        }
    }
}

fn too_many_logins(locked: LockedOut) -> RegistryError {
    let seconds = locked.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    RegistryError::new(
        Code::TooManyRequests,
        format!("too many failed logins; retry in {seconds} s"),
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
}

fn unauthorized(
    layer: &AuthLayer,
    headers: &HeaderMap,
    scope: Option<String>,
    message: &str,
) -> RegistryError {
    RegistryError::new(Code::Unauthorized, message).with_header(
        header::WWW_AUTHENTICATE,
        challenge(layer, headers, scope.as_deref(), None),
    )
}

fn challenge_invalid_token(layer: &AuthLayer, headers: &HeaderMap) -> HeaderValue {
    challenge(layer, headers, None, Some("invalid_token"))
}

/// `Basic realm="…"` or `Bearer realm="…",service="…"[,scope="…"][,error="…"]`.
fn challenge(
    layer: &AuthLayer,
    headers: &HeaderMap,
    scope: Option<&str>,
    error: Option<&str>,
) -> HeaderValue {
    let text = match &layer.mode {
        Mode::Basic { realm } => format!("Basic realm=\"{}\"", quoted(realm)),
        Mode::Token { service, realm } => {
            let realm = realm.clone().unwrap_or_else(|| {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost");
                format!("http://{host}/auth/token")
            });
            let mut text = format!(
                "Bearer realm=\"{}\",service=\"{}\"",
                quoted(&realm),
                quoted(service.service())
            );
            if let Some(scope) = scope {
                text.push_str(&format!(",scope=\"{}\"", quoted(scope)));
            }
            if let Some(error) = error {
                text.push_str(&format!(",error=\"{error}\""));
            }
            text
        }
    };
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"wharf\""))
}

/// A value safe inside a quoted-string.
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '"' || c == '\\' { '_' } else { c })
        .collect()
}

/// One audit line: user (or `anonymous`), client address, action,
/// repository, tag or digest, outcome.
pub fn audit(
    user: &str,
    address: IpAddr,
    action: &str,
    repository: &str,
    reference: &str,
    outcome: &str,
) {
    tracing::info!(
        target: "wharf::audit",
        user,
        client = %address,
        action,
        repository,
        reference,
        outcome,
    );
}

/// A write worth an audit line once its outcome is known.
pub struct AuditEvent {
    action: &'static str,
    repository: String,
    reference: String,
}

impl AuditEvent {
    /// The event a request will produce ([`Endpoint::audit_event`]), with
    /// the reference it names: the tag or digest of the path, the `?digest=`
    /// of a blob push, or what a mount copies from where.
    pub fn for_request(endpoint: &Endpoint, query: &Query) -> Option<AuditEvent> {
        let action = endpoint.audit_event()?;
        let reference = match endpoint {
            Endpoint::UploadPut(..) | Endpoint::UploadMonolithic(_) => {
                query.get("digest").unwrap_or("").to_string()
            }
            Endpoint::BlobMount(_) => {
                let mount = query.get("mount").unwrap_or("");
                let from = query.get("from").unwrap_or("");
                format!("{mount} from {from}")
            }
            _ => endpoint.reference(),
        };
        Some(AuditEvent {
            action,
            repository: endpoint.repository()?.to_string(),
            reference,
        })
    }

    pub fn log(&self, caller: &Caller, result: &HandlerResult) {
        let (outcome, reference) = match result {
            Ok(r) => {
                let outcome = match (self.action, r.status()) {
                    ("mount", StatusCode::ACCEPTED) => "not-mounted-upload-started".to_string(),
                    (_, s) if s.is_success() => "ok".to_string(),
                    (_, s) => format!("failed-{}", s.as_u16()),
                };
                // A manifest pushed by tag: name the digest it got too.
                let digest = r
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|d| d.to_str().ok())
                    .filter(|d| self.action == "push-manifest" && *d != self.reference);
                let reference = match digest {
                    Some(d) => format!("{}@{d}", self.reference),
                    None => self.reference.clone(),
                };
                (outcome, reference)
            }
            Err(e) => (
                format!("failed-{}", e.code.as_str()),
                self.reference.clone(),
            ),
        };
        audit(
            caller.label(),
            caller.address,
            self.action,
            &self.repository,
            &reference,
            &outcome,
        );
    }
}

// --- the token endpoint ----------------------------------------------------

/// How a token is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRequest {
    /// `GET /auth/token?service=…&scope=…&account=…`, credentials (if any)
    /// in a Basic header.
    Query,
    /// `POST /auth/token` with an OAuth2 password-grant form.
    OAuthForm,
}

/// The token endpoint, asked as `form` says.
pub async fn token_endpoint(
    registry: &Registry,
    req: Request<'_>,
    form: TokenRequest,
) -> HandlerResult {
    let address = req.caller.address;
    let layer = match registry.config().auth.clone() {
        Some(layer) if matches!(layer.mode, Mode::Token { .. }) => layer,
        _ => return Err(RegistryError::not_found()),
    };
    let Mode::Token { service, .. } = &layer.mode else {
        return Err(RegistryError::not_found());
    };
    let (user, scopes, oauth) = if form == TokenRequest::OAuthForm {
        let declared = body::declared_length(req.headers);
        let limits = &registry.config().limits;
        let form = body::read_limited(req.body, declared, MAX_TOKEN_FORM, "the token form", limits)
            .await?;
        let form = Query::parse_form(&form);
        if form.get("grant_type") != Some("password") {
            return Err(RegistryError::new(
                Code::Unsupported,
                "only grant_type=password is supported; use GET for anonymous or Basic-authenticated tokens",
            ));
        }
        let user = form.get("username").unwrap_or("");
        let password = form.get("password").unwrap_or("");
        let user = login(&layer, req.headers, user, password, address).await?;
        (Some(user), Scope::parse_all(form.all("scope")), true)
    } else {
        let caller = identify(&layer, req.headers, address).await?;
        (caller.user, Scope::parse_all(req.query.all("scope")), false)
    };
    let granted = token::grant(&layer.policy, user.as_deref(), &scopes);
    let issued = service
        .issue(user.as_deref(), granted, SystemTime::now())
        .map_err(|e| {
            tracing::error!(error = %e, "cannot issue a token");
            RegistryError::new(Code::Internal, "cannot issue a token; see the registry log")
        })?;
    let mut json = serde_json::to_value(&issued).expect("token serialises");
    if oauth {
        json["scope"] = serde_json::Value::from(
            scopes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body::full(serde_json::to_vec(&json).expect("json")))
        .map_err(|e| RegistryError::new(Code::Internal, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_parse_or_refuse() {
        let enc = |s: &[u8]| STANDARD.encode(s);
        assert_eq!(
            basic_credentials(&enc(b"alice:pa:ss")),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(
            basic_credentials(&enc(b"alice:")),
            Some(("alice".into(), "".into()))
        );
        assert_eq!(basic_credentials(&enc(b"no-colon")), None);
        assert_eq!(basic_credentials(&enc(b":pw")), None);
        assert_eq!(basic_credentials(&enc(b":")), Some(("".into(), "".into())));
        assert_eq!(basic_credentials(&enc(&[0xff, b':', 0xfe])), None);
        assert_eq!(basic_credentials("%%%not base64"), None);
    }

    #[test]
    fn requirements_name_the_repository_and_reference() {
        let r: RepositoryName = "a/b".parse().unwrap();
        let d: wharf_oci::Digest =
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .unwrap();
        let tag = wharf_oci::Target::Tag("v1".parse().unwrap());
        let named = |e: Endpoint| match requirement(&e) {
            Requirement::Repository(repo, action, reference) => Some((repo, action, reference)),
            _ => None,
        };
        assert_eq!(
            named(Endpoint::ManifestPut(r.clone(), tag)),
            Some((r.clone(), Action::Push, "v1".to_string()))
        );
        assert_eq!(
            named(Endpoint::BlobDelete(r.clone(), d.clone())),
            Some((r.clone(), Action::Delete, d.to_string()))
        );
        assert_eq!(
            named(Endpoint::UploadStatus(r.clone(), "x".into())),
            Some((r, Action::Push, String::new()))
        );
        assert!(matches!(requirement(&Endpoint::Metrics), Requirement::Open));
        assert!(matches!(
            requirement(&Endpoint::Base),
            Requirement::Authenticated
        ));
        assert!(matches!(
            requirement(&Endpoint::Catalog),
            Requirement::Catalog
        ));
    }

    #[test]
    fn quoted_strings_cannot_break_out() {
        assert_eq!(quoted("a\"b\\c\r\nd"), "a_b_cd");
    }
}
