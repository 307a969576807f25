//! Running a scenario inside a fresh network namespace that has nothing but
//! loopback: whatever the scenario starts (registry, containerd, clients) can
//! reach only 127.0.0.0/8 of that namespace, so the absence of internet
//! access is part of the test, not an assumption.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use crate::process::send_signal;
use crate::tools::{require_root, require_tool, run};

/// Runs `scenario` on a new thread that has joined a new network namespace
/// with only `lo` (up). Processes spawned from that thread, and threads it
/// starts, inherit the namespace; the calling thread stays where it was.
pub fn in_private_netns<T: Send>(scenario: impl FnOnce() -> T + Send) -> T {
    require_root("creating a network namespace");
    require_tool("unshare");
    require_tool("ip");
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

/// Creates the namespace with `unshare --net` (a helper that waits on its
/// stdin) and moves the current thread into it with setns(2).
fn enter_new_netns() {
    let mut cmd = Command::new("unshare");
    // `echo` runs only after unshare(2) succeeded, so reading the line means
    // the namespace exists; `cat` then keeps it alive until we have joined it.
    cmd.args(["--net", "--", "sh", "-c", "echo ready; exec cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut holder = cmd.spawn().expect("start `unshare --net`");
    let mut line = String::new();
    let stdout = holder.stdout.take().expect("piped stdout");
    let _ = BufReader::new(stdout).read_line(&mut line);
    let joined = if line.trim() == "ready" {
        let ns = File::open(format!("/proc/{}/ns/net", holder.id()))
            .expect("open the new network namespace");
        move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
            .map_err(|e| format!("setns into the new network namespace: {e}"))
    } else {
        Err("`unshare --net` did not create a network namespace".to_owned())
    };
    send_signal(holder.id(), rustix::process::Signal::KILL);
    let _ = holder.wait();
    if let Err(why) = joined {
        panic!("{why}");
    }
}

/// Brings `lo` up and checks that it is the only interface.
fn bring_up_loopback() {
    run(
        Command::new("ip").args(["link", "set", "lo", "up"]),
        "bringing up loopback in the test network namespace",
    );
    let links = run(
        Command::new("ip").args(["-o", "link", "show"]),
        "listing interfaces",
    );
    let names: Vec<&str> = links
        .stdout
        .lines()
        .filter_map(|line| line.split(':').nth(1).map(str::trim))
        .collect();
    assert_eq!(
        names,
        ["lo"],
        "the test network namespace must contain only loopback"
    );
}
