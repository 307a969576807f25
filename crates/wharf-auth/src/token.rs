//! The Docker registry token protocol: scopes, the token's claims, and an
//! ES256 key that signs and verifies them.
//!
//! wharf is its own token server: it signs with a key it holds and verifies
//! only tokens signed with that key. Clients treat the token as opaque.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Serialize};

use crate::access::{AccessPolicy, Action, Actions};
use crate::AuthError;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(10);
/// How far before `iat` a token is already valid, for clients whose clock is
/// a little behind the registry's.
const NOT_BEFORE_SLACK: Duration = Duration::from_secs(5);

/// One requested scope: `repository:<name>:<actions>` or
/// `registry:catalog:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Scope {
    /// Parses one scope. The name may itself contain `:` (a host with a
    /// port), so the type ends at the first colon and the actions start after
    /// the last. A type with a class (`repository(plugin)`) keeps its type.
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split_once('(').map_or(kind, |(k, _)| k);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Scope {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    /// Every scope in a list of `scope` values; one value may hold several
    /// scopes separated by spaces (the OAuth2 form). Unparseable ones are
    /// skipped: a token simply does not grant them.
    pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
        values
            .into_iter()
            .flat_map(str::split_whitespace)
            .filter_map(Scope::parse)
            .collect()
    }

    pub fn repository(name: &str, actions: Actions) -> Scope {
        Scope {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.names(),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// One entry of the token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user name; empty for an anonymous client.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<ResourceActions>,
}

impl Claims {
    /// `None` for an anonymous token.
    pub fn user(&self) -> Option<&str> {
        Some(self.sub.as_str()).filter(|s| !s.is_empty())
    }

    /// The actions this token grants on repository `name`.
    pub fn repository_actions(&self, name: &str) -> Actions {
        self.access
            .iter()
            .filter(|r| r.kind == "repository" && r.name == name)
            .fold(Actions::NONE, |set, r| {
                set.union(Actions::from_scope_names(
                    r.actions.iter().map(String::as_str),
                ))
            })
    }

    pub fn grants(&self, name: &str, action: Action) -> bool {
        self.repository_actions(name).contains(action)
    }

    pub fn grants_catalog(&self) -> bool {
        self.access.iter().any(|r| {
            r.kind == "registry" && r.name == "catalog" && r.actions.iter().any(|a| a == "*")
        })
    }
}

/// The granted subset of `requested`: for each repository scope, the actions
/// the policy allows `user`; `registry:catalog:*` when the user may pull
/// something (the catalog itself is filtered per repository). Scopes that
/// end up with no action are left out.
pub fn grant(
    policy: &AccessPolicy,
    user: Option<&str>,
    requested: &[Scope],
) -> Vec<ResourceActions> {
    let mut granted: Vec<ResourceActions> = Vec::new();
    for scope in requested {
        let actions = match (scope.kind.as_str(), scope.name.as_str()) {
            ("repository", name) => {
                let asked = Actions::from_scope_names(scope.actions.iter().map(String::as_str));
                policy.allowed(user, name, asked).names()
            }
            ("registry", "catalog")
                if scope.actions.iter().any(|a| a == "*")
                    && (user.is_some() || policy.anonymous_pull_anywhere()) =>
            {
                vec!["*".to_string()]
            }
            _ => Vec::new(),
        };
        if actions.is_empty() {
            continue;
        }
        match granted
            .iter_mut()
            .find(|r| r.kind == scope.kind && r.name == scope.name)
        {
            Some(existing) => {
                for a in actions {
                    if !existing.actions.contains(&a) {
                        existing.actions.push(a);
                    }
                }
            }
            None => granted.push(ResourceActions {
                kind: scope.kind.clone(),
                name: scope.name.clone(),
                actions,
            }),
        }
    }
    granted
}

/// The ES256 key pair tokens are signed with.
pub struct TokenKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// A fresh key and its PKCS#8 PEM text.
    pub fn generate() -> Result<(TokenKey, String), AuthError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| AuthError::Key("cannot generate a P-256 key".into()))?;
        let pem_text = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
        Ok((TokenKey::from_pkcs8(pkcs8.as_ref())?, pem_text))
    }

    /// A key from PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, P-256).
    pub fn from_pem(text: &[u8]) -> Result<TokenKey, AuthError> {
        let block = pem::parse(text).map_err(|e| AuthError::Key(format!("not PEM: {e}")))?;
        if block.tag() != "PRIVATE KEY" {
            return Err(AuthError::Key(format!(
                "expected a PKCS#8 \"PRIVATE KEY\" block, found {:?}",
                block.tag()
            )));
        }
        TokenKey::from_pkcs8(block.contents())
    }

    fn from_pkcs8(der: &[u8]) -> Result<TokenKey, AuthError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|_| AuthError::Key("not a P-256 (ES256) private key".into()))?;
        Ok(TokenKey {
            encoding: EncodingKey::from_ec_der(der),
            decoding: DecodingKey::from_ec_der(pair.public_key().as_ref()),
        })
    }

    /// Loads the key at `path`, or generates one there (mode 0600, written
    /// atomically) when the file does not exist.
    pub fn load_or_generate(path: &Path) -> Result<TokenKey, AuthError> {
        match std::fs::read(path) {
            Ok(text) => TokenKey::from_pem(&text).map_err(|e| match e {
                AuthError::Key(why) => AuthError::Key(format!("{}: {why}", path.display())),
                other => other,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key, text) = TokenKey::generate()?;
                write_private(path, text.as_bytes())?;
                tracing::info!(path = %path.display(), "generated a new token signing key");
                Ok(key)
            }
            Err(e) => Err(AuthError::Io {
                path: path.to_path_buf(),
                source: e,
            }),
        }
    }
}

/// Writes `bytes` to `path` with mode 0600: a temporary file beside it,
/// fsynced, then renamed into place.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| AuthError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file path",
        ))
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// A token as the token endpoint returns it.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    pub token: String,
    pub access_token: String,
    pub expires_in: u64,
    pub issued_at: String,
}

/// Why a presented token was refused. Deliberately coarse: the reason goes
/// to the log, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token refused: {0}")]
pub struct TokenRejected(pub String);

/// Issues and verifies tokens for one registry.
#[derive(Debug)]
pub struct TokenService {
    key: TokenKey,
    issuer: String,
    service: String,
    ttl: Duration,
}

impl TokenService {
    pub fn new(key: TokenKey, issuer: &str, service: &str, ttl: Duration) -> TokenService {
        TokenService {
            key,
            issuer: issuer.to_string(),
            service: service.to_string(),
            ttl,
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs a token for `user` (`None`: anonymous) granting `access`,
    /// issued at `now`.
    pub fn issue(
        &self,
        user: Option<&str>,
        access: Vec<ResourceActions>,
        now: SystemTime,
    ) -> Result<IssuedToken, AuthError> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: user.unwrap_or("").to_string(),
            aud: self.service.clone(),
            exp: (iat + self.ttl).as_secs(),
            nbf: iat.saturating_sub(NOT_BEFORE_SLACK).as_secs(),
            iat: iat.as_secs(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key.encoding)
                .map_err(|e| AuthError::Key(format!("cannot sign a token: {e}")))?;
        Ok(IssuedToken {
            access_token: token.clone(),
            token,
            expires_in: self.ttl.as_secs(),
            issued_at: rfc3339(iat.as_secs()),
        })
    }

    /// Checks signature, algorithm (ES256 only), issuer, audience, expiry and
    /// not-before (with [`LEEWAY`]).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenRejected> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.service]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY.as_secs();
        jsonwebtoken::decode::<Claims>(token, &self.key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| TokenRejected(describe(e.kind())))
    }
}

fn describe(kind: &jsonwebtoken::errors::ErrorKind) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => "expired".into(),
        K::ImmatureSignature => "not yet valid".into(),
        K::InvalidSignature => "bad signature".into(),
        K::InvalidAlgorithm | K::InvalidAlgorithmName => "wrong algorithm".into(),
        K::InvalidIssuer => "wrong issuer".into(),
        K::InvalidAudience => "wrong audience".into(),
        K::MissingRequiredClaim(c) => format!("missing claim {c}"),
        _ => "malformed".into(),
    }
}

/// `2006-01-02T15:04:05Z` for a Unix time.
fn rfc3339(secs: u64) -> String {
    let when = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    when.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::AccessRule;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn service() -> TokenService {
        TokenService::new(
            TokenKey::generate().unwrap().0,
            "wharf",
            "registry.test",
            Duration::from_secs(300),
        )
    }

    fn access(name: &str, actions: &[&str]) -> Vec<ResourceActions> {
        vec![ResourceActions {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }]
    }

    #[test]
    fn signed_tokens_verify_with_their_claims() {
        let s = service();
        let issued = s
            .issue(Some("alice"), access("a/b", &["pull"]), SystemTime::now())
            .unwrap();
        assert_eq!(issued.token, issued.access_token);
        assert_eq!(issued.expires_in, 300);
        assert!(issued.issued_at.ends_with('Z'), "{}", issued.issued_at);
        let claims = s.verify(&issued.token).unwrap();
        assert_eq!(claims.user(), Some("alice"));
        assert_eq!(claims.aud, "registry.test");
        assert!(claims.grants("a/b", Action::Pull));
        assert!(!claims.grants("a/b", Action::Push));
        assert!(!claims.grants("a/c", Action::Pull));
        let header = jsonwebtoken::decode_header(&issued.token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_refused() {
        let s = service();
        let old = SystemTime::now() - Duration::from_secs(3600);
        let t = s.issue(Some("a"), vec![], old).unwrap();
        assert_eq!(s.verify(&t.token).unwrap_err().0, "expired");
        let future = SystemTime::now() + Duration::from_secs(3600);
        let t = s.issue(Some("a"), vec![], future).unwrap();
        assert_eq!(s.verify(&t.token).unwrap_err().0, "not yet valid");
        // Within the leeway both ways is fine.
        let t = s
            .issue(
                Some("a"),
                vec![],
                SystemTime::now() + Duration::from_secs(8),
            )
            .unwrap();
        assert!(s.verify(&t.token).is_ok());
    }

    #[test]
    fn another_key_issuer_or_audience_is_refused() {
        let s = service();
        let t = service()
            .issue(Some("a"), vec![], SystemTime::now())
            .unwrap();
        assert_eq!(s.verify(&t.token).unwrap_err().0, "bad signature");
        let key = TokenKey::generate().unwrap();
        let (k2_pem, key) = (key.1, key.0);
        let other_issuer =
            TokenService::new(key, "someone", "other.service", Duration::from_secs(60));
        let same_key = TokenService::new(
            TokenKey::from_pem(k2_pem.as_bytes()).unwrap(),
            "wharf",
            "other.service",
            Duration::from_secs(60),
        );
        let t = other_issuer
            .issue(Some("a"), vec![], SystemTime::now())
            .unwrap();
        assert_eq!(same_key.verify(&t.token).unwrap_err().0, "wrong issuer");
        let right_issuer = TokenService::new(
            TokenKey::from_pem(k2_pem.as_bytes()).unwrap(),
            "wharf",
            "registry.test",
            Duration::from_secs(60),
        );
        let t = right_issuer
            .issue(Some("a"), vec![], SystemTime::now())
            .unwrap();
        assert_eq!(same_key.verify(&t.token).unwrap_err().0, "wrong audience");
    }

    #[test]
    fn alg_none_and_tampered_payloads_are_refused() {
        let s = service();
        let t = s
            .issue(Some("alice"), access("a", &["pull"]), SystemTime::now())
            .unwrap();
        let parts: Vec<&str> = t.token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        for forged in [
            format!("{none_header}.{}.", parts[1]),
            format!("{none_header}.{}", parts[1]),
        ] {
            assert!(s.verify(&forged).is_err(), "alg none accepted: {forged}");
        }
        let hs_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        assert!(s
            .verify(&format!("{hs_header}.{}.{}", parts[1], parts[2]))
            .is_err());
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["access"][0]["actions"] = serde_json::json!(["pull", "push", "delete"]);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(s.verify(&tampered).unwrap_err().0, "bad signature");
        assert!(s.verify("not a token").is_err());
        assert!(s.verify("").is_err());
    }

    #[test]
    fn keys_round_trip_through_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.pem");
        let first = TokenKey::load_or_generate(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = TokenKey::load_or_generate(&path).unwrap();
        let a = TokenService::new(first, "i", "s", Duration::from_secs(60));
        let b = TokenService::new(again, "i", "s", Duration::from_secs(60));
        let t = a.issue(None, vec![], SystemTime::now()).unwrap();
        assert!(
            b.verify(&t.token).is_ok(),
            "the reloaded key must verify the first key's tokens"
        );
        std::fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = TokenKey::load_or_generate(&path).unwrap_err().to_string();
        assert!(err.contains("token.pem"), "{err}");
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(
            Scope::parse("repository:a/b:pull,push"),
            Some(Scope::repository(
                "a/b",
                Actions::of(&[Action::Pull, Action::Push])
            ))
        );
        let with_port = Scope::parse("repository:host:5000/a:pull").unwrap();
        assert_eq!(with_port.name, "host:5000/a");
        let plugin = Scope::parse("repository(plugin):a:pull").unwrap();
        assert_eq!(plugin.kind, "repository");
        assert_eq!(
            Scope::parse("registry:catalog:*").unwrap().actions,
            vec!["*"]
        );
        assert_eq!(Scope::parse("nonsense"), None);
        assert_eq!(Scope::parse("repository::pull"), None);
        let all = Scope::parse_all([
            "repository:a:pull repository:b:push",
            "bad",
            "registry:catalog:*",
        ]);
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].to_string(), "repository:b:push");
    }

    #[test]
    fn granted_scopes_are_requested_intersected_with_allowed() {
        let rule = |r: &str, u: &str, a: &[&str]| {
            AccessRule::new(
                r,
                &[u.to_string()],
                &a.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .unwrap()
        };
        let policy = AccessPolicy::new(vec![
            rule("public/**", "anonymous", &["pull"]),
            rule("team/**", "alice", &["pull", "push"]),
        ]);
        let scopes = Scope::parse_all([
            "repository:team/app:pull,push,delete",
            "repository:other/x:pull",
            "repository:public/a:pull,push",
            "registry:catalog:*",
        ]);
        let granted = grant(&policy, Some("alice"), &scopes);
        assert_eq!(granted, {
            let mut v = access("team/app", &["pull", "push"]);
            v.push(ResourceActions {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["*".into()],
            });
            v
        });
        let anonymous = grant(&policy, None, &scopes);
        assert_eq!(anonymous[0], access("public/a", &["pull"])[0]);
        assert_eq!(anonymous.len(), 2, "{anonymous:?}");
        let merged = grant(
            &policy,
            Some("alice"),
            &Scope::parse_all(["repository:team/a:pull", "repository:team/a:push"]),
        );
        assert_eq!(merged, access("team/a", &["pull", "push"]));
    }
}
