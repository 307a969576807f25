//! Behaviour real registries show only sometimes, scripted: blob redirects
//! to another origin, 429 with Retry-After, a connection cut mid-body, bytes
//! that do not match their digest, redirect loops.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::scripted::{Reply, Request, ScriptedServer};
use common::*;
use wharf_client::{Client, ClientConfig, Credential, CredentialSources, ErrorKind, MAX_REDIRECTS};
use wharf_oci::{media_type, Digest, Reference};
use wharf_testkit::{free_port, pseudo_random};

const REPO: &str = "scripted/app";

fn basic_client(host: &str) -> Client {
    Client::new(ClientConfig {
        credentials: CredentialSources::none()
            .with_explicit(host, Credential::basic("user", "pass")),
        ..quick_config()
    })
    .unwrap()
}

/// `/v2/` wants Basic auth; everything else goes to `rest`.
fn registry(
    rest: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    move |req| {
        if req.path() == "/v2/" {
            if req.header("authorization").is_some() {
                return Reply::new(200);
            }
            return Reply::new(401).header("WWW-Authenticate", r#"Basic realm="scripted""#);
        }
        rest(req)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_redirects_never_carry_authorization_to_another_origin() {
    let blob = pseudo_random(41, 100_000);
    let digest = Digest::sha256_of(&blob);
    let served = blob.clone();
    let cdn = ScriptedServer::start(move |_| Reply::new(200).body(served.clone())).await;
    let cdn_url = format!(
        "http://{}/bucket/blob?X-Signature=secret-signature",
        cdn.host()
    );
    let same_origin_hop = format!("/v2/{REPO}/moved");
    let reg = ScriptedServer::start(registry(move |req| {
        if req.header("authorization").is_none() {
            return Reply::new(401).header("WWW-Authenticate", r#"Basic realm="scripted""#);
        }
        // First hop stays on the registry, the second leaves it.
        if req.path().ends_with("/moved") {
            Reply::new(307).header("Location", &cdn_url)
        } else {
            Reply::new(307).header("Location", &same_origin_hop)
        }
    }))
    .await;
    let client = basic_client(&reg.host());
    let got = collect(
        client
            .get_blob(&reg.host(), &repo(REPO), &digest)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(got, blob);

    let to_registry = reg.requests_to(&digest.to_string());
    assert!(!to_registry.is_empty());
    assert!(
        to_registry
            .iter()
            .all(|r| r.header("authorization").is_some()),
        "the registry itself gets credentials"
    );
    assert_eq!(
        reg.requests_to("/moved").len(),
        1,
        "a same-origin hop was followed"
    );
    assert!(reg.requests_to("/moved")[0]
        .header("authorization")
        .is_some());
    let to_cdn = cdn.requests();
    assert_eq!(to_cdn.len(), 1, "the redirect target was fetched once");
    assert_eq!(
        to_cdn[0].target,
        "/bucket/blob?X-Signature=secret-signature"
    );
    assert_eq!(
        to_cdn[0].header("authorization"),
        None,
        "no credentials to another origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_loops_and_non_http_targets_are_refused() {
    let reg = ScriptedServer::start(|req| {
        if req.path() == "/v2/" {
            return Reply::new(200);
        }
        if req.path().contains("/manifests/file") {
            return Reply::new(302).header("Location", "file:///etc/passwd");
        }
        Reply::new(302).header("Location", req.path())
    })
    .await;
    let client = client();
    let looped: Reference = format!("{}/{REPO}:loop", reg.host()).parse().unwrap();
    let err = client.get_manifest(&looped).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert!(err.to_string().contains("redirects"), "{err}");
    assert_eq!(reg.requests_to("/manifests/loop").len(), MAX_REDIRECTS + 1);
    let file: Reference = format!("{}/{REPO}:file", reg.host()).parse().unwrap();
    let err = client.get_manifest(&file).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert!(!err.to_string().contains("passwd"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_requests_wait_for_retry_after_then_succeed() {
    let blob = pseudo_random(42, 10_000);
    let digest = Digest::sha256_of(&blob);
    let calls = Arc::new(AtomicUsize::new(0));
    let (served, n) = (blob.clone(), calls.clone());
    let reg = ScriptedServer::start(move |req| {
        if req.path() == "/v2/" {
            return Reply::new(200);
        }
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::new(429)
                .header("Retry-After", "1")
                .header("Content-Type", "application/json")
                .body(r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#);
        }
        Reply::new(200).body(served.clone())
    })
    .await;
    let rec = recorder();
    let client = client().with_reporter(rec.clone());
    let got = collect(
        client
            .get_blob(&reg.host(), &repo(REPO), &digest)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(got, blob);

    let requests = reg.requests_to(&digest.to_string());
    assert_eq!(requests.len(), 2, "one 429, one success");
    let retries = rec.retries.lock().unwrap().clone();
    assert_eq!(retries.len(), 1);
    let (reason, attempt, delay, from_header) = &retries[0];
    assert!(reason.contains("429"), "{reason}");
    assert_eq!(
        (*attempt, *delay, *from_header),
        (1, Duration::from_secs(1), true)
    );
    // A sleep never ends early, so this lower bound cannot flake.
    assert!(requests[1].at.duration_since(requests[0].at) >= Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_longer_than_the_cap_is_a_final_answer() {
    let reg = ScriptedServer::start(|req| {
        if req.path() == "/v2/" {
            return Reply::new(200);
        }
        Reply::new(429).header("Retry-After", "3600")
    })
    .await;
    let rec = recorder();
    let client = client().with_reporter(rec.clone());
    let err = client
        .head_blob(&reg.host(), &repo(REPO), &Digest::sha256_of(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(rec.retries.lock().unwrap().is_empty());
    let asked = format!("/blobs/{}", Digest::sha256_of(b"x"));
    assert_eq!(reg.requests_to(&asked).len(), 1, "no retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_backoff_up_to_the_limit() {
    let reg = ScriptedServer::start(|req| {
        if req.path() == "/v2/" {
            return Reply::new(200);
        }
        Reply::new(503)
    })
    .await;
    let rec = recorder();
    let client = client().with_reporter(rec.clone());
    let r: Reference = format!("{}/{REPO}:v1", reg.host()).parse().unwrap();
    let err = client.head_manifest(&r).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    let tries = quick_config().retry.max_attempts as usize;
    assert_eq!(reg.requests_to("/manifests/v1").len(), tries);
    let attempts: Vec<u32> = rec.retries.lock().unwrap().iter().map(|r| r.1).collect();
    assert_eq!(attempts, (1..tries as u32).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_download_resumes_with_range() {
    let blob = pseudo_random(43, 200_000);
    let digest = Digest::sha256_of(&blob);
    let cut = 77_777usize;
    let served = blob.clone();
    let reg = ScriptedServer::start(move |req| {
        if req.path() == "/v2/" {
            return Reply::new(200);
        }
        match req.header("range") {
            None => Reply::new(200).body(served.clone()).cut_after(cut),
            Some(range) => {
                let start: usize = range
                    .trim_start_matches("bytes=")
                    .trim_end_matches('-')
                    .parse()
                    .unwrap();
                Reply::new(206)
                    .header(
                        "Content-Range",
                        &format!("bytes {start}-{}/{}", served.len() - 1, served.len()),
                    )
                    .body(served[start..].to_vec())
            }
        }
    })
    .await;
    let rec = recorder();
    let client = client().with_reporter(rec.clone());
    let got = collect(
        client
            .get_blob(&reg.host(), &repo(REPO), &digest)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(got, blob, "whole blob, digest verified");
    let requests = reg.requests_to(&digest.to_string());
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("range"), None);
    assert_eq!(
        requests[1].header("range"),
        Some(format!("bytes={cut}-").as_str())
    );
    assert_eq!(*rec.resumes.lock().unwrap(), vec![cut as u64]);
    assert_eq!(*rec.finished.lock().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_against_a_server_ignoring_range_still_verifies() {
    let blob = pseudo_random(44, 50_000);
    let digest = Digest::sha256_of(&blob);
    let calls = Arc::new(AtomicUsize::new(0));
    let (served, n) = (blob.clone(), calls.clone());
    let reg = ScriptedServer::start(move |req| {
        if req.path() == "/v2/" {
            return Reply::new(200);
        }
        let reply = Reply::new(200).body(served.clone());
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            reply.cut_after(10_000)
        } else {
            reply
        }
    })
    .await;
    let got = collect(
        client()
            .get_blob(&reg.host(), &repo(REPO), &digest)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(got, blob, "the repeated prefix was skipped, not duplicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_bytes_not_matching_their_digest_are_refused() {
    let claimed = Digest::sha256_of(b"the real content");
    let reg = ScriptedServer::start(|req| {
        if req.path() == "/v2/" {
            return Reply::new(200);
        }
        Reply::new(200).body(&b"tampered content"[..])
    })
    .await;
    let rec = recorder();
    let client = client().with_reporter(rec.clone());
    let err = collect(
        client
            .get_blob(&reg.host(), &repo(REPO), &claimed)
            .await
            .unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DigestMismatch, "{err}");
    assert!(err.to_string().contains(&claimed.to_string()));
    assert_eq!(
        *rec.finished.lock().unwrap(),
        0,
        "never reported as complete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_not_matching_their_digests_are_refused() {
    let good = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let evil = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}"#;
    let good_digest = Digest::sha256_of(good);
    let announced = good_digest.to_string();
    let reg = ScriptedServer::start(move |req| {
        if req.path() == "/v2/" {
            return Reply::new(200);
        }
        // Serves other bytes than the ones it names.
        Reply::new(200)
            .header("Content-Type", media_type::OCI_INDEX)
            .header("Docker-Content-Digest", &announced)
            .body(&evil[..])
    })
    .await;
    let client = client();
    let by_digest = format!("{}/{REPO}@{good_digest}", reg.host())
        .parse::<Reference>()
        .unwrap();
    let err = client.get_manifest(&by_digest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DigestMismatch);
    let by_tag = format!("{}/{REPO}:v1", reg.host())
        .parse::<Reference>()
        .unwrap();
    let err = client.get_manifest(&by_tag).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::DigestMismatch,
        "Docker-Content-Digest is checked too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_registry_is_a_network_error() {
    // Nothing listens on this port any more.
    let addr = format!("127.0.0.1:{}", free_port());
    let client = Client::new(ClientConfig {
        retry: wharf_client::RetryPolicy::none(),
        ..ClientConfig::default()
    })
    .unwrap();
    let err = client.ping(&addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("ping {addr}: cannot connect")),
        "{err}"
    );
}

/// A registry that stores the first chunk but loses its answer (503): the
/// client must ask how much arrived and carry on, not send it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_whose_answer_was_lost_is_not_sent_twice() {
    let blob = pseudo_random(45, 30_000);
    let digest = Digest::sha256_of(&blob);
    let held = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let patches = Arc::new(AtomicUsize::new(0));
    let (store, n) = (held.clone(), patches.clone());
    let location = format!("/v2/{REPO}/blobs/uploads/1");
    let reg = ScriptedServer::start(move |req| {
        let range = |len: usize| format!("0-{}", len.saturating_sub(1));
        match (req.method.as_str(), req.path()) {
            ("GET", "/v2/") => Reply::new(200),
            ("POST", _) => Reply::new(202)
                .header("Location", &location)
                .header("Range", "0-0"),
            ("PATCH", _) => {
                let mut held = store.lock().unwrap();
                held.extend_from_slice(&req.body);
                if n.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Reply::new(503);
                }
                Reply::new(202)
                    .header("Location", &location)
                    .header("Range", &range(held.len()))
            }
            ("GET", _) => {
                let held = store.lock().unwrap();
                Reply::new(204)
                    .header("Location", &location)
                    .header("Range", &range(held.len()))
            }
            ("PUT", _) => Reply::new(201),
            _ => Reply::new(400),
        }
    })
    .await;
    let client = client();
    let session = client.start_upload(&reg.host(), &repo(REPO)).await.unwrap();
    let chunks = vec![Ok::<_, std::io::Error>(bytes::Bytes::from(blob.clone()))];
    client
        .upload_chunked(session, &digest, futures_util::stream::iter(chunks), 10_000)
        .await
        .unwrap();
    assert_eq!(
        *held.lock().unwrap(),
        blob,
        "every byte exactly once, in order"
    );
    assert_eq!(
        patches.load(Ordering::SeqCst),
        3,
        "three chunks, none repeated"
    );
    let statuses = reg
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path().contains("/uploads/"))
        .count();
    assert_eq!(
        statuses, 1,
        "the upload's state was asked for once, after the failure"
    );
    let put = reg
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    assert!(put.target.ends_with(&format!(
        "digest={}",
        digest.to_string().replace(':', "%3A")
    )));
}

/// Where the scheme is settled, the first request is the request itself,
/// not a `/v2/` ping before it: a round trip less for a cache's first pull
/// over a WAN. A 401 then teaches the challenge, and the request is sent
/// again with the credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_scheme_needs_no_ping_and_a_401_teaches_the_challenge() {
    let blob = pseudo_random(43, 10_000);
    let digest = Digest::sha256_of(&blob);
    let served = blob.clone();
    let reg = ScriptedServer::start(registry(move |req| {
        if req.header("authorization").is_none() {
            return Reply::new(401).header("WWW-Authenticate", r#"Basic realm="scripted""#);
        }
        Reply::new(200).body(served.clone())
    }))
    .await;
    let host = reg.host();
    let client = Client::new(ClientConfig {
        http_hosts: vec![host.clone()],
        credentials: CredentialSources::none()
            .with_explicit(&host, Credential::basic("user", "pass")),
        ..quick_config()
    })
    .unwrap();
    for _ in 0..2 {
        let got = collect(client.get_blob(&host, &repo(REPO), &digest).await.unwrap())
            .await
            .unwrap();
        assert_eq!(got, blob);
    }
    let seen: Vec<(bool, String)> = reg
        .requests()
        .iter()
        .map(|r| (r.header("authorization").is_some(), r.path().to_string()))
        .collect();
    let path = format!("/v2/{REPO}/blobs/{digest}");
    assert_eq!(
        seen,
        [(false, path.clone()), (true, path.clone()), (true, path)],
        "no ping; one anonymous try, then the credentials from the start"
    );
}
