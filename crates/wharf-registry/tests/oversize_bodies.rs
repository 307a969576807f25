//! Bodies over a limit, sent by clients that write the whole request before
//! they read the answer (containerd, Python's `http.client`): they must read
//! the 413 with its spec error, not a broken pipe or a reset connection. A
//! body too large even to be drained is cut off, not read forever.

mod common;

use std::path::Path;
use std::time::Duration;

use common::raw;
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wharf_registry::limits::REFUSED_BODY_DRAIN_BYTES;

const REPO: &str = "oversize/manifest";
/// The default manifest limit.
const LIMIT: usize = 4 * 1024 * 1024;
/// Three times the limit: more than the socket buffers hold, so a server
/// that answers without reading makes the client's send fail.
const OVERSIZE: usize = 3 * LIMIT;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The answer Python's `http.client` got, as `tests/clients/send_whole_body.py`
/// prints it.
async fn python_put(
    reg: &TestRegistry,
    path: &str,
    size: usize,
    framing: &str,
) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/send_whole_body.py");
    let addr = reg.addr();
    let run = tokio::process::Command::new("python3")
        .arg(&script)
        .args([
            &addr.ip().to_string(),
            &addr.port().to_string(),
            "PUT",
            path,
        ])
        .args([OCI_MANIFEST, &size.to_string(), framing])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(CLIENT_TIMEOUT, run)
        .await
        .expect("python3 must finish within the timeout")
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the client script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the client printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn assert_size_invalid(status: u64, body: &str, why: &str) {
    assert_eq!(status, 413, "{why}: status (body: {body})");
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{why}: not JSON ({e}): {body}"));
    assert_eq!(
        json["errors"][0]["code"], "SIZE_INVALID",
        "{why}: the spec error code"
    );
}

async fn assert_refused_and_still_serving(reg: &TestRegistry, reference: &str) {
    reg.get(&format!("/v2/{REPO}/manifests/{reference}"))
        .await
        .expect_status(404, "a refused manifest must not exist");
    reg.get("/v2/")
        .await
        .expect_status(200, "the registry keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_client_reads_the_413_of_an_oversize_manifest() {
    let reg = TestRegistry::start().await;
    for framing in ["length", "chunked"] {
        let path = format!("/v2/{REPO}/manifests/{framing}");
        let answer = python_put(&reg, &path, OVERSIZE, framing).await;
        let why = format!("http.client PUT of a {OVERSIZE}-byte manifest ({framing})");
        assert!(answer["error"].is_null(), "{why}: {}", answer["error"]);
        let body = answer["body"].as_str().expect("an answer body");
        assert_size_invalid(answer["status"].as_u64().unwrap_or(0), body, &why);
        assert_refused_and_still_serving(&reg, framing).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_client_sending_length_and_whole_body_first_reads_the_413() {
    let reg = TestRegistry::start().await;
    let length = OVERSIZE.to_string();
    let headers = [("Content-Type", OCI_MANIFEST), ("Content-Length", &length)];
    let mut request = raw::head("PUT", &format!("/v2/{REPO}/manifests/raw"), &headers);
    request.extend(std::iter::repeat_n(b' ', OVERSIZE));
    let resp = raw::send_all_then_read(reg.addr(), &request)
        .await
        .expect("an answer after the whole body was sent");
    assert_size_invalid(
        u64::from(resp.status),
        &resp.text(),
        "a raw PUT of an oversize manifest, body sent whole",
    );
    assert_refused_and_still_serving(&reg, "raw").await;
}

/// Writes a chunked manifest PUT, 1 MiB a chunk, until the server stops
/// taking it or `most` bytes are sent; returns the body bytes written.
async fn write_chunked_until_refused(stream: &mut TcpStream, target: &str, most: u64) -> u64 {
    let head = raw::head(
        "PUT",
        target,
        &[
            ("Content-Type", OCI_MANIFEST),
            ("Transfer-Encoding", "chunked"),
        ],
    );
    stream
        .write_all(&head)
        .await
        .expect("send the request head");
    let data = vec![b' '; 1024 * 1024];
    let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
    chunk.extend_from_slice(&data);
    chunk.extend_from_slice(b"\r\n");
    let mut written = 0;
    while written < most {
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
        written += data.len() as u64;
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_beyond_the_drain_bound_is_cut_off() {
    let reg = TestRegistry::start().await;
    let mut stream = TcpStream::connect(reg.addr()).await.expect("connect");
    let target = format!("/v2/{REPO}/manifests/endless");
    let most = 16 * REFUSED_BODY_DRAIN_BYTES;
    let written = tokio::time::timeout(
        CLIENT_TIMEOUT,
        write_chunked_until_refused(&mut stream, &target, most),
    )
    .await
    .expect("the server must stop reading within the timeout");
    // What the socket buffers and hyper's read buffer hold on top of what
    // the registry drained.
    let slack = 32 * 1024 * 1024;
    assert!(
        written < REFUSED_BODY_DRAIN_BYTES + slack,
        "the server read {written} bytes of a refused body; it must stop near {REFUSED_BODY_DRAIN_BYTES}"
    );
    assert!(
        written >= REFUSED_BODY_DRAIN_BYTES,
        "the server stopped after {written} bytes; a refused body is drained up to {REFUSED_BODY_DRAIN_BYTES}"
    );
    assert_refused_and_still_serving(&reg, "endless").await;
}
