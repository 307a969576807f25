//! A stand-in for an upstream registry (docker.io): it answers every request
//! with 503 and counts them, so a test can prove that nothing was fetched
//! from "the internet".

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct StandIn {
    port: u16,
    requests: Arc<AtomicUsize>,
    request_lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Listens on a free loopback port of the current network namespace.
    pub fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind stand-in upstream");
        let port = listener.local_addr().expect("local address").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let request_lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, lines, stop) = (requests.clone(), request_lines.clone(), stop.clone());
            std::thread::spawn(move || serve(listener, &requests, &lines, &stop))
        };
        StandIn {
            port,
            requests,
            request_lines,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Number of connections that reached the stand-in (each counts even if
    /// it never sent a complete request).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The request lines received, for failure messages.
    pub fn request_lines(&self) -> Vec<String> {
        self.request_lines.lock().expect("lock").clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the stop flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    listener: TcpListener,
    requests: &AtomicUsize,
    lines: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        if let Ok(stream) = stream {
            let line = answer_unavailable(stream);
            lines.lock().expect("lock").push(line);
        }
    }
}

/// Reads the request head and answers 503; returns the request line.
fn answer_unavailable(stream: TcpStream) -> String {
    // A client that connects but never sends must not block the stand-in forever.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    let _ = reader.read_line(&mut request_line);
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let body = "stand-in upstream: no internet here\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = reader.get_mut().write_all(response.as_bytes());
    request_line.trim_end().to_owned()
}
