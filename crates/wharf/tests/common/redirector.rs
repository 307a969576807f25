//! An upstream's front door as big registries have one: every blob GET is
//! answered with a 307 to another address (here the upstream's own port),
//! everything else is passed through. Counts request lines, and can be
//! stopped to make the upstream unreachable.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Redirector {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Redirector {
    /// In front of the registry at `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Redirector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind redirector");
        let port = listener.local_addr().expect("local address").port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (lines, stop, upstream) = (lines.clone(), stop.clone(), upstream.to_string());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        let (lines, upstream) = (lines.clone(), upstream.clone());
                        std::thread::spawn(move || answer(stream, &upstream, &lines));
                    }
                }
            })
        };
        Redirector {
            port,
            lines,
            stop,
            thread: Some(thread),
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Request lines (`GET /v2/... HTTP/1.1`) seen so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    /// Requests whose line starts with `prefix` (`"GET /v2/x/blobs/"`).
    pub fn count(&self, prefix: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// Close the listener: the upstream becomes unreachable.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answer(stream: TcpStream, upstream: &str, lines: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).map_or(true, |n| n <= 2) {
            break;
        }
        if let Some((name, value)) = h.trim_end().split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let request_line = request_line.trim_end().to_string();
    lines.lock().expect("lock").push(request_line.clone());
    let mut parts = request_line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let url = format!("http://{upstream}{path}");
    let response = if method == "GET" && path.contains("/blobs/sha256:") {
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {url}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    } else {
        pass_through(method, &url, &headers)
    };
    let _ = reader.get_mut().write_all(&response);
}

fn pass_through(method: &str, url: &str, headers: &[(String, String)]) -> Vec<u8> {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let is_head = method == reqwest::Method::HEAD;
    let mut request = client.request(method, url);
    for (name, value) in headers {
        if matches!(name.as_str(), "accept" | "range" | "authorization") {
            request = request.header(name, value);
        }
    }
    let Ok(mut response) = request.send() else {
        return b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec();
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status().as_u16(),
        response.status().canonical_reason().unwrap_or("")
    )
    .into_bytes();
    let mut body = Vec::new();
    if !is_head {
        let _ = response.read_to_end(&mut body);
    }
    for (name, value) in response.headers() {
        if name != "connection"
            && name != "transfer-encoding"
            && (is_head || name != "content-length")
        {
            out.extend_from_slice(
                format!("{name}: {}\r\n", value.to_str().unwrap_or("")).as_bytes(),
            );
        }
    }
    if !is_head {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(&body);
    out
}
