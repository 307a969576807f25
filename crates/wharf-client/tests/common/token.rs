//! A Docker token server for `docker-registry`'s `auth: token`: issues RS256
//! JWTs (signed with `openssl`) that carry their certificate in `x5c`; the
//! registry trusts that certificate through `rootcertbundle`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::json;
use tempfile::TempDir;

use super::scripted::{Reply, Request, ScriptedServer};
use super::{TOKEN_ISSUER, TOKEN_SERVICE};

pub struct TokenServer {
    pub server: ScriptedServer,
    pub cert: PathBuf,
    _dir: TempDir,
}

/// How the token server behaves.
#[derive(Clone, Default)]
pub struct TokenPolicy {
    /// Require these Basic credentials (anonymous tokens otherwise).
    pub user: Option<(&'static str, &'static str)>,
    /// Answer the first request with a token the registry will refuse.
    pub first_token_invalid: bool,
    /// Use `access_token` instead of `token` in the answer.
    pub access_token_field: bool,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?} failed");
}

fn sign(key: &PathBuf, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl dgst");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl dgst failed");
    out.stdout
}

/// `repository:name:pull,push` → the JWT `access` entry.
fn access_entry(scope: &str) -> serde_json::Value {
    let mut parts = scope.rsplitn(2, ':');
    let actions = parts.next().unwrap_or("");
    let (kind, name) = parts
        .next()
        .unwrap_or("")
        .split_once(':')
        .unwrap_or(("", ""));
    json!({ "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>() })
}

pub fn query_values(request: &Request, key: &str) -> Vec<String> {
    let url = reqwest::Url::parse(&format!("http://x{}", request.target)).unwrap();
    url.query_pairs()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

fn authorized(request: &Request, user: Option<(&str, &str)>) -> bool {
    let Some((u, p)) = user else { return true };
    let expected = format!("Basic {}", STANDARD.encode(format!("{u}:{p}")));
    request.header("authorization") == Some(expected.as_str())
}

impl TokenServer {
    pub async fn start(policy: TokenPolicy) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let der = dir.path().join("cert.der");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=wharf-test-token",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        openssl(&[
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            der.to_str().unwrap(),
        ]);
        let x5c = STANDARD.encode(std::fs::read(&der).unwrap());
        let issued = Arc::new(AtomicUsize::new(0));
        let server = ScriptedServer::start(move |req| {
            if !authorized(req, policy.user) {
                return Reply::new(401)
                    .header("Content-Type", "application/json")
                    .body(r#"{"details":"wrong credentials"}"#);
            }
            let n = issued.fetch_add(1, Ordering::SeqCst);
            let token = if n == 0 && policy.first_token_invalid {
                "not-a-valid-token".to_string()
            } else {
                jwt(&key, &x5c, &query_values(req, "scope"))
            };
            let field = if policy.access_token_field {
                "access_token"
            } else {
                "token"
            };
            Reply::new(200)
                .header("Content-Type", "application/json")
                .body(json!({ field: token, "expires_in": 300 }).to_string())
        })
        .await;
        TokenServer {
            server,
            cert,
            _dir: dir,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.addr)
    }

    /// The scope parameters of each token request, sorted per request.
    pub fn requested_scopes(&self) -> Vec<Vec<String>> {
        self.server
            .requests()
            .iter()
            .map(|r| {
                let mut s = query_values(r, "scope");
                s.sort();
                s
            })
            .collect()
    }
}

fn jwt(key: &PathBuf, x5c: &str, scopes: &[String]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({ "typ": "JWT", "alg": "RS256", "x5c": [x5c] });
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": "wharf-test",
        "aud": TOKEN_SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", scopes.len()),
        "access": scopes.iter().map(|s| access_entry(s)).collect::<Vec<_>>(),
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}
