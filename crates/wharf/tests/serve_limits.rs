//! `wharf serve` against clients that stall or exhaust it, over real
//! sockets: connections that say nothing (TCP, HTTP/2, TLS), upload bodies
//! that trickle or stall (HTTP/1.1 and HTTP/2 streams), more uploads or
//! connections than the limits allow, and an HTTP/2 closing PUT without
//! `Content-Length`.

mod common;

use common::server::Wharf;
use std::io::Write;
use std::time::Duration;
use wharf_testkit::{sha256_digest, wait_for};

use common::api::{push_image, Api};
use common::net::{self, stalled_patch};
use common::tls::{ca_init, ca_issue, HttpsWharf, TlsClient};

/// Short bounds, so each test sees them act within seconds.
const QUICK_LIMITS: &str = r#"
[server]
idle_timeout = "2s"
header_read_timeout = "2s"
tls_handshake_timeout = "2s"
body_timeout = "2s"
"#;

/// Time the server gets beyond a 2 s bound before a test calls it stuck.
const CLOSE_BOUND: Duration = Duration::from_secs(15);

fn quick_server(dir: &std::path::Path) -> Wharf {
    Wharf::start_with_config_text(dir, QUICK_LIMITS)
}

#[test]
fn silent_tcp_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = quick_server(dir.path());
    let mut conn = net::connect(wharf.port());
    let sock = conn.try_clone().unwrap();
    let took =
        net::wait_closed(&mut conn, &sock, CLOSE_BOUND).expect("a silent connection is closed");
    assert!(took >= Duration::from_secs(1), "closed too early: {took:?}");
}

#[test]
fn http2_preface_then_nothing_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = quick_server(dir.path());
    let mut conn = net::connect(wharf.port());
    conn.write_all(net::H2_PREFACE).unwrap();
    let sock = conn.try_clone().unwrap();
    let took = net::wait_closed(&mut conn, &sock, CLOSE_BOUND)
        .expect("an HTTP/2 connection without requests is closed");
    assert!(took >= Duration::from_secs(1), "closed too early: {took:?}");
}

#[test]
fn silent_tls_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let ca = ca_init(&ca_dir);
    let (cert, key) = ca_issue(&ca_dir, &["127.0.0.1"], &dir.path().join("server"));
    let config = dir.path().join("wharf.toml");
    std::fs::write(&config, QUICK_LIMITS).unwrap();
    let extra = ["--config".to_string(), config.display().to_string()];
    let wharf = HttpsWharf::start_with(&dir.path().join("w"), &cert, &key, &ca, &extra);
    let mut conn = TlsClient::trusting(&ca)
        .connect(wharf.port())
        .expect("TLS handshake");
    let took = conn
        .wait_closed(CLOSE_BOUND)
        .expect("a TLS connection silent after its handshake is closed");
    assert!(took >= Duration::from_secs(1), "closed too early: {took:?}");
}

#[test]
fn keep_alive_connection_is_closed_when_idle_but_serves_first() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = quick_server(dir.path());
    let mut conn = net::connect(wharf.port());
    conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let head = net::read_head(&mut conn, CLOSE_BOUND).expect("an answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let sock = conn.try_clone().unwrap();
    net::wait_closed(&mut conn, &sock, CLOSE_BOUND)
        .expect("the idle keep-alive connection is closed");
}

#[test]
fn trickling_patch_body_is_cut_off_with_408() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = quick_server(dir.path());
    let api = Api::new(&wharf.url());
    let location = api.start_upload("trickle").unwrap();
    let path = location.trim_start_matches(&wharf.url()).to_string();
    // A byte every 50 ms dodges any plain inactivity timeout, and is far
    // below the 1 KiB/s the default minimum rate asks for.
    let mut conn = stalled_patch(wharf.port(), &path, 1 << 20, 1);
    let mut writer = conn.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..400 {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let head =
        net::read_head(&mut conn, CLOSE_BOUND).expect("the server answers the trickling PATCH");
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    drop(conn);
    trickle.join().unwrap();
    // What arrived is kept and the upload can go on.
    assert!(api.upload_size(&location).is_ok());
}

/// Waits until every upload at `locations` holds more than one write batch
/// (so its body reached the writer), then checks that the server grew by
/// fewer than 24 threads since it had `before`.
fn assert_stalled_hold_no_threads(
    api: &Api,
    wharf: &Wharf,
    locations: &[String],
    before: usize,
    what: &str,
) {
    let all_writing = wait_for(Duration::from_secs(60), || {
        locations
            .iter()
            .all(|l| api.upload_size(l).is_ok_and(|s| s >= 256 << 10))
            .then_some(())
    });
    assert!(all_writing.is_some(), "{what}: not all reached storage");
    let during = net::threads(wharf.pid());
    assert!(
        during < before + 24,
        "{what} grew the server from {before} to {during} threads"
    );
}

/// The bug: every PATCH body in flight held a blocking writer thread until
/// it ended, so stalled uploads grew the server by a thread each.
#[test]
fn stalled_uploads_hold_no_threads() {
    const STALLED: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start(dir.path());
    let api = Api::new(&wharf.url());
    let before = net::threads(wharf.pid());
    let mut stalled = Vec::new();
    let mut locations = Vec::new();
    for _ in 0..STALLED {
        let location = api.start_upload("stalled").unwrap();
        let path = location.trim_start_matches(&wharf.url()).to_string();
        // More than one write batch arrives, then nothing.
        stalled.push(stalled_patch(wharf.port(), &path, 4 << 20, 300 << 10));
        locations.push(location);
    }
    assert_stalled_hold_no_threads(
        &api,
        &wharf,
        &locations,
        before,
        &format!("{STALLED} stalled uploads"),
    );
    // Pushes still work meanwhile.
    push_image(&api, "normal", "v1", b"{}", &[&[1u8; 300_000]])
        .expect("a push beside stalled uploads");
    drop(stalled);
}

#[test]
fn stalled_http2_streams_hold_no_threads() {
    const CONNECTIONS: usize = 2;
    const STREAMS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start(dir.path());
    let api = Api::new(&wharf.url());
    let before = net::threads(wharf.pid());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let locations: Vec<String> = (0..CONNECTIONS * STREAMS)
        .map(|_| api.start_upload("h2-stalled").unwrap())
        .collect();
    let port = wharf.port();
    let mut held_clients = Vec::new();
    // The streams and the connections they ride on stay open, stalled,
    // until the end of the test.
    let held = runtime.block_on(async {
        let mut held = Vec::new();
        for chunk in locations.chunks(STREAMS) {
            let client = net::h2_connect(port).await;
            for location in chunk {
                let request = http::Request::builder()
                    .method("PATCH")
                    .uri(location.as_str())
                    .header("content-type", "application/octet-stream")
                    .body(())
                    .unwrap();
                let mut ready = client.clone().ready().await.unwrap();
                let (response, mut body) = ready.send_request(request, false).unwrap();
                body.send_data(bytes::Bytes::from(vec![9u8; 300 << 10]), false)
                    .unwrap();
                held.push((response, body));
            }
            held_clients.push(client);
        }
        held
    });
    assert_stalled_hold_no_threads(
        &api,
        &wharf,
        &locations,
        before,
        &format!("{} stalled HTTP/2 streams", CONNECTIONS * STREAMS),
    );
    push_image(&api, "normal", "v1", b"{}", &[&[2u8; 300_000]])
        .expect("a push beside stalled streams");
    drop((held, held_clients));
}

#[test]
fn uploads_beyond_the_limit_get_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_with_config_text(dir.path(), "[server]\nmax_uploads = 2\n");
    let api = Api::new(&wharf.url());
    let path = |l: &str| l.trim_start_matches(&wharf.url()).to_string();
    let first = api.start_upload("limited").unwrap();
    let second = api.start_upload("limited").unwrap();
    let mut stalled = vec![
        stalled_patch(wharf.port(), &path(&first), 4 << 20, 300 << 10),
        stalled_patch(wharf.port(), &path(&second), 4 << 20, 300 << 10),
    ];
    let writing = wait_for(Duration::from_secs(30), || {
        [&first, &second]
            .iter()
            .all(|l| api.upload_size(l).is_ok_and(|s| s >= 256 << 10))
            .then_some(())
    });
    assert!(writing.is_some(), "both uploads reach storage");
    let third = api.start_upload("limited").unwrap();
    let mut conn = stalled_patch(wharf.port(), &path(&third), 10, 10);
    let head = net::read_head(&mut conn, CLOSE_BOUND).expect("an answer beyond the limit");
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );
    let mut body = [0u8; 512];
    let n = std::io::Read::read(&mut conn, &mut body).unwrap();
    assert!(
        String::from_utf8_lossy(&body[..n]).contains("TOOMANYREQUESTS"),
        "{}",
        String::from_utf8_lossy(&body[..n])
    );
    // A slot frees when its client goes away.
    stalled.pop();
    let accepted = wait_for(Duration::from_secs(30), || {
        let mut conn = stalled_patch(wharf.port(), &path(&third), 10, 10);
        let head = net::read_head(&mut conn, CLOSE_BOUND).ok()?;
        head.starts_with("HTTP/1.1 202").then_some(())
    });
    assert!(
        accepted.is_some(),
        "an upload is accepted once a slot is free"
    );
}

#[test]
fn connection_limit_closes_idle_connections_for_a_new_client() {
    let dir = tempfile::tempdir().unwrap();
    // Idle connections would stay for a minute: only the limit frees them.
    let wharf = Wharf::start_with_config_text(dir.path(), "[server]\nmax_connections = 20\n");
    let silent: Vec<_> = (0..20).map(|_| net::connect(wharf.port())).collect();
    let api = Api::new(&wharf.url());
    let started = std::time::Instant::now();
    push_image(&api, "past-the-limit", "v1", b"{}", &[b"layer"])
        .expect("a client past the connection limit is served");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "served only after {:?}",
        started.elapsed()
    );
    drop(silent);
}

/// The bug: a closing PUT whose final chunk came over HTTP/2 without a
/// `Content-Length` was taken for an empty body and answered 400
/// DIGEST_INVALID.
#[test]
fn http2_closing_put_without_content_length_is_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start(dir.path());
    let base = wharf.url();
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256_digest(&blob);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, headers, body) = runtime.block_on(async {
        let mut client = net::h2_connect(wharf.port()).await;
        let (status, headers, _) = net::h2_send(
            &mut client,
            "POST",
            &format!("{base}/v2/h2/blobs/uploads/"),
            &[],
        )
        .await;
        assert_eq!(status, 202);
        let location = headers["location"].to_str().unwrap().to_string();
        let url = format!("{base}{location}?digest={digest}");
        net::h2_send(&mut client, "PUT", &url, &blob).await
    });
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert!(!headers.contains_key("content-length") || headers["content-length"] == "0");
    let api = Api::new(&base);
    assert_eq!(api.blob("h2", &digest).unwrap(), blob);
}
