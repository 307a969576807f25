//! How a registry is reached, against real servers on loopback: the scheme
//! (a loopback registry serving TLS is found; a plain-HTTP one reached with
//! TLS is named as such), per-host trust from certs.d directories, what the
//! reporter hears (what is tried, each retry), names that do not exist
//! failing at once, and checking credentials as `login` does.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use wharf_client::{
    Client, ClientConfig, Credential, CredentialSources, ErrorKind, RedirectEvent, Reporter,
    RetryEvent,
};
use wharf_testkit::image::push;
use wharf_testkit::pki::Ca;
use wharf_testkit::{free_port, pseudo_random, DockerAuth, DockerRegistry, WharfRegistry};

/// Every event, as one line each.
#[derive(Default)]
struct Heard(Mutex<Vec<String>>);

impl Heard {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Reporter for Heard {
    fn retrying(&self, e: &RetryEvent<'_>) {
        self.0.lock().unwrap().push(format!(
            "retry {} {}/{} {}",
            e.registry, e.attempt, e.max_attempts, e.error
        ));
    }
    fn trying(&self, registry: &str, url: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("trying {registry} {url}"));
    }
    fn redirected(&self, e: &RedirectEvent<'_>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("redirect {} {}", e.registry, e.to_origin));
    }
}

fn reporting(config: ClientConfig) -> (Client, Arc<Heard>) {
    let heard = Arc::new(Heard::default());
    let client = Client::new(config).unwrap().with_reporter(heard.clone());
    (client, heard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_registry_serving_tls_is_spoken_to_in_tls() {
    let ca = Ca::new("wharf-test-ca");
    let server = ca.issue(&["127.0.0.1"]);
    let reg = DockerRegistry::start_with(DockerAuth::None, Some((server.cert, server.key))).await;
    let (client, heard) = reporting(ClientConfig {
        ca_files: vec![ca.cert.clone()],
        ..quick_config()
    });
    assert_eq!(client.ping(&reg.host).await.unwrap().auth_scheme, None);
    assert_eq!(
        heard.lines(),
        [
            format!("trying {0} http://{0}/v2/", reg.host),
            format!("trying {0} https://{0}/v2/", reg.host),
        ]
    );
    push(
        &client,
        &reg.host,
        &repo("tls/found"),
        Some("v1"),
        &oci_image(7),
    )
    .await;
    let refs = client
        .tags_list(&reg.host, &repo("tls/found"))
        .await
        .unwrap();
    assert_eq!(refs, ["v1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_d_directories_add_trust_per_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wharf-test-ca");
    let server = ca.issue(&["127.0.0.1"]);
    let reg = DockerRegistry::start_with(DockerAuth::None, Some((server.cert, server.key))).await;
    let certs_d = dir.path().join("certs.d");
    let https = |certs_dirs: Vec<std::path::PathBuf>| {
        Client::new(ClientConfig {
            https_hosts: vec![reg.host.clone()],
            certs_dirs,
            ..quick_config()
        })
        .unwrap()
    };
    let err = https(vec![certs_d.clone()])
        .ping(&reg.host)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "no certs.d entry yet: {err}");

    std::fs::create_dir_all(certs_d.join(&reg.host)).unwrap();
    std::fs::copy(&ca.cert, certs_d.join(&reg.host).join("ca.crt")).unwrap();
    let trusted = https(vec![dir.path().join("absent"), certs_d.clone()]);
    assert_eq!(trusted.ping(&reg.host).await.unwrap().auth_scheme, None);

    // Another host's directory does not count.
    let other = dir.path().join("other.d");
    std::fs::create_dir_all(other.join("127.0.0.1:1")).unwrap();
    std::fs::copy(&ca.cert, other.join("127.0.0.1:1/ca.crt")).unwrap();
    let err = https(vec![other]).ping(&reg.host).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_plain_http_registry_says_so_at_once() {
    let reg = WharfRegistry::start().await;
    let (client, heard) = reporting(ClientConfig {
        https_hosts: vec![reg.host.clone()],
        ..quick_config()
    });
    let err = client.ping(&reg.host).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    let text = err.to_string();
    assert!(text.contains("this registry speaks plain HTTP"), "{text}");
    assert!(text.contains(&format!("--insecure={}", reg.host)), "{text}");
    assert!(!text.contains("InvalidContentType"), "{text}");
    assert!(
        !heard.lines().iter().any(|l| l.starts_with("retry")),
        "a protocol mismatch is not retried: {:?}",
        heard.lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_exist_fails_without_retries() {
    let (client, heard) = reporting(ClientConfig {
        retry: wharf_client::RetryPolicy::default(),
        ..quick_config()
    });
    let started = Instant::now();
    let err = client
        .ping("registry.wharf-test.invalid")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}: {err}",
        started.elapsed(),
    );
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.to_string()
            .contains("no such host: registry.wharf-test.invalid"),
        "{err}"
    );
    assert_eq!(
        heard.lines(),
        ["trying registry.wharf-test.invalid https://registry.wharf-test.invalid/v2/"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_retry_is_reported_with_its_attempt_and_cause() {
    // A port nothing listens on.
    let host = format!("127.0.0.1:{}", free_port());
    let (client, heard) = reporting(quick_config());
    let err = client.ping(&host).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    let retries: Vec<String> = heard
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("retry"))
        .collect();
    let max = quick_config().retry.max_attempts;
    assert_eq!(retries.len() as u32, max - 1, "{retries:?}");
    for (n, line) in retries.iter().enumerate() {
        let prefix = format!("retry {host} {}/{max} cannot connect", n + 1);
        assert!(line.starts_with(&prefix), "{line:?} vs {prefix:?}");
    }
}

/// Regression: a request's ping was retried inside the request's own retry
/// loop (5 × 5 tries, 40–60 s for an unreachable registry), and the next
/// request to the same registry started over (with `unreachable_memory`,
/// as the command-line tools set it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_is_tried_once_through_the_retry_policy() {
    // A port nothing listens on; plain HTTP unless it answers in TLS, so
    // the first request is a ping.
    let host = format!("127.0.0.1:{}", free_port());
    tried_once_through_the_retry_policy(&host, Vec::new()).await;
}

/// The same when the scheme is settled and the first request goes out
/// without a ping before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_without_a_ping_is_tried_once_too() {
    let host = format!("127.0.0.1:{}", free_port());
    tried_once_through_the_retry_policy(&host, vec![host.clone()]).await;
}

/// `http_hosts` forces plain HTTP on the hosts listed, which settles their
/// scheme.
async fn tried_once_through_the_retry_policy(host: &str, http_hosts: Vec<String>) {
    let (client, heard) = reporting(ClientConfig {
        unreachable_memory: Duration::from_secs(30),
        http_hosts,
        ..quick_config()
    });
    let image: wharf_oci::Reference = format!("{host}/app:v1").parse().unwrap();
    let err = client.head_manifest(&image).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    let retries = || {
        heard
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("retry"))
            .count() as u32
    };
    let max = quick_config().retry.max_attempts;
    assert_eq!(retries(), max - 1, "{:?}", heard.lines());
    // The first request is reported as tried, ping or not.
    assert_eq!(
        heard.lines().first().map(String::as_str),
        Some(format!("trying {host} http://{host}/v2/").as_str()),
        "{:?}",
        heard.lines()
    );
    let err = client.get_manifest(&image).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert_eq!(retries(), max - 1, "no new tries: {:?}", heard.lines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_verified_like_docker_login() {
    let reg = DockerRegistry::start(DockerAuth::Htpasswd {
        user: "alice",
        password: "right-pass",
    })
    .await;
    let client = Client::new(ClientConfig {
        credentials: CredentialSources::none(),
        ..quick_config()
    })
    .unwrap();
    client
        .verify_credential(&reg.host, Credential::basic("alice", "right-pass"))
        .await
        .unwrap();
    let err = client
        .verify_credential(&reg.host, Credential::basic("alice", "wrong-pass"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    assert!(err.to_string().contains("refused the credentials"), "{err}");
    assert!(!err.to_string().contains("wrong-pass"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_redirect_followed_is_reported_without_its_signature() {
    use common::scripted::{Reply, ScriptedServer};
    let blob = pseudo_random(7, 10_000);
    let digest = wharf_oci::Digest::sha256_of(&blob);
    let served = blob.clone();
    let cdn = ScriptedServer::start(move |_| Reply::new(200).body(served.clone())).await;
    let signed = format!(
        "http://{}/bucket/blob?X-Signature=secret-signature",
        cdn.host()
    );
    let reg = ScriptedServer::start(move |req| {
        if req.path() == "/v2/" {
            Reply::new(200)
        } else {
            Reply::new(307).header("Location", &signed)
        }
    })
    .await;
    let (client, heard) = reporting(quick_config());
    let got = collect(
        client
            .get_blob(&reg.host(), &repo("cdn/app"), &digest)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(got, blob);
    let redirects: Vec<String> = heard
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("redirect"))
        .collect();
    assert_eq!(
        redirects,
        [format!("redirect {} http://{}", reg.host(), cdn.host())]
    );
    assert!(!heard.lines().iter().any(|l| l.contains("secret-signature")));
}
