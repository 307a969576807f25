//! Raw clients for the server's resource-bound tests: sockets that say
//! nothing, upload bodies that stall or trickle, HTTP/2 streams left open,
//! and the server's threads and memory as the kernel reports them.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Reads, sending nothing, until the peer closes the connection (EOF,
/// reset, or a TLS stream ending without close_notify); how long that took,
/// or an error of kind `TimedOut` if it is still open after `bound`. Bytes
/// the server sends meanwhile (an HTTP/2 SETTINGS or GOAWAY) are skipped.
pub fn wait_closed(
    reader: &mut impl Read,
    sock: &TcpStream,
    bound: Duration,
) -> io::Result<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = bound.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the server kept the connection open for {bound:?}"),
            ));
        }
        sock.set_read_timeout(Some(left))?;
        match reader.read(&mut buf) {
            Ok(0) => return Ok(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Ok(started.elapsed())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// A plain TCP connection to the server on loopback.
pub fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("connect to wharf")
}

/// The HTTP/2 connection preface and an empty SETTINGS frame: all a client
/// must send before the server may expect requests.
pub const H2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// A `PATCH` of `location` announcing `announced` bytes, of which only
/// `sent` are sent; the connection is returned open, the rest never comes.
pub fn stalled_patch(port: u16, location: &str, announced: usize, sent: usize) -> TcpStream {
    let mut stream = connect(port);
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\nContent-Length: {announced}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send PATCH head");
    stream
        .write_all(&vec![7u8; sent])
        .expect("send part of the body");
    stream
}

/// Reads an HTTP/1.1 response head (status line and headers) within `bound`.
pub fn read_head(stream: &mut TcpStream, bound: Duration) -> io::Result<String> {
    stream.set_read_timeout(Some(bound))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// `Threads:` of `/proc/PID/status`.
pub fn threads(pid: u32) -> usize {
    status_field(pid, "Threads:")
}

/// `VmRSS:` of `/proc/PID/status`, in KiB.
pub fn rss_kib(pid: u32) -> usize {
    status_field(pid, "VmRSS:")
}

/// Open descriptors of `pid`.
pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn status_field(pid: u32, name: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
}

/// Raise this process's soft limit on open files to the hard one, and
/// return it: a test holding thousands of sockets needs more than 1024.
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).expect("raise RLIMIT_NOFILE to its hard limit");
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// An HTTP/2 client connection (prior knowledge, plain text) to the server.
pub async fn h2_connect(port: u16) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to wharf");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Sends a request over HTTP/2 with `body` (no `Content-Length` header)
/// and ends the stream; the status, the headers and the body of the answer.
pub async fn h2_send(
    client: &mut h2::client::SendRequest<Bytes>,
    method: &str,
    url: &str,
    body: &[u8],
) -> (u16, http::HeaderMap, Vec<u8>) {
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(())
        .expect("request");
    let mut ready = client.clone().ready().await.expect("HTTP/2 stream slot");
    let (response, mut stream) = ready
        .send_request(request, body.is_empty())
        .expect("send request");
    if !body.is_empty() {
        // Two frames, so the body is not a single DATA frame with END_STREAM.
        let (first, rest) = body.split_at(body.len() / 2);
        stream
            .send_data(Bytes::copy_from_slice(first), false)
            .expect("send data");
        stream
            .send_data(Bytes::copy_from_slice(rest), true)
            .expect("send data");
    }
    let response = response.await.expect("HTTP/2 response");
    let (parts, mut recv) = response.into_parts();
    let mut out = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.expect("response body");
        let _ = recv.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (parts.status.as_u16(), parts.headers, out)
}
