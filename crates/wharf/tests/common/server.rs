//! A `wharf serve` process on a free loopback port with its own root directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wharf_testkit::process::{log_tail, ChildGuard};
use wharf_testkit::{free_port, wait_for};

/// How long a freshly started server may take to answer `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A lost race for a free port shows up as an early exit; retry that many times.
const START_ATTEMPTS: usize = 3;

pub struct Wharf {
    process: ChildGuard,
    port: u16,
    root: PathBuf,
    work_dir: PathBuf,
    starts: usize,
    /// Extra `wharf serve` arguments (`--config FILE`).
    extra: Vec<String>,
}

impl Wharf {
    /// Starts a server storing into `<work_dir>/root`, logging to `<work_dir>/wharf-<n>.log`.
    pub fn start(work_dir: &Path) -> Wharf {
        Wharf::start_with(work_dir, &[])
    }

    /// Like [`Wharf::start`], with extra `wharf serve` arguments.
    pub fn start_with(work_dir: &Path, extra: &[String]) -> Wharf {
        std::fs::create_dir_all(work_dir).expect("create wharf work dir");
        let root = work_dir.join("root");
        let (process, port) = spawn_ready(&root, work_dir, 1, extra);
        Wharf::started(process, port, root, work_dir, extra)
    }

    /// Like [`Wharf::start_with`], on `port`: a registry whose name, and so
    /// its port, is chosen before it starts (images are named after it).
    pub fn start_on(work_dir: &Path, port: u16, extra: &[String]) -> Wharf {
        std::fs::create_dir_all(work_dir).expect("create wharf work dir");
        let root = work_dir.join("root");
        let log = work_dir.join("wharf-1.log");
        let mut process = spawn(&root, port, &log, extra);
        if let Err(why) = wait_ready(&mut process, port) {
            panic!(
                "{why}\n--- log {} ---\n{}",
                log.display(),
                log_tail(&log, 40)
            );
        }
        Wharf::started(process, port, root, work_dir, extra)
    }

    /// The handle of a first start that is ready on `port`.
    fn started(
        process: ChildGuard,
        port: u16,
        root: PathBuf,
        work_dir: &Path,
        extra: &[String],
    ) -> Wharf {
        Wharf {
            process,
            port,
            root,
            work_dir: work_dir.to_owned(),
            starts: 1,
            extra: extra.to_vec(),
        }
    }

    /// Like [`Wharf::start`], with `--config FILE` (kept across restarts).
    pub fn start_with_config(work_dir: &Path, config: Option<&Path>) -> Wharf {
        let extra: Vec<String> = config
            .map(|c| vec!["--config".to_string(), c.display().to_string()])
            .unwrap_or_default();
        Wharf::start_with(work_dir, &extra)
    }

    /// Like [`Wharf::start`], with `--config <work_dir>/wharf.toml` holding `config`.
    pub fn start_with_config_text(work_dir: &Path, config: &str) -> Wharf {
        std::fs::create_dir_all(work_dir).expect("create wharf work dir");
        let path = work_dir.join("wharf.toml");
        std::fs::write(&path, config).expect("write wharf.toml");
        Wharf::start_with_config(work_dir, Some(&path))
    }

    /// `127.0.0.1:PORT`, the registry host part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Reaps the server after something else sent it SIGKILL.
    pub fn reap_killed(&mut self) {
        let status = self.process.reap();
        assert!(
            status.is_some_and(|s| !s.success()),
            "wharf was expected to die from SIGKILL, exit status: {status:?}"
        );
    }

    /// Starts the server again on the same root (on a new port, so a
    /// lingering socket of the previous instance cannot interfere).
    pub fn restart(&mut self) {
        self.process.kill_hard();
        self.starts += 1;
        let (process, port) = spawn_ready(&self.root, &self.work_dir, self.starts, &self.extra);
        self.process = process;
        self.port = port;
    }

    /// Graceful shutdown with SIGTERM; panics if it does not exit cleanly in time.
    pub fn shutdown(&mut self) {
        let status = self.process.terminate(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "wharf did not shut down cleanly on SIGTERM (status {status:?})\n{}",
            self.process.log_tail(40)
        );
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail(40)
    }
}

fn spawn_ready(root: &Path, work_dir: &Path, start: usize, extra: &[String]) -> (ChildGuard, u16) {
    let log = work_dir.join(format!("wharf-{start}.log"));
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let mut process = spawn(root, port, &log, extra);
        match wait_ready(&mut process, port) {
            Ok(()) => return (process, port),
            Err(why) => failures.push(why),
        }
    }
    panic!(
        "wharf serve did not become ready:\n{}\n--- log {} ---\n{}",
        failures.join("\n"),
        log.display(),
        log_tail(&log, 40)
    );
}

fn spawn(root: &Path, port: u16, log: &Path, extra: &[String]) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--root")
        .arg(root)
        .arg("--log-format")
        .arg("text")
        .args(extra);
    ChildGuard::spawn(cmd, "wharf serve", log)
}

/// Waits until `GET /v2/` answers 200 (or 401 when authentication is
/// configured), or fails early when the process exits.
fn wait_ready(process: &mut ChildGuard, port: u16) -> Result<(), String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client");
    let url = format!("http://127.0.0.1:{port}/v2/");
    let outcome = wait_for(READY_TIMEOUT, || {
        if let Some(status) = process.exited() {
            return Some(Err(format!("wharf on port {port} exited early: {status}")));
        }
        match client.get(&url).send() {
            Ok(resp) if resp.status() == 200 || resp.status() == 401 => Some(Ok(())),
            _ => None,
        }
    });
    outcome.unwrap_or_else(|| {
        process.kill_hard();
        Err(format!(
            "GET {url} did not answer 200 within {READY_TIMEOUT:?}"
        ))
    })
}
