//! Test support: a real S3 server (Garage) on loopback ports in a temporary
//! directory, bootstrapped with one bucket and one key, killed by PID when
//! dropped. Garage runs as a separate process only.
//!
//! The binary is `$WHARF_TEST_GARAGE`, else `garage` on `PATH` (or in
//! `~/.cargo/bin`). `scripts/test.sh` installs it when it is missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config::{Credentials, S3Config};

/// The version `scripts/test.sh` installs.
pub const GARAGE_VERSION: &str = "2.5.0";
pub const REGION: &str = "garage";
pub const BUCKET: &str = "wharf";

const START_DEADLINE: Duration = Duration::from_secs(60);

pub struct Garage {
    binary: PathBuf,
    config: PathBuf,
    s3_addr: SocketAddr,
    child: Option<Child>,
    /// For [`Garage::shared`]: the process that kills Garage after the tests.
    watchdog: Option<Child>,
    pub access_key_id: String,
    pub secret_access_key: String,
    dir: tempfile::TempDir,
}

/// Where the `garage` binary is, or a message saying how to get it.
pub fn find_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("WHARF_TEST_GARAGE") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "WHARF_TEST_GARAGE={} is not a file",
                path.display()
            ))
        };
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("garage"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "the S3 tests need Garage, an S3-compatible server, and `garage` is not on PATH. \
                 Install it with `cargo install garage --locked --version {GARAGE_VERSION}` \
                 (scripts/test.sh does this), or set WHARF_TEST_GARAGE to the binary"
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn run(binary: &Path, config: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(binary)
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running garage {args:?}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "garage {args:?} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Retry `f` until it succeeds or the deadline passes.
fn poll<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + START_DEADLINE;
    let mut wait = Duration::from_millis(20);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{what}: gave up: {e}"),
            Err(_) => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// The value after `label` on the line that has it (`Key ID: GK…`).
fn field(text: &str, label: &str) -> Option<String> {
    text.lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split_whitespace().last())
        .map(str::to_string)
}

impl Garage {
    /// Start Garage and create [`BUCKET`] with a key that owns it. Panics
    /// with instructions when Garage is not installed.
    pub fn start() -> Garage {
        let binary = find_binary().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().expect("a temporary directory for Garage");
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let config = dir.path().join("garage.toml");
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + 11) as u8))
            .collect();
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{meta}\"\ndata_dir = \"{data}\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{secret}\"\n\n\
                 [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                meta = dir.path().join("meta").display(),
                data = dir.path().join("data").display(),
            ),
        )
        .expect("write the Garage configuration");
        let mut garage = Garage {
            binary,
            config,
            s3_addr: SocketAddr::from(([127, 0, 0, 1], s3)),
            child: None,
            watchdog: None,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            dir,
        };
        garage.spawn();
        garage.bootstrap();
        garage
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("garage.log")).expect("Garage log");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("Garage log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        self.child = Some(child);
    }

    fn garage(&self, args: &[&str]) -> Result<String, String> {
        run(&self.binary, &self.config, args)
    }

    fn bootstrap(&mut self) {
        let node = poll("waiting for Garage to answer", || {
            self.garage(&["node", "id", "-q"])
        });
        let node = node
            .trim()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        // `node id` reads the key from disk: the RPC port may not listen yet.
        poll("assigning the Garage layout", || {
            self.garage(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])
        });
        poll("applying the Garage layout", || {
            self.garage(&["layout", "apply", "--version", "1"])
        });
        let key = poll("creating a Garage key", || {
            self.garage(&["key", "create", "wharf-test"])
        });
        self.access_key_id = field(&key, "Key ID").expect("garage key create prints the key id");
        self.secret_access_key =
            field(&key, "Secret key").expect("garage key create prints the secret");
        self.create_bucket(BUCKET);
        self.wait_for_s3();
    }

    /// Create another bucket the test key may use.
    pub fn create_bucket(&self, name: &str) {
        poll("creating a Garage bucket", || {
            self.garage(&["bucket", "create", name])
        });
        self.garage(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            name,
            "--key",
            &self.access_key_id,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Until the S3 port answers HTTP.
    fn wait_for_s3(&self) {
        let addr = self.s3_addr;
        poll("waiting for Garage's S3 API", || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok();
            s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head).map_err(|e| e.to_string())?;
            if head.starts_with(b"HTTP/") {
                Ok(())
            } else {
                Err("not HTTP".into())
            }
        });
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.s3_addr)
    }

    pub fn credentials(&self) -> Credentials {
        Credentials {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: None,
        }
    }

    /// Settings for [`BUCKET`] under `prefix`: tests share one Garage and
    /// keep apart by prefix.
    pub fn s3_config(&self, prefix: &str) -> S3Config {
        let mut config = S3Config::new(BUCKET);
        config.endpoint = Some(self.endpoint());
        config.region = REGION.into();
        config.prefix = prefix.into();
        config.credentials = Some(self.credentials());
        config
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL the server (a crash), keeping its data for [`Garage::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One Garage for every test of this test binary, for suites with many
    /// short tests (tests keep apart by key prefix). Statics are never
    /// dropped, so a watchdog started with it kills this Garage by PID once
    /// the test process has exited.
    pub fn shared() -> &'static Garage {
        static SHARED: OnceLock<Garage> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut garage = Garage::start();
            let pid = garage.pid().expect("Garage runs");
            let watchdog = format!(
                "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 {pid}",
                std::process::id()
            );
            let watchdog = Command::new("sh")
                .arg("-c")
                .arg(watchdog)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the Garage watchdog");
            garage.watchdog = Some(watchdog);
            garage
        })
    }

    /// Start the server again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        poll("waiting for Garage to come back", || {
            self.garage(&["bucket", "list"])
        });
        self.wait_for_s3();
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_fields_are_parsed() {
        let text = "==== ACCESS KEY INFORMATION ====\nKey ID:              GK31c2f218a2e44f485b94239e\nKey name:            wharf-test\nSecret key:          b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835\n";
        assert_eq!(
            field(text, "Key ID").as_deref(),
            Some("GK31c2f218a2e44f485b94239e")
        );
        assert!(field(text, "Secret key").unwrap().starts_with("b892"));
        assert_eq!(field(text, "Nope"), None);
    }
}
