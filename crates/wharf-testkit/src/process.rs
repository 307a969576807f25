//! Child processes that are always reaped: a [`ChildGuard`] kills its process
//! by PID when dropped, so a failing assertion never leaks a server.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};

use crate::wait::wait_for;

/// Sends `signal` to the process `pid`; a process that is already gone is not an error.
pub fn send_signal(pid: u32, signal: Signal) {
    let raw = i32::try_from(pid).expect("pid fits in i32");
    let pid = Pid::from_raw(raw).expect("pid is positive");
    match kill_process(pid, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(err) => panic!("sending {signal:?} to pid {pid:?} failed: {err}"),
    }
}

/// A running child process whose output goes to a log file.
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, name: &str, log: &Path) -> Self {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open log {}: {e}", log.display()));
        let err = out.try_clone().expect("duplicate log file handle");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ChildGuard {
            child: Some(child),
            name: name.to_owned(),
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("process still owned").id()
    }

    /// Returns the exit status if the process has ended (reaping it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("waitpid failed")
    }

    /// SIGKILL and reap.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), Signal::KILL);
            let _ = child.wait();
        }
    }

    /// Reaps a process that something else already killed.
    pub fn reap(&mut self) -> Option<ExitStatus> {
        self.child.take().and_then(|mut child| child.wait().ok())
    }

    /// SIGTERM, then SIGKILL if it has not ended within `grace`.
    /// Returns the exit status when the process ended on its own.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        send_signal(child.id(), Signal::TERM);
        let status = wait_for(grace, || child.try_wait().ok().flatten());
        if status.is_none() {
            send_signal(child.id(), Signal::KILL);
            let _ = child.wait();
        }
        status
    }

    /// The last `max_lines` lines of the process log, for failure messages.
    pub fn log_tail(&self, max_lines: usize) -> String {
        log_tail(&self.log, max_lines)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// The last `max_lines` lines of a log file (empty when missing).
pub fn log_tail(log: &Path, max_lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}
