//! Running a test inside a new network namespace with only loopback, so a
//! name lookup cannot leave the machine (no route to any DNS server) and
//! fails at once.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

/// Run `scenario` on a new thread inside a fresh loopback-only network
/// namespace; threads it starts inherit the namespace.
pub fn in_loopback_only_netns<T: Send>(scenario: impl FnOnce() -> T + Send) -> T {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test creates a network namespace and needs root"
    );
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            enter_new_netns();
            bring_up_loopback();
            scenario()
        });
        match worker.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// `unshare --net` holds a new namespace open until this thread joins it.
fn enter_new_netns() {
    let mut holder = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", "echo ready; exec cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run `unshare --net` (util-linux)");
    let mut line = String::new();
    let stdout = holder.stdout.take().expect("piped stdout");
    let _ = BufReader::new(stdout).read_line(&mut line);
    let joined = if line.trim() == "ready" {
        let ns = File::open(format!("/proc/{}/ns/net", holder.id())).expect("open the namespace");
        move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
            .map_err(|e| format!("setns: {e}"))
    } else {
        Err("`unshare --net` did not start".to_owned())
    };
    // Closing its stdin ends `cat`, and with it the helper.
    drop(holder.stdin.take());
    let _ = holder.wait();
    joined.expect("join the new network namespace");
}

fn bring_up_loopback() {
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run `ip` (iproute2)");
    assert!(status.success(), "`ip link set lo up` failed");
}
