//! A Docker token server for `docker-registry`'s `auth: token`: hands out
//! RS256 JWTs (signed with `openssl`) for whatever scope is asked, carrying
//! their certificate in `x5c`; the registry trusts it via `rootcertbundle`.

use std::convert::Infallible;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tempfile::TempDir;
use tokio::net::TcpListener;

pub const SERVICE: &str = "wharf-test-registry";
pub const ISSUER: &str = "wharf-test-issuer";

pub struct TokenServer {
    pub realm: String,
    pub cert: PathBuf,
    _dir: TempDir,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?} failed");
}

fn sign(key: &Path, input: &[u8]) -> Vec<u8> {
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
    let (rest, actions) = scope.rsplit_once(':').unwrap_or(("", ""));
    let (kind, name) = rest.split_once(':').unwrap_or(("", ""));
    json!({ "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>() })
}

fn jwt(key: &Path, x5c: &str, scopes: &[String]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({ "typ": "JWT", "alg": "RS256", "x5c": [x5c] });
    let claims = json!({
        "iss": ISSUER,
        "sub": "wharf-test",
        "aud": SERVICE,
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

impl TokenServer {
    pub async fn start() -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let der = dir.path().join("cert.der");
        let s = |p: &PathBuf| p.to_str().unwrap().to_string();
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
            &s(&key),
            "-out",
            &s(&cert),
        ]);
        openssl(&[
            "x509",
            "-in",
            &s(&cert),
            "-outform",
            "DER",
            "-out",
            &s(&der),
        ]);
        let x5c: Arc<str> = STANDARD.encode(std::fs::read(&der).unwrap()).into();
        let key: Arc<Path> = key.into();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        // The server lives as long as the test's runtime.
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (key, x5c) = (key.clone(), x5c.clone());
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (key, x5c) = (key.clone(), x5c.clone());
                    async move {
                        let url = reqwest::Url::parse(&format!("http://x{}", req.uri())).unwrap();
                        let scopes: Vec<String> = url
                            .query_pairs()
                            .filter(|(k, _)| k == "scope")
                            .map(|(_, v)| v.into_owned())
                            .collect();
                        let token = tokio::task::spawn_blocking(move || jwt(&key, &x5c, &scopes))
                            .await
                            .unwrap();
                        let body = json!({ "token": token, "expires_in": 300 }).to_string();
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("Content-Type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TokenServer {
            realm,
            cert,
            _dir: dir,
        }
    }

    /// The `auth:` section of a `docker-registry` configuration.
    pub fn auth_section(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm,
            self.cert.display()
        )
    }
}
