//! A socket that is not a running containerd gives a clear error within the
//! timeout, never an answer.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use wharf_cri::{ask, CriError};

const TIMEOUT: Duration = Duration::from_secs(2);

async fn ask_within(socket: &Path) -> CriError {
    let started = Instant::now();
    let err = ask(socket, TIMEOUT)
        .await
        .expect_err("no runtime answers here");
    // Each of the three calls and the connect are bounded.
    assert!(
        started.elapsed() < TIMEOUT * 5,
        "took {:?}",
        started.elapsed()
    );
    err
}

#[tokio::test]
async fn a_missing_socket_means_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let err = ask_within(&dir.path().join("containerd.sock")).await;
    assert!(matches!(err, CriError::NotRunning { .. }), "{err}");
    assert!(err.hint().contains("start containerd"), "{}", err.hint());
}

#[tokio::test]
async fn a_socket_nobody_accepts_on_means_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("containerd.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let err = ask_within(&path).await;
    assert!(matches!(err, CriError::NotRunning { .. }), "{err}");
}

/// A plain HTTP/1.1 server (say, a Docker-style API socket) answers every
/// connection with a 400 and closes it.
#[tokio::test]
async fn an_http1_server_is_not_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("http.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    let err = ask_within(&path).await;
    server.abort();
    assert!(matches!(err, CriError::NotGrpc { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("is not a container runtime's gRPC socket"),
        "{err}"
    );
}

/// A peer that accepts and then says nothing must not hang the caller.
#[tokio::test]
async fn a_silent_peer_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let err = ask_within(&path).await;
    server.abort();
    assert!(matches!(err, CriError::Timeout { .. }), "{err}");
}
