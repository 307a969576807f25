//! Authentication state shared by every clone of a client: what each
//! registry asked for (learned from `/v2/` or a 401), and access tokens from
//! the Docker token protocol, cached per registry and scope set until they
//! expire.
//!
//! Token requests for the same key are single-flight: fifty layers pulled at
//! once from one repository make one token request, not fifty.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::{HeaderValue, AUTHORIZATION};
use http::StatusCode;
use reqwest::Url;
use serde::Deserialize;

use crate::challenge::AuthChallenge;
use crate::credentials::{Credential, CredentialStore};
use crate::error::{parse_api_errors, Context, Error, ErrorKind, Result};
use crate::trust::Transport;

/// Tokens without `expires_in` live this long (the token spec's default),
/// and shorter lifetimes are raised to it, as Docker does.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The largest token response read.
const MAX_TOKEN_RESPONSE: usize = 1024 * 1024;

/// `repository:<name>:pull`.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// `repository:<name>:pull,push`.
pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

pub const CATALOG_SCOPE: &str = "registry:catalog:*";

/// What a registry wants, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Known {
    /// `/v2/` answered 200 without credentials.
    Open,
    Challenge(AuthChallenge),
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    host: String,
    realm: String,
    service: Option<String>,
    /// Sorted and de-duplicated, so the same set is the same key.
    scopes: Vec<String>,
}

#[derive(Clone)]
struct Token {
    value: String,
    valid_until: Instant,
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<Token>>>;

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

pub(crate) struct Auth {
    transport: Arc<Transport>,
    credentials: CredentialStore,
    known: Mutex<HashMap<String, Known>>,
    tokens: Mutex<HashMap<TokenKey, TokenSlot>>,
}

/// Scope sets are compared sorted: `[b, a]` and `[a, b]` share a token.
fn normalize_scopes(scopes: &[String]) -> Vec<String> {
    let mut s: Vec<String> = scopes.to_vec();
    s.sort();
    s.dedup();
    s
}

fn header(value: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Leave a margin so a token does not expire between check and use.
fn lifetime(expires_in: Option<u64>) -> Duration {
    let secs = Duration::from_secs(expires_in.unwrap_or(0)).max(MIN_TOKEN_LIFETIME);
    secs - (secs / 10).min(Duration::from_secs(30))
}

impl Auth {
    pub fn new(transport: Arc<Transport>, credentials: CredentialStore) -> Auth {
        Auth {
            transport,
            credentials,
            known: Mutex::default(),
            tokens: Mutex::default(),
        }
    }

    pub fn known(&self, host: &str) -> Option<Known> {
        self.known.lock().expect("lock").get(host).cloned()
    }

    pub fn learn(&self, host: &str, known: Known) {
        // Scopes and errors belong to one request; keep the stable part.
        let known = match known {
            Known::Challenge(AuthChallenge::Bearer { realm, service, .. }) => {
                Known::Challenge(AuthChallenge::Bearer {
                    realm,
                    service,
                    scopes: Vec::new(),
                    error: None,
                })
            }
            other => other,
        };
        self.known
            .lock()
            .expect("lock")
            .insert(host.to_string(), known);
    }

    /// The `Authorization` value for a request needing `scopes`.
    /// `registry_url` is where the registry lives (its scheme matters).
    pub async fn header(
        &self,
        host: &str,
        registry_url: &Url,
        known: &Known,
        scopes: &[String],
        ctx: &Context,
    ) -> Result<Option<HeaderValue>> {
        match known {
            Known::Open => Ok(None),
            Known::Challenge(AuthChallenge::Basic) => Ok(self
                .credentials
                .lookup(host)
                .await?
                .and_then(|c| c.basic_header())
                .and_then(|h| header(&h))),
            Known::Challenge(AuthChallenge::Bearer { realm, service, .. }) => {
                let key = TokenKey {
                    host: host.to_string(),
                    realm: realm.clone(),
                    service: service.clone(),
                    scopes: normalize_scopes(scopes),
                };
                let token = self.token(key, registry_url, false, ctx).await?;
                Ok(header(&format!("Bearer {token}")))
            }
        }
    }

    /// After a 401: learn the new challenge, drop the token that failed and
    /// get a fresh one covering the scopes the registry asked for too.
    /// Returns `None` when there is nothing new to try.
    pub async fn reauthenticate(
        &self,
        host: &str,
        registry_url: &Url,
        challenge: AuthChallenge,
        scopes: &[String],
        ctx: &Context,
    ) -> Result<Option<HeaderValue>> {
        self.learn(host, Known::Challenge(challenge.clone()));
        match challenge {
            AuthChallenge::Basic => {
                self.header(
                    host,
                    registry_url,
                    &Known::Challenge(challenge),
                    scopes,
                    ctx,
                )
                .await
            }
            AuthChallenge::Bearer {
                realm,
                service,
                scopes: asked,
                ..
            } => {
                let mut all = scopes.to_vec();
                all.extend(asked);
                let key = TokenKey {
                    host: host.to_string(),
                    realm,
                    service,
                    scopes: normalize_scopes(&all),
                };
                let token = self.token(key, registry_url, true, ctx).await?;
                Ok(header(&format!("Bearer {token}")))
            }
        }
    }

    fn slot(&self, key: &TokenKey) -> TokenSlot {
        self.tokens
            .lock()
            .expect("lock")
            .entry(key.clone())
            .or_default()
            .clone()
    }

    async fn token(
        &self,
        key: TokenKey,
        registry_url: &Url,
        refresh: bool,
        ctx: &Context,
    ) -> Result<String> {
        let slot = self.slot(&key);
        let mut cached = slot.lock().await;
        if let Some(t) = cached.as_ref() {
            if !refresh && t.valid_until > Instant::now() {
                return Ok(t.value.clone());
            }
        }
        let fetched = self.fetch_token(&key, registry_url, ctx).await?;
        let value = fetched.value.clone();
        *cached = Some(fetched);
        Ok(value)
    }

    fn realm_url(&self, key: &TokenKey, registry_url: &Url, ctx: &Context) -> Result<Url> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::Protocol,
                ctx,
                format!("the registry's token realm {:?} {why}", key.realm),
            )
        };
        let url = Url::parse(&key.realm).map_err(|_| bad("is not a URL"))?;
        match url.scheme() {
            "https" => Ok(url),
            // Credentials must not travel in clear text when the registry
            // itself is reached over TLS.
            "http" if registry_url.scheme() == "http" => Ok(url),
            "http" => Err(bad("is plain HTTP while the registry uses HTTPS")),
            _ => Err(bad("is not an http(s) URL")),
        }
    }

    async fn fetch_token(
        &self,
        key: &TokenKey,
        registry_url: &Url,
        ctx: &Context,
    ) -> Result<Token> {
        let url = self.realm_url(key, registry_url, ctx)?;
        let credential = self.credentials.lookup(&key.host).await?;
        let http = self.transport.for_url(&url)?;
        let request = match &credential {
            Some(Credential::IdentityToken(refresh)) => oauth_request(&http, url, key, refresh),
            other => get_request(&http, url, key, other.as_ref()),
        };
        let response = request.send().await.map_err(|e| Error::transport(ctx, e))?;
        let status = response.status();
        let body = read_limited(response, ctx).await?;
        if !status.is_success() {
            let mut err = Error::http(ctx, status, parse_api_errors(&body));
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                err = err.prefixed("the token server refused the credentials");
            }
            return Err(err);
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            Error::new(
                ErrorKind::Protocol,
                ctx,
                "the token server answered invalid JSON",
            )
        })?;
        let value = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Protocol,
                    ctx,
                    "the token server answered no token",
                )
            })?;
        tracing::debug!(host = %key.host, scopes = ?key.scopes, "obtained a registry token");
        Ok(Token {
            value,
            valid_until: Instant::now() + lifetime(parsed.expires_in),
        })
    }
}

/// The token protocol's GET, Basic-authenticated when there are
/// credentials and anonymous otherwise.
fn get_request(
    http: &reqwest::Client,
    mut url: Url,
    key: &TokenKey,
    credential: Option<&Credential>,
) -> reqwest::RequestBuilder {
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = &key.service {
            q.append_pair("service", s);
        }
        for scope in &key.scopes {
            q.append_pair("scope", scope);
        }
        if let Some(user) = credential.and_then(|c| c.username()) {
            q.append_pair("account", user);
        }
    }
    let mut req = http.get(url);
    if let Some(h) = credential
        .and_then(|c| c.basic_header())
        .and_then(|h| header(&h))
    {
        req = req.header(AUTHORIZATION, h);
    }
    req
}

/// The OAuth2 refresh-token grant, for Docker's `identitytoken`.
fn oauth_request(
    http: &reqwest::Client,
    url: Url,
    key: &TokenKey,
    refresh: &str,
) -> reqwest::RequestBuilder {
    let scope = key.scopes.join(" ");
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", "wharf"),
        ("scope", scope.as_str()),
    ];
    if let Some(s) = &key.service {
        form.push(("service", s));
    }
    http.post(url).form(&form)
}

/// Read a small response body, refusing huge ones.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    ctx: &Context,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::transport(ctx, e))?
    {
        if out.len() + chunk.len() > MAX_TOKEN_RESPONSE {
            return Err(Error::new(
                ErrorKind::Protocol,
                ctx,
                "the response is larger than expected",
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_a_set() {
        assert_eq!(
            normalize_scopes(&["b".into(), "a".into(), "b".into()]),
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(push_scope("x/y"), "repository:x/y:pull,push");
    }

    #[test]
    fn token_lifetimes() {
        assert_eq!(lifetime(None), Duration::from_secs(54));
        assert_eq!(lifetime(Some(5)), Duration::from_secs(54));
        assert_eq!(lifetime(Some(3600)), Duration::from_secs(3570));
    }
}
