//! The auth layer against a real server: every endpoint allowed and denied,
//! denials that say nothing about what exists, the token protocol, login
//! rate limiting, malformed credentials, and an audit log without secrets.
//!
//! Users: `admin` may do everything, `alice` everything under `team/**`,
//! `bob` only pull there, `dave` has no rule of his own. Anonymous clients
//! and every user may pull `public/**`.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::Method;
use tempfile::TempDir;
use wharf_auth::htpasswd::hash_password;
use wharf_auth::{AccessPolicy, AccessRule, LimitPolicy, TokenKey, TokenService, UserStore};
use wharf_registry::auth::AuthLayer;
use wharf_registry::RegistryConfig;

const USERS: [(&str, &str); 4] = [
    ("admin", "admin-Secret-1"),
    ("alice", "alice-Secret-2"),
    ("bob", "bob-Secret-3"),
    ("dave", "dave-Secret-4"),
];
const SERVICE: &str = "wharf-test";

fn password(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(u, _)| *u == user)
        .expect("known user")
        .1
}

fn rule(repos: &str, users: &[&str], actions: &[&str]) -> AccessRule {
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    AccessRule::new(repos, &owned(users), &owned(actions)).expect("valid rule")
}

fn policy(anonymous_public: bool) -> AccessPolicy {
    let mut rules = vec![
        rule("**", &["admin"], &["pull", "push", "delete"]),
        rule("team/**", &["alice"], &["pull", "push", "delete"]),
        rule("team/**", &["bob"], &["pull"]),
        rule("public/**", &["*"], &["pull"]),
    ];
    if anonymous_public {
        rules.push(rule("public/**", &["anonymous"], &["pull", "push"]));
    }
    AccessPolicy::new(rules)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn user_store(dir: &TempDir) -> Arc<UserStore> {
    user_store_with_cost(dir, 4)
}

/// The users with bcrypt entries of `cost` (4 is the fastest bcrypt allows).
fn user_store_with_cost(dir: &TempDir, cost: u32) -> Arc<UserStore> {
    let path = dir.path().join("htpasswd");
    let mut text = String::new();
    for (user, pw) in USERS {
        text.push_str(&format!("{user}:{}\n", hash_password(pw, cost).unwrap()));
    }
    std::fs::write(&path, text).unwrap();
    Arc::new(UserStore::open(&path).expect("htpasswd loads"))
}

enum Mode {
    Basic,
    Token,
}

struct Fixture {
    reg: TestRegistry,
    layer: Arc<AuthLayer>,
    /// Sends no credentials unless a request adds them.
    client: reqwest::Client,
    image: Image,
    secret: Image,
    _dir: TempDir,
}

impl Fixture {
    async fn start(mode: Mode, anonymous_public: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let users = user_store(&dir);
        let layer = Arc::new(match mode {
            Mode::Basic => AuthLayer::basic(users, policy(anonymous_public), "wharf"),
            Mode::Token => {
                let key = TokenKey::generate().unwrap().0;
                let service = TokenService::new(key, "wharf", SERVICE, Duration::from_secs(300));
                AuthLayer::token(users, policy(anonymous_public), service, None)
            }
        });
        let config = RegistryConfig {
            auth: Some(layer.clone()),
            ..RegistryConfig::default()
        };
        // The shared helpers push as admin.
        let mut admin = HeaderMap::new();
        let value = basic("admin", password("admin"));
        admin.insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
        let admin = reqwest::Client::builder()
            .default_headers(admin)
            .build()
            .unwrap();
        let reg = TestRegistry::start_with_client(config, admin).await;
        let (image, secret) = (image(1), image(2));
        reg.push_image("team/app", "v1", &image).await;
        reg.push_image("secret/repo", "v1", &secret).await;
        reg.push_image("public/base", "v1", &image).await;
        Fixture {
            reg,
            layer,
            client: reqwest::Client::new(),
            image,
            secret,
            _dir: dir,
        }
    }

    async fn basic_mode() -> Fixture {
        Fixture::start(Mode::Basic, true).await
    }

    /// `as_user`: `None` sends no credentials.
    async fn send_as(
        &self,
        as_user: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Resp {
        let auth = as_user.map(|u| basic(u, password(u)));
        self.send_with(auth.as_deref(), method, path, body, &[])
            .await
    }

    async fn send_with(
        &self,
        authorization: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.client.request(method, self.reg.url(path));
        if let Some(a) = authorization {
            req = req.header(AUTHORIZATION, a);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        Resp::read(req.send().await.expect("the registry answers")).await
    }

    fn layer_digest(&self) -> String {
        self.image.layers[0].digest.clone()
    }

    /// Opens an upload in `repo` as `user` and returns its path and query.
    async fn open_upload(&self, user: &str, repo: &str) -> String {
        let resp = self
            .send_as(
                Some(user),
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                None,
            )
            .await;
        resp.expect_status(202, "opening an upload");
        let url = self.reg.resolve(resp.location());
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }
}

fn expect_denied(resp: &Resp, why: &str) {
    resp.expect_status(403, why);
    if !resp.body.is_empty() {
        assert_eq!(error_codes(resp), vec!["DENIED"], "{why}: {}", resp.text());
    }
    assert!(
        resp.header("www-authenticate").is_none(),
        "{why}: a 403 asks for no credentials"
    );
}

fn expect_unauthorized(resp: &Resp, why: &str) {
    resp.expect_status(401, why);
    if !resp.body.is_empty() {
        assert_eq!(
            error_codes(resp),
            vec!["UNAUTHORIZED"],
            "{why}: {}",
            resp.text()
        );
    }
    assert!(
        resp.header("www-authenticate").is_some(),
        "{why}: a 401 must carry a challenge"
    );
}

fn with_digest(path: &str, digest: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}digest={digest}")
}

// --- every endpoint, allowed and denied --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_endpoints_allow_and_deny() {
    let f = Fixture::basic_mode().await;
    let path = "/v2/team/app/manifests/v1";
    f.send_as(Some("bob"), Method::GET, path, None)
        .await
        .expect_status(200, "bob may pull");
    expect_denied(
        &f.send_as(Some("dave"), Method::GET, path, None).await,
        "dave may not pull team/app",
    );
    expect_unauthorized(
        &f.send_as(None, Method::GET, path, None).await,
        "anonymous GET of team/app",
    );
    f.send_as(Some("bob"), Method::HEAD, path, None)
        .await
        .expect_status(200, "bob may HEAD");
    expect_denied(
        &f.send_as(Some("dave"), Method::HEAD, path, None).await,
        "dave may not HEAD",
    );

    let body = f.image.manifest.body.clone();
    let put = |user: &'static str| {
        let mut_body = body.clone();
        let f = &f;
        async move {
            f.send_with(
                Some(&basic(user, password(user))),
                Method::PUT,
                "/v2/team/app/manifests/v2",
                Some(mut_body),
                &[("content-type", OCI_MANIFEST)],
            )
            .await
        }
    };
    expect_denied(&put("bob").await, "bob may not push");
    put("alice").await.expect_status(201, "alice may push");

    let by_digest = format!("/v2/team/app/manifests/{}", f.image.manifest.digest);
    expect_denied(
        &f.send_as(Some("bob"), Method::DELETE, &by_digest, None)
            .await,
        "bob may not delete",
    );
    f.reg
        .get(&by_digest)
        .await
        .expect_status(200, "a denied delete leaves the manifest");
    f.send_as(Some("alice"), Method::DELETE, &by_digest, None)
        .await
        .expect_status(202, "alice may delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_endpoints_allow_and_deny() {
    let f = Fixture::basic_mode().await;
    let path = format!("/v2/team/app/blobs/{}", f.layer_digest());
    let got = f.send_as(Some("bob"), Method::GET, &path, None).await;
    got.expect_status(200, "bob may fetch a blob");
    assert_eq!(got.body.as_ref(), f.image.layers[0].data.as_slice());
    expect_denied(
        &f.send_as(Some("dave"), Method::GET, &path, None).await,
        "dave may not fetch",
    );
    f.send_as(Some("bob"), Method::HEAD, &path, None)
        .await
        .expect_status(200, "bob may HEAD a blob");
    expect_denied(
        &f.send_as(Some("dave"), Method::HEAD, &path, None).await,
        "dave may not HEAD",
    );
    expect_denied(
        &f.send_as(Some("bob"), Method::DELETE, &path, None).await,
        "bob may not delete",
    );
    f.send_as(Some("alice"), Method::DELETE, &path, None)
        .await
        .expect_status(202, "alice may delete a blob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_endpoints_allow_and_deny() {
    let f = Fixture::basic_mode().await;
    let start = "/v2/team/new/blobs/uploads/";
    expect_denied(
        &f.send_as(Some("bob"), Method::POST, start, None).await,
        "bob may not open an upload",
    );
    expect_unauthorized(
        &f.send_as(None, Method::POST, start, None).await,
        "anonymous may not open an upload",
    );
    let upload = f.open_upload("alice", "team/new").await;

    let data = b"some blob bytes".to_vec();
    let digest = sha256_digest(&data);
    let patch = |user: &'static str| {
        let (f, upload, data) = (&f, upload.clone(), data.clone());
        async move {
            f.send_with(
                Some(&basic(user, password(user))),
                Method::PATCH,
                &upload,
                Some(data),
                &[("content-type", OCTET_STREAM), ("content-range", "0-14")],
            )
            .await
        }
    };
    expect_denied(&patch("bob").await, "bob may not PATCH alice's upload");
    patch("alice").await.expect_status(202, "alice may PATCH");
    expect_denied(
        &f.send_as(Some("bob"), Method::GET, &upload, None).await,
        "bob may not see upload status",
    );
    f.send_as(Some("alice"), Method::GET, &upload, None)
        .await
        .expect_status(204, "alice may see her upload's status");
    let close = with_digest(&upload, &digest);
    expect_denied(
        &f.send_as(Some("bob"), Method::PUT, &close, None).await,
        "bob may not close the upload",
    );
    f.send_as(Some("alice"), Method::PUT, &close, None)
        .await
        .expect_status(201, "alice closes her upload");

    let second = f.open_upload("alice", "team/new").await;
    expect_denied(
        &f.send_as(Some("bob"), Method::DELETE, &second, None).await,
        "bob may not cancel",
    );
    f.send_as(Some("alice"), Method::DELETE, &second, None)
        .await
        .expect_status(204, "alice may cancel her upload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_needs_pull_on_the_source() {
    let f = Fixture::basic_mode().await;
    let secret_layer = &f.secret.layers[0].digest;
    let steal = format!("/v2/team/new/blobs/uploads/?mount={secret_layer}&from=secret/repo");
    let resp = f.send_as(Some("alice"), Method::POST, &steal, None).await;
    resp.expect_status(
        202,
        "without pull on the source, a mount becomes an ordinary upload",
    );
    let check = format!("/v2/team/new/blobs/{secret_layer}");
    f.send_as(Some("alice"), Method::HEAD, &check, None)
        .await
        .expect_status(404, "the secret blob must not have been linked");
    let no_from = format!("/v2/team/new/blobs/uploads/?mount={secret_layer}");
    f.send_as(Some("alice"), Method::POST, &no_from, None)
        .await
        .expect_status(
            202,
            "a mount without `from` cannot borrow any repository's blob",
        );
    f.send_as(Some("alice"), Method::HEAD, &check, None)
        .await
        .expect_status(404, "still not linked");

    let layer = f.layer_digest();
    let allowed = format!("/v2/team/new/blobs/uploads/?mount={layer}&from=public/base");
    f.send_as(Some("alice"), Method::POST, &allowed, None)
        .await
        .expect_status(201, "alice may pull public/base, so the mount happens");
    let mount_into_foreign = format!("/v2/secret/other/blobs/uploads/?mount={layer}&from=team/app");
    expect_denied(
        &f.send_as(Some("alice"), Method::POST, &mount_into_foreign, None)
            .await,
        "a mount needs push on the target",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_referrers_allow_and_deny() {
    let f = Fixture::basic_mode().await;
    let tags = f
        .send_as(Some("bob"), Method::GET, "/v2/team/app/tags/list", None)
        .await;
    tags.expect_status(200, "bob may list tags");
    assert_eq!(tags_of(&tags), vec!["v1"]);
    expect_denied(
        &f.send_as(Some("dave"), Method::GET, "/v2/team/app/tags/list", None)
            .await,
        "dave may not list",
    );
    let referrers = format!("/v2/team/app/referrers/{}", f.image.manifest.digest);
    f.send_as(Some("bob"), Method::GET, &referrers, None)
        .await
        .expect_status(200, "bob may list referrers");
    expect_denied(
        &f.send_as(Some("dave"), Method::GET, &referrers, None).await,
        "dave may not list referrers",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_only_pullable_repositories() {
    let f = Fixture::basic_mode().await;
    let repos = |resp: Resp| -> Vec<String> {
        resp.expect_status(200, "catalog");
        serde_json::from_value(resp.json()["repositories"].clone()).unwrap()
    };
    let all = repos(
        f.send_as(Some("admin"), Method::GET, "/v2/_catalog", None)
            .await,
    );
    assert_eq!(all, vec!["public/base", "secret/repo", "team/app"]);
    let alice = repos(
        f.send_as(Some("alice"), Method::GET, "/v2/_catalog", None)
            .await,
    );
    assert_eq!(alice, vec!["public/base", "team/app"]);
    let dave = repos(
        f.send_as(Some("dave"), Method::GET, "/v2/_catalog", None)
            .await,
    );
    assert_eq!(dave, vec!["public/base"]);
    let anonymous = repos(f.send_as(None, Method::GET, "/v2/_catalog", None).await);
    assert_eq!(anonymous, vec!["public/base"]);
    let first = f
        .send_as(Some("alice"), Method::GET, "/v2/_catalog?n=1", None)
        .await;
    assert!(
        next_link(&first).is_some(),
        "a filtered page still links to the next"
    );
    assert_eq!(repos(first), vec!["public/base"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_are_identical_for_existing_and_missing_repositories() {
    let f = Fixture::basic_mode().await;
    let secret_layer = f.secret.layers[0].digest.clone();
    let all = [Method::GET, Method::HEAD, Method::DELETE];
    let cases = [
        (
            "/v2/secret/repo/manifests/v1".to_string(),
            "/v2/secret/missing/manifests/v1".to_string(),
            &all[..],
        ),
        (
            "/v2/secret/repo/tags/list".into(),
            "/v2/secret/missing/tags/list".into(),
            &all[..2],
        ),
        (
            format!("/v2/secret/repo/blobs/{secret_layer}"),
            format!("/v2/secret/missing/blobs/{secret_layer}"),
            &all[..],
        ),
    ];
    for user in [Some("dave"), None] {
        for (existing, missing, methods) in &cases {
            for method in methods.iter() {
                let a = f.send_as(user, method.clone(), existing, None).await;
                let b = f.send_as(user, method.clone(), missing, None).await;
                assert!(
                    a.status() == 401 || a.status() == 403,
                    "{method} {existing}: {}",
                    a.status()
                );
                assert_eq!(a.status(), b.status(), "{method} {existing} vs {missing}");
                let body = |r: &Resp| {
                    r.text()
                        .replace("secret/repo", "X")
                        .replace("secret/missing", "X")
                };
                assert_eq!(body(&a), body(&b), "{method}: bodies differ");
                let challenge = |r: &Resp| {
                    r.header("www-authenticate")
                        .map(|c| c.replace("secret/repo", "X").replace("secret/missing", "X"))
                };
                assert_eq!(challenge(&a), challenge(&b), "{method}: challenges differ");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_may_pull_a_pattern_but_never_push() {
    let f = Fixture::basic_mode().await;
    let ping = f.send_as(None, Method::GET, "/v2/", None).await;
    expect_unauthorized(
        &ping,
        "/v2/ challenges so that clients with credentials send them",
    );
    let empty = f
        .send_with(
            Some(&basic("", "")),
            Method::GET,
            "/v2/public/base/manifests/v1",
            None,
            &[],
        )
        .await;
    empty.expect_status(200, "empty Basic credentials are an anonymous request");
    f.send_as(None, Method::GET, "/v2/public/base/manifests/v1", None)
        .await
        .expect_status(200, "public/** is anonymous");
    let resp = f
        .send_as(None, Method::POST, "/v2/public/base/blobs/uploads/", None)
        .await;
    expect_unauthorized(&resp, "a rule granting anonymous push is overridden");
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Basic realm=\"wharf\"")
    );
    let put = f
        .send_with(
            None,
            Method::PUT,
            "/v2/public/base/manifests/v9",
            Some(f.image.manifest.body.clone()),
            &[("content-type", OCI_MANIFEST)],
        )
        .await;
    expect_unauthorized(&put, "anonymous manifest push");
    f.send_as(None, Method::GET, "/healthz", None)
        .await
        .expect_status(200, "/healthz is open");
    f.send_as(None, Method::GET, "/readyz", None)
        .await
        .expect_status(200, "/readyz is open");
    f.send_as(None, Method::GET, "/metrics", None)
        .await
        .expect_status(200, "/metrics is open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_asks_for_login_when_nothing_is_anonymous() {
    let f = Fixture::start(Mode::Basic, false).await;
    let resp = f.send_as(None, Method::GET, "/v2/", None).await;
    expect_unauthorized(&resp, "/v2/ must make clients log in");
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Basic realm=\"wharf\"")
    );
    f.send_as(Some("dave"), Method::GET, "/v2/", None)
        .await
        .expect_status(200, "any user may ping");
    let wrong = f
        .send_with(
            Some(&basic("alice", "wrong")),
            Method::GET,
            "/v2/",
            None,
            &[],
        )
        .await;
    expect_unauthorized(&wrong, "a wrong password");
    expect_unauthorized(
        &f.send_as(None, Method::GET, "/v2/public/base/tags/list", None)
            .await,
        "no anonymous rule",
    );
}

// --- malformed credentials and brute force ------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_authorization_headers_are_401() {
    let f = Fixture::basic_mode().await;
    let huge = format!("Basic {}", "A".repeat(64 * 1024));
    let cases = [
        "Basic !!!not-base64!!!".to_string(),
        format!("Basic {}", STANDARD.encode("no-colon")),
        format!("Basic {}", STANDARD.encode(":empty-user")),
        format!("Basic {}", STANDARD.encode([0xff, b':', 0xfe])),
        "Basic".to_string(),
        "Digest username=\"alice\"".to_string(),
        "Bearer abc.def.ghi".to_string(),
        "".to_string(),
        huge,
    ];
    for value in &cases {
        let resp = f
            .send_with(
                Some(value),
                Method::GET,
                "/v2/team/app/manifests/v1",
                None,
                &[],
            )
            .await;
        expect_unauthorized(&resp, &format!("Authorization: {:.40}", value));
    }
    let raw = f
        .client
        .get(f.reg.url("/v2/team/app/tags/list"))
        .header(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Basic \xff\xfe\xfd").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401, "non-UTF-8 Authorization");
    f.send_as(Some("bob"), Method::GET, "/v2/team/app/tags/list", None)
        .await
        .expect_status(200, "the registry still serves after all that");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_is_locked_out_with_429_without_bcrypt() {
    let f = Fixture::basic_mode().await;
    let path = "/v2/team/app/tags/list";
    for i in 0..LimitPolicy::default().user_free_failures {
        let resp = f
            .send_with(
                Some(&basic("alice", &format!("guess-{i}"))),
                Method::GET,
                path,
                None,
                &[],
            )
            .await;
        expect_unauthorized(&resp, "a wrong password before the lockout");
    }
    let runs = f.layer.users().bcrypt_runs();
    let locked = f.send_as(Some("alice"), Method::GET, path, None).await;
    locked.expect_error(
        429,
        &["TOOMANYREQUESTS"],
        "even the right password waits out the lockout",
    );
    let retry: u64 = locked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    for _ in 0..3 {
        let resp = f
            .send_with(
                Some(&basic("alice", "another-guess")),
                Method::GET,
                path,
                None,
                &[],
            )
            .await;
        resp.expect_status(429, "still locked");
    }
    assert_eq!(
        f.layer.users().bcrypt_runs(),
        runs,
        "a locked-out attempt must not run bcrypt"
    );
    f.send_as(Some("bob"), Method::GET, path, None)
        .await
        .expect_status(200, "other users are not locked");
}

/// A registry whose users cost real bcrypt time (cost 10), so that
/// parallel logins overlap in their checks as they do in production. The
/// first lockout lasts ten minutes: no attempt of a test is let through
/// because a lockout ran out while the machine was slow.
async fn slow_bcrypt_registry() -> (TestRegistry, Arc<AuthLayer>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let limits = LimitPolicy {
        base_lockout: Duration::from_secs(600),
        ..LimitPolicy::default()
    };
    let layer = Arc::new(
        AuthLayer::basic(user_store_with_cost(&dir, 10), policy(false), "wharf")
            .with_limits(limits),
    );
    let config = RegistryConfig {
        auth: Some(layer.clone()),
        ..RegistryConfig::default()
    };
    (TestRegistry::start_with(config).await, layer, dir)
}

/// `attempts` logins at once at `/v2/`, each on a connection of its own
/// (one client opens as many as there are requests in flight).
async fn parallel_logins(reg: &TestRegistry, attempts: Vec<String>) -> Vec<Resp> {
    let client = reqwest::Client::new();
    let requests = attempts.into_iter().map(|credentials| {
        let client = client.clone();
        async move {
            let response = client
                .get(reg.url("/v2/"))
                .header(AUTHORIZATION, credentials)
                .send()
                .await
                .expect("the registry answers");
            Resp::read(response).await
        }
    });
    futures_util::future::join_all(requests).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_passwords_reach_bcrypt_only_as_often_as_allowed() {
    let (reg, layer, _dir) = slow_bcrypt_registry().await;
    let guesses = (0..64)
        .map(|i| basic("alice", &format!("guess-{i}")))
        .collect();
    let answers = parallel_logins(&reg, guesses).await;
    let allowed = u64::from(LimitPolicy::default().user_free_failures);
    let runs = layer.users().bcrypt_runs();
    assert!(
        runs <= allowed,
        "{runs} of 64 parallel wrong passwords reached bcrypt; at most {allowed} may"
    );
    let unauthorized = answers.iter().filter(|r| r.status() == 401).count() as u64;
    let limited = answers.iter().filter(|r| r.status() == 429).count() as u64;
    assert_eq!(
        (unauthorized, limited),
        (runs, 64 - runs),
        "each checked guess is a 401, every other one a 429"
    );
    for r in answers.iter().filter(|r| r.status() == 429) {
        r.expect_error(429, &["TOOMANYREQUESTS"], "refused before bcrypt");
        assert!(r.header("retry-after").is_some(), "429 carries Retry-After");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_right_passwords_wait_for_the_first_checks_not_refused() {
    let (reg, layer, _dir) = slow_bcrypt_registry().await;
    let logins = (0..16).map(|_| basic("bob", password("bob"))).collect();
    let answers = parallel_logins(&reg, logins).await;
    for r in &answers {
        r.expect_status(200, "a right password in a burst of them");
    }
    let runs = layer.users().bcrypt_runs();
    assert!(
        (1..=u64::from(LimitPolicy::default().user_free_failures)).contains(&runs),
        "the burst waited for the first checks and then used the cache: {runs} bcrypt runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_traffic_pays_bcrypt_once() {
    let f = Fixture::basic_mode().await;
    let before = f.layer.users().bcrypt_runs();
    for _ in 0..20 {
        f.send_as(Some("bob"), Method::HEAD, "/v2/team/app/manifests/v1", None)
            .await
            .expect_status(200, "bob pulls");
    }
    assert_eq!(
        f.layer.users().bcrypt_runs() - before,
        1,
        "successes are cached"
    );
}

// --- token mode ---------------------------------------------------------------

async fn fetch_token(f: &Fixture, user: Option<&str>, scopes: &[&str]) -> Resp {
    let mut path = format!("/auth/token?service={SERVICE}");
    for s in scopes {
        path.push_str(&format!("&scope={s}"));
    }
    if let Some(u) = user {
        path.push_str(&format!("&account={u}"));
    }
    f.send_as(user, Method::GET, &path, None).await
}

async fn token(f: &Fixture, user: Option<&str>, scopes: &[&str]) -> String {
    let resp = fetch_token(f, user, scopes).await;
    resp.expect_status(200, "token endpoint");
    let json = resp.json();
    assert_eq!(json["token"], json["access_token"]);
    assert_eq!(json["expires_in"], 300);
    assert!(json["issued_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    json["token"].as_str().expect("token string").to_string()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_challenge_and_scoped_tokens() {
    let f = Fixture::start(Mode::Token, false).await;
    let resp = f.send_as(None, Method::GET, "/v2/", None).await;
    expect_unauthorized(&resp, "token mode /v2/");
    let expected = format!(
        "Bearer realm=\"http://{}/auth/token\",service=\"{SERVICE}\"",
        f.reg.addr()
    );
    assert_eq!(resp.header("www-authenticate"), Some(expected.as_str()));
    let resp = f
        .send_as(None, Method::GET, "/v2/team/app/manifests/v1", None)
        .await;
    expect_unauthorized(&resp, "anonymous pull in token mode");
    assert!(
        resp.header("www-authenticate")
            .unwrap()
            .ends_with(",scope=\"repository:team/app:pull\""),
        "{:?}",
        resp.header("www-authenticate")
    );

    let t = token(&f, Some("alice"), &["repository:team/app:pull,push"]).await;
    let path = "/v2/team/app/manifests/v1";
    f.send_with(Some(&bearer(&t)), Method::GET, path, None, &[])
        .await
        .expect_status(200, "a pull token pulls");
    f.send_with(
        Some(&bearer(&t)),
        Method::PUT,
        "/v2/team/app/manifests/v3",
        Some(f.image.manifest.body.clone()),
        &[("content-type", OCI_MANIFEST)],
    )
    .await
    .expect_status(201, "a push token pushes");

    let other = f
        .send_with(
            Some(&bearer(&t)),
            Method::GET,
            "/v2/team/other/tags/list",
            None,
            &[],
        )
        .await;
    expect_unauthorized(
        &other,
        "a token for another repository, which alice may get a token for",
    );
    assert!(other
        .header("www-authenticate")
        .unwrap()
        .contains("scope=\"repository:team/other:pull\""));
    let secret = f
        .send_with(
            Some(&bearer(&t)),
            Method::GET,
            "/v2/secret/repo/tags/list",
            None,
            &[],
        )
        .await;
    expect_denied(
        &secret,
        "a token for another repository, which alice may not pull",
    );

    let bob = token(&f, Some("bob"), &["repository:team/app:pull,push"]).await;
    expect_denied(
        &f.send_with(
            Some(&bearer(&bob)),
            Method::POST,
            "/v2/team/app/blobs/uploads/",
            None,
            &[],
        )
        .await,
        "bob asked for push but was granted pull only",
    );
    f.send_with(
        Some(&bearer(&bob)),
        Method::GET,
        "/v2/team/app/tags/list",
        None,
        &[],
    )
    .await
    .expect_status(200, "bob's granted pull works");
    f.send_as(Some("alice"), Method::GET, path, None)
        .await
        .expect_status(
            200,
            "token mode accepts Basic credentials on registry requests",
        );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_refuses_forged_and_foreign_tokens() {
    let f = Fixture::start(Mode::Token, true).await;
    let t = token(&f, Some("alice"), &["repository:team/app:pull"]).await;
    let parts: Vec<&str> = t.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    claims["access"][0]["name"] = "secret/repo".into();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&claims).unwrap());
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    let foreign_service = TokenService::new(
        TokenKey::generate().unwrap().0,
        "wharf",
        SERVICE,
        Duration::from_secs(60),
    );
    let foreign = foreign_service
        .issue(Some("alice"), vec![], SystemTime::now())
        .unwrap()
        .token;
    for (bad, why) in [
        (tampered, "tampered"),
        (foreign, "another key"),
        ("garbage".into(), "garbage"),
    ] {
        let resp = f
            .send_with(
                Some(&bearer(&bad)),
                Method::GET,
                "/v2/secret/repo/tags/list",
                None,
                &[],
            )
            .await;
        expect_unauthorized(&resp, why);
        assert!(
            resp.header("www-authenticate")
                .unwrap()
                .contains("error=\"invalid_token\""),
            "{why}"
        );
    }

    let anonymous = token(
        &f,
        None,
        &[
            "repository:public/base:pull,push",
            "repository:team/app:pull",
        ],
    )
    .await;
    f.send_with(
        Some(&bearer(&anonymous)),
        Method::GET,
        "/v2/public/base/manifests/v1",
        None,
        &[],
    )
    .await
    .expect_status(200, "an anonymous token pulls public/**");
    expect_unauthorized(
        &f.send_with(
            Some(&bearer(&anonymous)),
            Method::GET,
            "/v2/team/app/manifests/v1",
            None,
            &[],
        )
        .await,
        "an anonymous token was granted nothing on team/app",
    );
    expect_unauthorized(
        &f.send_with(
            Some(&bearer(&anonymous)),
            Method::POST,
            "/v2/public/base/blobs/uploads/",
            None,
            &[],
        )
        .await,
        "an anonymous token never pushes",
    );
    let wrong = f
        .send_with(
            Some(&basic("alice", "wrong")),
            Method::GET,
            &format!("/auth/token?service={SERVICE}&scope=repository:team/app:pull"),
            None,
            &[],
        )
        .await;
    expect_unauthorized(&wrong, "a token request with a wrong password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_password_grant_issues_tokens() {
    let f = Fixture::start(Mode::Token, false).await;
    let form = |user: &str, pw: &str| {
        format!(
            "grant_type=password&username={user}&password={pw}&service={SERVICE}&scope=repository%3Ateam%2Fapp%3Apull+repository%3Ateam%2Fb%3Apush&client_id=test"
        )
    };
    let post = |body: String| {
        let f = &f;
        async move {
            f.send_with(
                None,
                Method::POST,
                "/auth/token",
                Some(body.into_bytes()),
                &[("content-type", "application/x-www-form-urlencoded")],
            )
            .await
        }
    };
    let resp = post(form("alice", password("alice"))).await;
    resp.expect_status(200, "password grant");
    let t = resp.json()["access_token"].as_str().unwrap().to_string();
    f.send_with(
        Some(&bearer(&t)),
        Method::GET,
        "/v2/team/app/tags/list",
        None,
        &[],
    )
    .await
    .expect_status(200, "the OAuth2 token pulls");
    f.send_with(
        Some(&bearer(&t)),
        Method::POST,
        "/v2/team/b/blobs/uploads/",
        None,
        &[],
    )
    .await
    .expect_status(202, "the second, space-separated scope was granted too");
    expect_unauthorized(&post(form("alice", "wrong")).await, "a wrong password");
    post("grant_type=refresh_token&refresh_token=x".into())
        .await
        .expect_status(400, "only the password grant");
}

/// A client that sends its whole form before reading reads the 413, not a
/// reset connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_token_form_is_413_after_the_whole_form_is_sent() {
    let f = Fixture::start(Mode::Token, false).await;
    let mut form = b"grant_type=password&username=alice&password=x&scope=".to_vec();
    form.resize(8 * 1024 * 1024, b'a');
    let length = form.len().to_string();
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Content-Length", length.as_str()),
    ];
    let mut request = common::raw::head("POST", "/auth/token", &headers);
    request.extend_from_slice(&form);
    let resp = common::raw::send_all_then_read(f.reg.addr(), &request)
        .await
        .expect("an answer after the whole form was sent");
    assert_eq!(resp.status, 413, "an oversize token form: {}", resp.text());
    let json: serde_json::Value = serde_json::from_slice(&resp.body).expect("a JSON error body");
    assert_eq!(json["errors"][0]["code"], "SIZE_INVALID");
    let message = json["errors"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains("token form"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_mode_has_no_token_endpoint() {
    let f = Fixture::basic_mode().await;
    f.send_as(
        Some("alice"),
        Method::GET,
        "/auth/token?scope=repository:team/app:pull",
        None,
    )
    .await
    .expect_status(404, "no token endpoint in basic mode");
    expect_unauthorized(
        &f.send_with(
            Some("Bearer x.y.z"),
            Method::GET,
            "/v2/team/app/tags/list",
            None,
            &[],
        )
        .await,
        "bearer tokens mean nothing in basic mode",
    );
}

// --- audit log and secrets ------------------------------------------------------

#[derive(Clone)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test process, at every level.
fn captured_logs() -> Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured(Arc::new(Mutex::new(Vec::new())));
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        captured
    })
    .clone()
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_for_writes_denials_and_logins_without_secrets() {
    let logs = captured_logs();
    let f = Fixture::start(Mode::Token, true).await;
    let t = token(&f, Some("alice"), &["repository:team/app:pull,push,delete"]).await;
    f.send_with(
        Some(&bearer(&t)),
        Method::PUT,
        "/v2/team/app/manifests/audited",
        Some(f.image.manifest.body.clone()),
        &[("content-type", OCI_MANIFEST)],
    )
    .await
    .expect_status(201, "push");
    f.send_with(
        Some(&bearer(&t)),
        Method::DELETE,
        &format!("/v2/team/app/manifests/{}", f.image.manifest.digest),
        None,
        &[],
    )
    .await
    .expect_status(202, "delete");
    expect_denied(
        &f.send_as(Some("dave"), Method::GET, "/v2/team/app/tags/list", None)
            .await,
        "denied",
    );
    let wrong_password = "Wrong-Password-987";
    expect_unauthorized(
        &f.send_with(
            Some(&basic("bob", wrong_password)),
            Method::GET,
            "/v2/team/app/tags/list",
            None,
            &[],
        )
        .await,
        "bad login",
    );
    let form = format!(
        "grant_type=password&username=bob&password={wrong_password}&scope=repository:team/app:pull"
    );
    f.send_with(
        None,
        Method::POST,
        "/auth/token",
        Some(form.into_bytes()),
        &[],
    )
    .await
    .expect_status(401, "bad OAuth2 login");

    let text = logs.text();
    let audit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("wharf::audit"))
        .collect();
    let has = |needles: &[&str]| audit.iter().any(|l| needles.iter().all(|n| l.contains(n)));
    let manifest = &f.image.manifest.digest;
    assert!(
        has(&[
            "user=\"alice\"",
            "action=\"push-manifest\"",
            "team/app",
            &format!("audited@{manifest}"),
            "outcome=\"ok\""
        ]),
        "manifest push audited:\n{}",
        audit.join("\n")
    );
    assert!(
        has(&[
            "user=\"alice\"",
            "delete-manifest",
            manifest.as_str(),
            "outcome=\"ok\""
        ]),
        "delete audited"
    );
    assert!(
        has(&["user=\"admin\"", "push-blob", "secret/repo"]),
        "blob uploads audited"
    );
    assert!(
        has(&[
            "user=\"dave\"",
            "action=\"pull\"",
            "outcome=\"denied\"",
            "client=127.0.0.1"
        ]),
        "denial audited"
    );
    assert!(
        has(&[
            "user=\"bob\"",
            "action=\"login\"",
            "outcome=\"bad-credentials\""
        ]),
        "failed login audited"
    );

    let mut secrets: Vec<String> = vec![t.clone(), wrong_password.into()];
    for (user, pw) in USERS {
        secrets.push(pw.to_string());
        secrets.push(STANDARD.encode(format!("{user}:{pw}")));
    }
    secrets.push(t.split('.').nth(2).unwrap().to_string());
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret reached the log: {secret:.12}…"
        );
    }
    assert!(
        !text.to_ascii_lowercase().contains("authorization: "),
        "a header dump reached the log"
    );
}
