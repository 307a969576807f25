//! An isolated containerd: its own config, root, state and socket inside a
//! test directory, nothing shared with a system containerd.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{wait_for, ChildGuard};
use super::tools::{require_root, require_tool, run, run_unchecked, Output};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The namespace the kubelet's CRI uses, so the test looks at what Kubernetes would see.
pub const K8S_NAMESPACE: &str = "k8s.io";

pub struct Containerd {
    process: ChildGuard,
    socket: PathBuf,
    dir: PathBuf,
}

/// One row of `ctr images ls`.
#[derive(Debug)]
pub struct ImageRow {
    pub reference: String,
    pub media_type: String,
    pub digest: String,
}

impl Containerd {
    /// Starts containerd with everything under `dir` and waits until it answers.
    pub fn start(dir: &Path) -> Containerd {
        require_root("running containerd");
        require_tool("containerd");
        require_tool("ctr");
        std::fs::create_dir_all(dir).expect("create containerd dir");
        let socket = dir.join("state").join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(&config, config_toml(dir, &socket)).expect("write containerd config");
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(&config);
        let process = ChildGuard::spawn(cmd, "containerd", &dir.join("containerd.log"));
        let mut containerd = Containerd {
            process,
            socket,
            dir: dir.to_owned(),
        };
        containerd.wait_ready();
        containerd
    }

    fn wait_ready(&mut self) {
        let ready = wait_for(READY_TIMEOUT, || {
            if let Some(status) = self.process.exited() {
                panic!(
                    "containerd exited during start-up ({status})\n{}",
                    self.process.log_tail(40)
                );
            }
            let answered =
                self.socket.exists() && run_unchecked(self.ctr().arg("version")).status.success();
            answered.then_some(())
        });
        if ready.is_none() {
            panic!(
                "containerd did not answer on {} within {READY_TIMEOUT:?}\n{}",
                self.socket.display(),
                self.process.log_tail(40)
            );
        }
    }

    /// A `ctr` command talking to this containerd in the k8s.io namespace.
    pub fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(K8S_NAMESPACE);
        cmd
    }

    /// `ctr images pull` through the mirror configuration in `hosts_dir`,
    /// unpacking with the native snapshotter. Returns the command output,
    /// whatever the exit status.
    pub fn pull(&self, hosts_dir: &Path, reference: &str) -> Output {
        run_unchecked(
            self.ctr()
                .args(["images", "pull", "--snapshotter", "native", "--hosts-dir"])
                .arg(hosts_dir)
                .arg(reference),
        )
    }

    /// The rows of `ctr images ls`.
    pub fn images(&self) -> Vec<ImageRow> {
        let out = run(
            self.ctr().args(["images", "ls"]),
            "listing containerd images",
        );
        out.stdout
            .lines()
            .skip(1)
            .filter_map(|line| {
                let mut columns = line.split_whitespace();
                Some(ImageRow {
                    reference: columns.next()?.to_owned(),
                    media_type: columns.next()?.to_owned(),
                    digest: columns.next()?.to_owned(),
                })
            })
            .collect()
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail(40)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.process.terminate(Duration::from_secs(15));
        unmount_leftovers(&self.dir);
    }
}

/// Unpacking bind-mounts snapshots temporarily; if containerd died before
/// unmounting, detach those mounts so the test directory can be removed.
fn unmount_leftovers(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    for mount_point in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
        if mount_point.starts_with(&prefix) {
            let _ = run_unchecked(Command::new("umount").arg("-l").arg(mount_point));
        }
    }
}

fn config_toml(dir: &Path, socket: &Path) -> String {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
# Only image pulling is under test; the CRI plugin would want a CNI setup.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
        root = path(&dir.join("root")),
        state = path(&dir.join("state")),
        socket = path(socket),
        opt = path(&dir.join("opt")),
    )
}

/// Writes `<hosts_dir>/docker.io/hosts.toml` with `wharf containerd hosts`,
/// so the pull tests drive the generated file: `mirror` is tried first for
/// pull and resolve. The generated `server` (the real upstream) is replaced
/// by `upstream`, a loopback stand-in, so a fallback is seen and counted.
pub fn write_docker_io_mirror(hosts_dir: &Path, upstream: &str, mirror: &str) {
    write_docker_io_mirror_with(hosts_dir, upstream, mirror, &[]);
}

/// [`write_docker_io_mirror`] with more `wharf containerd hosts` flags
/// (e.g. `--ca FILE`); returns the file as written.
pub fn write_docker_io_mirror_with(
    hosts_dir: &Path,
    upstream: &str,
    mirror: &str,
    extra: &[&str],
) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "containerd",
            "hosts",
            "--mirror",
            mirror,
            "docker.io",
            "--out",
        ])
        .arg(hosts_dir)
        .args(extra)
        .output()
        .expect("run wharf containerd hosts");
    assert!(
        out.status.success(),
        "wharf containerd hosts failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = hosts_dir.join("docker.io").join("hosts.toml");
    let generated = std::fs::read_to_string(&file).expect("generated hosts.toml");
    let server_lines = generated
        .lines()
        .filter(|l| l.starts_with("server = "))
        .count();
    assert_eq!(server_lines, 1, "one server line expected in:\n{generated}");
    assert!(
        generated.contains(&format!("[host.\"{mirror}\"]")),
        "mirror missing in:\n{generated}"
    );
    let rewritten: String = generated
        .lines()
        .map(|l| {
            if l.starts_with("server = ") {
                format!("server = \"{upstream}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&file, &rewritten).expect("write hosts.toml");
    rewritten
}
