//! A Docker token server, the bearer-token stand-in for `docker-registry`'s
//! `auth: token`: it issues RS256 JWTs (signed with `openssl`) for whatever
//! scopes are asked, carrying their certificate in `x5c`; the registry
//! trusts that certificate through `rootcertbundle`
//! ([`crate::DockerAuth::token`]). Every request is recorded.

use std::convert::Infallible;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::tools::{require_tool, run};

/// The `service` the registry names in its challenge and tokens carry as `aud`.
pub const TOKEN_SERVICE: &str = "wharf-test-registry";
/// The `iss` of every token.
pub const TOKEN_ISSUER: &str = "wharf-test-issuer";

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

/// One request the token server received.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// Path and query.
    pub target: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

impl TokenRequest {
    /// Every value of the query parameter `key`, in order.
    pub fn query_values(&self, key: &str) -> Vec<String> {
        let url = reqwest::Url::parse(&format!("http://token.test{}", self.target))
            .expect("a request target");
        url.query_pairs()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .collect()
    }
}

struct Issuer {
    policy: TokenPolicy,
    key: PathBuf,
    x5c: String,
    requests: Mutex<Vec<TokenRequest>>,
    /// Tokens handed out so far (refused requests get none).
    issued: AtomicUsize,
}

/// Serves `/token` on a loopback port until dropped.
pub struct TokenServer {
    /// The certificate of the signing key, for `rootcertbundle`.
    pub cert: PathBuf,
    realm: String,
    issuer: Arc<Issuer>,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: TempDir,
}

impl TokenServer {
    pub async fn start(policy: TokenPolicy) -> TokenServer {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let (key, cert) = signing_key(dir.path());
        let x5c = certificate_der_base64(&cert, dir.path());
        let issuer = Arc::new(Issuer {
            policy,
            key,
            x5c,
            requests: Mutex::default(),
            issued: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let realm = format!(
            "http://{}/token",
            listener.local_addr().expect("local address")
        );
        let (tx, rx) = oneshot::channel();
        tokio::spawn(accept(listener, issuer.clone(), rx));
        TokenServer {
            cert,
            realm,
            issuer,
            shutdown: Some(tx),
            _dir: dir,
        }
    }

    /// The URL registries name as `realm` in their challenge.
    pub fn realm(&self) -> String {
        self.realm.clone()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.issuer.requests.lock().expect("lock").clone()
    }

    /// The scope parameters of each token request, sorted per request.
    pub fn requested_scopes(&self) -> Vec<Vec<String>> {
        self.requests()
            .iter()
            .map(|r| {
                let mut scopes = r.query_values("scope");
                scopes.sort();
                scopes
            })
            .collect()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn accept(listener: TcpListener, issuer: Arc<Issuer>, mut stop: oneshot::Receiver<()>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = &mut stop => return,
        };
        let issuer = issuer.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let issuer = issuer.clone();
            async move { Ok::<_, Infallible>(answer(issuer, &req).await) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(issuer: Arc<Issuer>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let request = TokenRequest {
        target: req.uri().to_string(),
        authorization: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    issuer.requests.lock().expect("lock").push(request.clone());
    if !authorized(&request, issuer.policy.user) {
        return json_response(401, r#"{"details":"wrong credentials"}"#.to_owned());
    }
    let issued_before = issuer.issued.fetch_add(1, Ordering::SeqCst);
    let token = if issued_before == 0 && issuer.policy.first_token_invalid {
        "not-a-valid-token".to_owned()
    } else {
        let scopes = request.query_values("scope");
        // Signing runs openssl: keep it off the runtime's threads.
        let signer = issuer.clone();
        tokio::task::spawn_blocking(move || jwt(&signer.key, &signer.x5c, &scopes))
            .await
            .expect("the signing task must not panic")
    };
    let field = if issuer.policy.access_token_field {
        "access_token"
    } else {
        "token"
    };
    json_response(200, json!({ field: token, "expires_in": 300 }).to_string())
}

fn json_response(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn authorized(request: &TokenRequest, user: Option<(&str, &str)>) -> bool {
    let Some((user, password)) = user else {
        return true;
    };
    let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    request.authorization.as_deref() == Some(expected.as_str())
}

/// An RSA key and its self-signed certificate: (key, certificate).
fn signing_key(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    run(
        Command::new(require_tool("openssl"))
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=wharf-test-token", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        "making the token server's signing key",
    );
    (key, cert)
}

fn certificate_der_base64(cert: &Path, dir: &Path) -> String {
    let der = dir.join("cert.der");
    run(
        Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(cert)
            .arg("-out")
            .arg(&der),
        "converting the token certificate to DER",
    );
    STANDARD.encode(std::fs::read(&der).expect("read the DER certificate"))
}

fn sign(key: &Path, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl dgst");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write the signing input");
    let out = child.wait_with_output().expect("wait for openssl dgst");
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
        .expect("the clock is after 1970")
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
