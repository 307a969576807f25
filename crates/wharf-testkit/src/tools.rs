//! Running the external clients (skopeo, podman, ctr, ip, openssl) with bounded run
//! times and failure messages that show what the tool printed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::process::send_signal;
use crate::wait::wait_for;

/// Upper bound for one client command; a hung client fails the test instead of the CI job.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Panics unless `tool` is on PATH. Missing tools are an error, never a skip:
/// `scripts/test.sh` installs all of them.
pub fn require_tool(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "required tool `{tool}` is not installed (not found in PATH); \
                 run scripts/test.sh, which installs the end-to-end test dependencies"
            )
        })
}

/// The path in the environment variable `var` (a test tool Debian lacks,
/// which `scripts/go-tools.sh` builds); panics unless it is set and exists.
/// Missing tools are an error, never a skip: `scripts/test.sh` builds and
/// sets all of them.
pub fn require_env_tool(var: &str, what: &str) -> PathBuf {
    let hint = "run scripts/test.sh, which builds it (scripts/go-tools.sh, from the modules \
                pinned under tools/) and sets the variable; or run \
                `export $(scripts/go-tools.sh)` before cargo test";
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{what} is needed: {var} is not set; {hint}"));
    assert!(
        path.exists(),
        "{what} is needed: {var} names {}, which does not exist; {hint}",
        path.display()
    );
    path
}

/// Panics unless the tests run as root (containerd, podman storage and
/// network namespaces need it).
pub fn require_root(why: &str) {
    if !rustix::process::geteuid().is_root() {
        panic!("{why} needs root; run scripts/test.sh as root (or with sudo)");
    }
}

/// What a finished command printed.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn describe(&self) -> String {
        format!(
            "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion (at most [`COMMAND_TIMEOUT`]) and returns its output,
/// whatever its exit status.
pub fn run_unchecked(cmd: &mut Command) -> Output {
    run_with_stdin(cmd, None)
}

/// Like [`run_unchecked`], with `input` written to the command's stdin.
pub fn run_with_stdin(cmd: &mut Command, input: Option<&[u8]>) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        stdin.write_all(input).expect("write the command's stdin");
    }
    // Drain both pipes on their own threads so a chatty tool cannot block on a full pipe.
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_for(COMMAND_TIMEOUT, || child.try_wait().ok().flatten());
    let Some(status) = status else {
        send_signal(child.id(), rustix::process::Signal::KILL);
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {COMMAND_TIMEOUT:?}");
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs `cmd` and panics with its output unless it succeeds; `what` says
/// what the command was meant to achieve.
pub fn run(cmd: &mut Command, what: &str) -> Output {
    let output = run_unchecked(cmd);
    if !output.status.success() {
        panic!("{what} failed: {cmd:?}\n{}", output.describe());
    }
    output
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A `skopeo` command that talks plain HTTP to the test registry and needs
/// no system signature policy.
pub fn skopeo() -> Command {
    require_tool("skopeo");
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy");
    cmd
}

/// A podman command whose storage, run state and temp files all live under
/// `dir` (vfs storage: no kernel overlay support needed).
pub fn podman(dir: &Path) -> Command {
    require_tool("podman");
    let mut cmd = Command::new("podman");
    cmd.arg("--root")
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .arg("--tmpdir")
        .arg(dir.join("tmp"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "none",
        ])
        // Image layers are staged in TMPDIR; keep them in the test directory too.
        .env("TMPDIR", dir);
    cmd
}
