//! `wharf serve` as an operator meets it: start-up errors that say what to
//! do, structured logs, and a graceful stop that lets requests finish.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use wharf_testkit::free_port;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

/// Kills the server if a test fails before stopping it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> Server {
    let child = Command::new(WHARF)
        .arg("serve")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wharf starts");
    Server(child)
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::yield_now();
    }
    panic!("wharf did not answer /v2/ on port {port} within 20 s");
}

fn sigterm(child: &Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "wharf did not exit within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_to_end(args: &[&str]) -> (i32, String) {
    let out = Command::new(WHARF).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let root = tempfile::tempdir().unwrap();
    let (code, stderr) = run_to_end(&[
        "serve",
        "--listen",
        &addr,
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn unwritable_root_is_a_clear_error() {
    let (code, stderr) = run_to_end(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--root",
        "/proc/wharf-cannot-write-here",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot open storage at /proc/wharf-cannot-write-here"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn unknown_configuration_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wharf.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nlisten_adress = \"x\"\n",
    )
    .unwrap();
    let (code, stderr) = run_to_end(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("listen_adress"), "{stderr}");
}

#[test]
fn bad_usage_exits_2() {
    let (code, _) = run_to_end(&["serve", "--no-such-flag"]);
    assert_eq!(code, 2);
}

#[test]
fn json_logs_have_one_access_line_per_request() {
    let port = free_port();
    let root = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut server = start(&[
        "--listen",
        &listen,
        "--root",
        root.path().to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    wait_ready(port);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /v2/UPPER/tags/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    sigterm(&server.0);
    assert!(wait_exit(&mut server.0).success());
    let stderr = BufReader::new(server.0.stderr.take().unwrap());
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).expect("every log line is JSON"))
        .collect();
    let access: Vec<_> = events
        .iter()
        .filter(|e| e["target"] == "wharf::access")
        .collect();
    assert!(
        access
            .iter()
            .any(|e| e["fields"]["status"] == 400 && e["fields"]["path"] == "/v2/UPPER/tags/list"),
        "no access line for the bad request: {access:?}"
    );
}

/// A SIGTERM sent as soon as the port takes connections is a graceful stop,
/// not a kill: the handlers are installed before the port is bound.
#[test]
fn sigterm_right_after_the_port_opens_is_a_graceful_stop() {
    for _ in 0..5 {
        let port = free_port();
        let root = tempfile::tempdir().unwrap();
        let listen = format!("127.0.0.1:{port}");
        let mut server = start(&["--listen", &listen, "--root", root.path().to_str().unwrap()]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "wharf never took connections");
            std::thread::yield_now();
        }
        sigterm(&server.0);
        let status = wait_exit(&mut server.0);
        assert!(status.success(), "SIGTERM ended wharf with {status:?}");
    }
}

#[test]
fn sigterm_lets_an_in_flight_upload_finish() {
    let port = free_port();
    let root = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut server = start(&["--listen", &listen, "--root", root.path().to_str().unwrap()]);
    wait_ready(port);
    let body = b"an in-flight blob";
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body))
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /v2/graceful/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..5]).unwrap();
    s.flush().unwrap();
    // Make sure the server is inside the request before it is told to stop:
    // the handler has opened the upload once its directory exists. (An
    // answer on a second connection only proves the first was accepted, not
    // that its request was read: a connection still idle at the signal is
    // closed, as it should be.)
    let uploads = root.path().join("uploads");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&uploads).map_or(true, |mut d| d.next().is_none()) {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    sigterm(&server.0);
    s.write_all(&body[5..]).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 201"),
        "in-flight upload was cut: {reply}"
    );
    assert!(wait_exit(&mut server.0).success(), "graceful stop exits 0");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting after shutdown"
    );
}
