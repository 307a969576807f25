//! A bare HTTP/1.1 client over a TCP socket, for requests a normal client
//! refuses or rewrites: raw `..` path segments, lying `Content-Length`s,
//! bodies cut short, connections dropped mid-request.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on waiting for the server to answer or close: a hang is a
/// failure, not something to wait out.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The request head (request line and headers) for `method target`, with
/// `Host` and `Connection: close` added.
pub fn head(method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out =
        format!("{method} {target} HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Send a whole request and read the answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let length = body.len().to_string();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if !body.is_empty() || method == "PUT" || method == "POST" || method == "PATCH" {
        all.push(("Content-Length", &length));
    }
    let mut bytes = head(method, target, &all);
    bytes.extend_from_slice(body);
    exchange(addr, &bytes)
        .await
        .unwrap_or_else(|| panic!("{method} {target}: the server closed without an answer"))
}

/// Write `bytes`, then read until the server closes. `None` if it closed
/// without sending a response.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Option<RawResponse> {
    let mut stream = connect(addr).await;
    // The server may answer and close before reading everything.
    let _ = stream.write_all(bytes).await;
    read_answer(&mut stream).await
}

/// Write all of `bytes` before reading anything, as containerd and Python's
/// `http.client` do, then read the answer. Panics if the server broke the
/// connection before the whole request was sent.
pub async fn send_all_then_read(addr: SocketAddr, bytes: &[u8]) -> Option<RawResponse> {
    let mut stream = connect(addr).await;
    let sent = tokio::time::timeout(ANSWER_TIMEOUT, stream.write_all(bytes)).await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!(
            "the server broke the connection before the {}-byte request was sent: {e}",
            bytes.len()
        ),
        Err(_) => panic!("the server stopped reading the request for {ANSWER_TIMEOUT:?}"),
    }
    read_answer(&mut stream).await
}

/// Write `bytes`, close the sending half (the server sees the body end
/// early), then read whatever the server says.
pub async fn send_truncated(addr: SocketAddr, bytes: &[u8]) -> Option<RawResponse> {
    let mut stream = connect(addr).await;
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    read_answer(&mut stream).await
}

/// Write `bytes` and drop the connection without reading: a client that
/// vanishes mid-request.
pub async fn send_and_vanish(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = connect(addr).await;
    stream
        .write_all(bytes)
        .await
        .expect("write the partial request");
    stream.flush().await.expect("flush the partial request");
    drop(stream);
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr)
        .await
        .expect("connect to the registry")
}

async fn read_answer(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(ANSWER_TIMEOUT, read_to_close(stream, &mut buf)).await;
    assert!(
        read.is_ok(),
        "the server neither answered nor closed the connection within {ANSWER_TIMEOUT:?}"
    );
    parse(&buf)
}

/// Read until EOF; a reset after the answer still leaves the answer in `buf`.
async fn read_to_close(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn parse(buf: &[u8]) -> Option<RawResponse> {
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &buf[split + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_field = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(size_field.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(rest.len());
        body.extend_from_slice(&rest[start..end]);
        rest = rest.get(end + 2..).unwrap_or(&[]);
    }
    body
}
