//! An isolated containerd with its CRI plugin: its own config, root, state
//! and socket inside a test directory, nothing shared with a system
//! containerd. Three releases: Debian's containerd 1.6 (on PATH), and
//! containerd 2.0 and the newest 2.x, which `scripts/go-tools.sh` builds
//! from the modules pinned under `tools/` and `scripts/test.sh` hands over
//! in `WHARF_TEST_CONTAINERD2_0_BIN_DIR` and `WHARF_TEST_CONTAINERD2_BIN_DIR`.
//!
//! Whatever config a test gives, the harness adds the settings that keep
//! the daemon to itself (root, state, sockets, empty CNI directories, the
//! native snapshotter, no NRI socket), each in the schema that this release
//! reads for that file's `version`, and passes root, state and address on
//! the command line as well, which every release lets override the file.
//! Image pulls go through `ctr --hosts-dir` or through the CRI with crictl
//! (`WHARF_TEST_CRICTL`), the call the kubelet makes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, TableLike};

use wharf_testkit::image::host_arch;
use wharf_testkit::process::ChildGuard;
use wharf_testkit::tools::{
    require_env_tool, require_root, require_tool, run, run_unchecked, Output,
};
use wharf_testkit::wait_for;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The namespace the kubelet's CRI uses, so the test looks at what Kubernetes would see.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// How long crictl waits for one CRI call (a pull of a small image takes a second).
const CRI_TIMEOUT_SECS: u64 = 120;
/// The NRI plugin (1.7+) listens on a fixed path under /var/run; two test
/// daemons would fight over it, and pulls do not need it.
const NRI_PLUGIN: &str = "io.containerd.nri.v1.nri";

/// A containerd release the tests run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Debian's containerd 1.6 (the `containerd` package; `containerd` and `ctr` on PATH).
    Debian,
    /// containerd 2.0: its CRI plugin pulls images itself.
    V2_0,
    /// The newest 2.x pinned in `tools/go.mod`: CRI pulls go through the transfer service.
    Latest,
}

impl Release {
    /// Every release, oldest first.
    pub const ALL: [Release; 3] = [Release::Debian, Release::V2_0, Release::Latest];

    /// The directory holding this release's `containerd` and `ctr`.
    pub fn bin_dir(self) -> PathBuf {
        match self {
            Release::Debian => {
                let containerd = require_tool("containerd");
                require_tool("ctr");
                containerd
                    .parent()
                    .expect("binary has a directory")
                    .to_owned()
            }
            Release::V2_0 => require_env_tool("WHARF_TEST_CONTAINERD2_0_BIN_DIR", "containerd 2.0"),
            Release::Latest => require_env_tool("WHARF_TEST_CONTAINERD2_BIN_DIR", "containerd 2.x"),
        }
    }

    pub fn containerd_bin(self) -> PathBuf {
        existing(self.bin_dir().join("containerd"))
    }

    pub fn ctr_bin(self) -> PathBuf {
        existing(self.bin_dir().join("ctr"))
    }

    /// The release as `containerd --version` reports it, reduced to
    /// `X.Y.Z` (Debian's `1.6.20~ds1` → `1.6.20`, `v2.4.2` → `2.4.2`).
    pub fn version(self) -> String {
        let out = run(
            Command::new(self.containerd_bin()).arg("--version"),
            "asking containerd for its version",
        );
        // "containerd github.com/containerd/containerd/v2 v2.4.2 <revision>"
        let word = out
            .stdout
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("unexpected `containerd --version`: {}", out.stdout));
        let version = word.trim_start_matches('v');
        let end = version
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(version.len());
        version[..end].to_owned()
    }

    /// `containerd config default` of this release: the file an operator starts from.
    pub fn default_config(self) -> String {
        run(
            Command::new(self.containerd_bin()).args(["config", "default"]),
            "printing containerd's default config",
        )
        .stdout
    }

    /// Which CRI schema this release reads from a file with `version = file_version`.
    fn cri_schema(self, file_version: i64) -> CriSchema {
        match self {
            // 1.6 reads only io.containerd.grpc.v1.cri, whatever the version line says.
            Release::Debian => CriSchema::GrpcCri,
            // 2.x migrates files older than version 3 from the 1.x layout.
            _ if file_version < 3 => CriSchema::GrpcCri,
            Release::V2_0 => CriSchema::CriV1 {
                cni_bin_dirs: false,
            },
            Release::Latest => CriSchema::CriV1 { cni_bin_dirs: true },
        }
    }

    /// Version 4 files (containerd 2.3+) configure the sockets as server
    /// plugins; the top-level `[grpc]`/`[ttrpc]` tables are only migrated from older files.
    fn server_plugins(self, file_version: i64) -> bool {
        self == Release::Latest && file_version >= 4
    }
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Release::Debian => f.write_str("containerd 1.6 (Debian)"),
            Release::V2_0 => f.write_str("containerd 2.0"),
            Release::Latest => f.write_str("containerd 2.x (newest)"),
        }
    }
}

fn existing(path: PathBuf) -> PathBuf {
    assert!(
        path.is_file(),
        "{} is missing; run scripts/test.sh (scripts/go-tools.sh builds the containerd 2.x test binaries)",
        path.display()
    );
    path
}

#[derive(Clone, Copy)]
enum CriSchema {
    /// `[plugins."io.containerd.grpc.v1.cri"]` (1.x, and version 2 files on 2.x).
    GrpcCri,
    /// `io.containerd.cri.v1.images` / `.runtime` (2.x); 2.0 reads the CNI `bin_dir`, the newest 2.x `bin_dirs`.
    CriV1 { cni_bin_dirs: bool },
}

pub struct Containerd {
    process: ChildGuard,
    release: Release,
    socket: PathBuf,
    dir: PathBuf,
    config: PathBuf,
}

/// One row of `ctr images ls`.
#[derive(Debug)]
pub struct ImageRow {
    pub reference: String,
    pub media_type: String,
    pub digest: String,
}

/// An image as the CRI reports it (`crictl inspecti` / `crictl images`).
#[derive(Debug)]
pub struct CriImage {
    /// The image id: the digest of its config.
    pub id: String,
    pub repo_tags: Vec<String>,
    /// `name@digest` of the manifest (or index) the image was pulled as.
    pub repo_digests: Vec<String>,
}

impl Containerd {
    /// Debian's containerd 1.6 with its default config; for `ctr` pulls and imports.
    pub fn start(dir: &Path) -> Containerd {
        Containerd::start_release(dir, Release::Debian)
    }

    /// `release` with its own default config (`containerd config default`),
    /// made private to `dir`.
    pub fn start_release(dir: &Path, release: Release) -> Containerd {
        Containerd::start_with_config(dir, release, &release.default_config())
    }

    /// `release` as a node configured the way the README says: its default
    /// config patched by `wharf containerd config --patch` to read
    /// `hosts_dir` (written by `wharf containerd hosts`). Panics unless the
    /// CRI plugin answers.
    pub fn start_cri(dir: &Path, release: Release, hosts_dir: &Path) -> Containerd {
        std::fs::create_dir_all(dir).expect("create containerd dir");
        let config = dir.join("config.toml");
        std::fs::write(&config, release.default_config()).expect("write default config");
        patch_config_path(&config, release, hosts_dir);
        let text = std::fs::read_to_string(&config).expect("read patched config");
        let containerd = Containerd::start_with_config(dir, release, &text);
        containerd.assert_cri_answers();
        containerd
    }

    /// `release` with `config` (any text: a node's config.toml), made
    /// private to `dir`. Panics when containerd does not start; see
    /// [`Containerd::try_start_with_config`].
    pub fn start_with_config(dir: &Path, release: Release, config: &str) -> Containerd {
        Containerd::try_start_with_config(dir, release, config)
            .unwrap_or_else(|why| panic!("{release} did not start: {why}"))
    }

    /// Like [`Containerd::start_with_config`], returning containerd's own
    /// account (exit status and log) when it refuses the config. A config
    /// that is not TOML is written as given; containerd then refuses it.
    pub fn try_start_with_config(
        dir: &Path,
        release: Release,
        config: &str,
    ) -> Result<Containerd, String> {
        require_root("running containerd");
        std::fs::create_dir_all(dir).expect("create containerd dir");
        let socket = dir.join("state").join("containerd.sock");
        let config_file = dir.join("config.toml");
        let text = match config.parse::<DocumentMut>() {
            Ok(mut doc) => {
                make_private(&mut doc, release, dir, &socket);
                doc.to_string()
            }
            Err(_) => config.to_owned(),
        };
        std::fs::write(&config_file, text).expect("write containerd config");
        let mut cmd = Command::new(release.containerd_bin());
        cmd.arg("--config")
            .arg(&config_file)
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--state")
            .arg(dir.join("state"))
            .arg("--address")
            .arg(&socket);
        let process = ChildGuard::spawn(cmd, "containerd", &dir.join("containerd.log"));
        let mut containerd = Containerd {
            process,
            release,
            socket,
            dir: dir.to_owned(),
            config: config_file,
        };
        containerd.wait_ready()?;
        Ok(containerd)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let ready = wait_for(READY_TIMEOUT, || {
            if let Some(status) = self.process.exited() {
                return Some(Err(format!(
                    "containerd exited during start-up ({status})\n{}",
                    self.process.log_tail(40)
                )));
            }
            let answered =
                self.socket.exists() && run_unchecked(self.ctr().arg("version")).status.success();
            answered.then_some(Ok(()))
        });
        ready.unwrap_or_else(|| {
            Err(format!(
                "containerd did not answer on {} within {READY_TIMEOUT:?}\n{}",
                self.socket.display(),
                self.process.log_tail(40)
            ))
        })
    }

    pub fn release(&self) -> Release {
        self.release
    }

    /// The gRPC socket (what `--address` takes).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The config file containerd was started with, as written (private settings included).
    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// A `ctr` command talking to this containerd in the k8s.io namespace.
    pub fn ctr(&self) -> Command {
        let mut cmd = Command::new(self.release.ctr_bin());
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

    /// A `crictl` command talking to this containerd's CRI (runtime and
    /// image service on the one socket), with no system crictl.yaml.
    pub fn crictl(&self) -> Command {
        let crictl = require_env_tool("WHARF_TEST_CRICTL", "crictl");
        let config = self.dir.join("crictl.yaml");
        let endpoint = format!("unix://{}", self.socket.display());
        std::fs::write(
            &config,
            format!(
                "runtime-endpoint: {endpoint}\nimage-endpoint: {endpoint}\n\
                 timeout: {CRI_TIMEOUT_SECS}\ndebug: false\npull-image-on-create: false\n"
            ),
        )
        .expect("write crictl.yaml");
        let mut cmd = Command::new(crictl);
        cmd.arg("--config").arg(config);
        cmd
    }

    /// `crictl pull`: the CRI `PullImage` call the kubelet makes. Returns
    /// the output whatever the outcome; on failure stderr holds the CRI's error.
    pub fn cri_pull(&self, reference: &str) -> Output {
        run_unchecked(self.crictl().args(["pull", reference]))
    }

    /// `crictl inspecti`: the image the CRI knows as `reference`, if any.
    pub fn cri_image(&self, reference: &str) -> Option<CriImage> {
        let out = run_unchecked(self.crictl().args(["inspecti", "-o", "json", reference]));
        if !out.status.success() {
            return None;
        }
        let json: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("crictl inspecti printed no JSON ({e}):\n{}", out.stdout));
        Some(CriImage::from_json(&json["status"]))
    }

    /// `crictl images --digests`: every image the CRI lists.
    pub fn cri_images(&self) -> Vec<CriImage> {
        let out = run(
            self.crictl().args(["images", "--digests", "-o", "json"]),
            "listing images through the CRI",
        );
        let json: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("crictl images printed no JSON ({e}):\n{}", out.stdout));
        json["images"]
            .as_array()
            .map(|images| images.iter().map(CriImage::from_json).collect())
            .unwrap_or_default()
    }

    /// `crictl info`: the CRI `Status` call with `verbose`, which carries the loaded CRI config.
    pub fn cri_info(&self) -> Value {
        let out = run(self.crictl().arg("info"), "asking the CRI for its status");
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("crictl info printed no JSON ({e}):\n{}", out.stdout))
    }

    /// The hosts directory the running CRI plugin loaded, as the runtime
    /// itself reports it: 1.x in the CRI `Status` (`crictl info`,
    /// `config.registry.configPath`), 2.x among the CRI images plugin's
    /// exports (`RegistryConfigPath`, introspection API). `None` when this
    /// release does not report it (2.0 does neither) or reports it empty.
    pub fn loaded_config_path(&self) -> Option<String> {
        let reported = if self.release == Release::Debian {
            self.cri_info()["config"]["registry"]["configPath"]
                .as_str()
                .map(str::to_owned)
        } else {
            self.cri_images_plugin_export("RegistryConfigPath")
        };
        reported.filter(|path| !path.is_empty())
    }

    /// One export of the `io.containerd.cri.v1.images` plugin (`ctr plugins ls -d`).
    fn cri_images_plugin_export(&self, key: &str) -> Option<String> {
        let out = run(
            self.ctr().args(["plugins", "ls", "-d", "id==images"]),
            "listing containerd's plugins",
        );
        let section = out.stdout.split("Type:").find(|plugin| {
            plugin
                .lines()
                .next()
                .is_some_and(|t| t.trim() == "io.containerd.cri.v1")
        })?;
        section.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(key)).then(|| words.next().unwrap_or_default().to_owned())
        })
    }

    /// The CRI's `config_path` in `containerd config dump` of this
    /// release's binary on the file it was started with: how that release
    /// reads the file (versions migrated), not what the process loaded.
    pub fn dumped_config_path(&self) -> Option<String> {
        let out = run(
            Command::new(self.release.containerd_bin())
                .arg("--config")
                .arg(&self.config)
                .args(["config", "dump"]),
            "dumping containerd's config",
        );
        let dump: DocumentMut = out.stdout.parse().unwrap_or_else(|e| {
            panic!("containerd config dump is not TOML ({e}):\n{}", out.stdout)
        });
        let plugin = match self.release {
            Release::Debian => "io.containerd.grpc.v1.cri",
            _ => "io.containerd.cri.v1.images",
        };
        dump["plugins"][plugin]["registry"]["config_path"]
            .as_str()
            .filter(|path| !path.is_empty())
            .map(str::to_owned)
    }

    /// Panics with containerd's log unless the CRI plugin answers: a CRI
    /// config containerd cannot use leaves the daemon up without its CRI.
    pub fn assert_cri_answers(&self) {
        let out = run_unchecked(self.crictl().arg("version"));
        assert!(
            out.status.success(),
            "{} runs but its CRI plugin does not answer\n{}\n--- containerd log ---\n{}",
            self.release,
            out.describe(),
            self.log_tail()
        );
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

impl CriImage {
    fn from_json(image: &Value) -> CriImage {
        let strings = |key: &str| -> Vec<String> {
            image[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        CriImage {
            id: image["id"].as_str().unwrap_or_default().to_owned(),
            repo_tags: strings("repoTags"),
            repo_digests: strings("repoDigests"),
        }
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

/// `wharf containerd config --containerd-version <release> --config-path
/// <hosts_dir>`: the snippet the README says to merge, as printed.
pub fn config_snippet(release: Release, hosts_dir: &Path) -> String {
    run(
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["containerd", "config", "--containerd-version"])
            .arg(release.version())
            .arg("--config-path")
            .arg(hosts_dir),
        "printing the config snippet with wharf containerd config",
    )
    .stdout
}

/// `wharf containerd config --containerd-version <release> --config-path
/// <hosts_dir> --patch <config>`: the generator under test edits the file.
fn patch_config_path(config: &Path, release: Release, hosts_dir: &Path) {
    let out = run_unchecked(
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["containerd", "config", "--containerd-version"])
            .arg(release.version())
            .arg("--config-path")
            .arg(hosts_dir)
            .arg("--patch")
            .arg(config),
    );
    assert!(
        out.status.success(),
        "wharf containerd config --patch failed on {release}'s default config\n{}",
        out.describe()
    );
}

/// Adds to `doc` what keeps the daemon to `dir`: root, state and sockets,
/// an empty CNI setup, the native snapshotter (no overlay mounts needed,
/// for the CRI and, on 2.x, the transfer service) and no NRI. Registry settings are left exactly as given.
fn make_private(doc: &mut DocumentMut, release: Release, dir: &Path, socket: &Path) {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let file_version = doc.get("version").and_then(Item::as_integer).unwrap_or(1);
    let cni_conf = dir.join("cni").join("conf");
    let cni_bin = dir.join("cni").join("bin");
    for empty in [&cni_conf, &cni_bin, &dir.join("opt")] {
        std::fs::create_dir_all(empty).expect("create containerd dir");
    }
    let root = doc.as_table_mut();
    root.insert("root", toml_edit::value(path(&dir.join("root"))));
    root.insert("state", toml_edit::value(path(&dir.join("state"))));
    disable_plugin(root, NRI_PLUGIN);

    let ttrpc = format!("{}.ttrpc", socket.display());
    if release.server_plugins(file_version) {
        set(
            root,
            &["plugins", "io.containerd.server.v1.grpc"],
            "address",
            path(socket),
        );
        set(
            root,
            &["plugins", "io.containerd.server.v1.ttrpc"],
            "address",
            ttrpc,
        );
        set(
            root,
            &["plugins", "io.containerd.server.v1.debug"],
            "address",
            "",
        );
        set(
            root,
            &["plugins", "io.containerd.server.v1.metrics"],
            "address",
            "",
        );
    } else {
        set(root, &["grpc"], "address", path(socket));
        set(root, &["ttrpc"], "address", ttrpc);
        set(root, &["debug"], "address", "");
        set(root, &["metrics"], "address", "");
    }
    set(
        root,
        &["plugins", "io.containerd.internal.v1.opt"],
        "path",
        path(&dir.join("opt")),
    );

    if release != Release::Debian {
        unpack_with_native_snapshotter(root);
    }
    match release.cri_schema(file_version) {
        CriSchema::GrpcCri => {
            let cri = ["plugins", "io.containerd.grpc.v1.cri"];
            set(
                root,
                &[cri[0], cri[1], "containerd"],
                "snapshotter",
                "native",
            );
            set(root, &[cri[0], cri[1], "cni"], "conf_dir", path(&cni_conf));
            set(root, &[cri[0], cri[1], "cni"], "bin_dir", path(&cni_bin));
            if release != Release::Debian {
                // 2.x's migration of a version-2 file moves the table's
                // `snapshotter` to the runtime, not to the image service,
                // which keeps overlayfs and finds no unpack platform for it
                // (`containerd config dump` of 2.0.14 and 2.4.2). The image
                // service's own table is read next to a version-2 one.
                set(
                    root,
                    &["plugins", "io.containerd.cri.v1.images"],
                    "snapshotter",
                    "native",
                );
            }
        }
        CriSchema::CriV1 { cni_bin_dirs } => {
            set(
                root,
                &["plugins", "io.containerd.cri.v1.images"],
                "snapshotter",
                "native",
            );
            let cni = ["plugins", "io.containerd.cri.v1.runtime", "cni"];
            set(root, &cni, "conf_dir", path(&cni_conf));
            if cni_bin_dirs {
                let mut dirs = Array::new();
                dirs.push(path(&cni_bin));
                set(root, &cni, "bin_dirs", dirs);
            } else {
                set(root, &cni, "bin_dir", path(&cni_bin));
            }
        }
    }
}

/// Sets `key` in the table at `path`.
fn set(root: &mut Table, path: &[&str], key: &str, value: impl Into<toml_edit::Value>) {
    table_at(root, path).insert(key, Item::Value(value.into()));
}

/// The table at `path`, created on the way when missing (intermediate
/// tables implicit, so no empty headers appear).
fn table_at<'a>(root: &'a mut Table, path: &[&str]) -> &'a mut dyn TableLike {
    let mut table: &mut dyn TableLike = root;
    for (depth, name) in path.iter().enumerate() {
        let item = table.entry(name).or_insert_with(|| {
            let mut new = Table::new();
            new.set_implicit(depth + 1 < path.len());
            Item::Table(new)
        });
        table = item
            .as_table_like_mut()
            .unwrap_or_else(|| panic!("config key {name} is not a table"));
    }
    table
}

/// 2.x unpacks pulled layers where the transfer service's `unpack_config`
/// says, whatever the CRI's snapshotter: its default names only
/// overlayfs (and erofs), so a node on another snapshotter fails every
/// pull with "no unpack platforms defined" unless the list names it.
fn unpack_with_native_snapshotter(root: &mut Table) {
    let mut native = Table::new();
    native.insert(
        "platform",
        toml_edit::value(format!("linux/{}", host_arch())),
    );
    native.insert("snapshotter", toml_edit::value("native"));
    native.insert("differ", toml_edit::value("walking"));
    let mut list = ArrayOfTables::new();
    list.push(native);
    table_at(root, &["plugins", "io.containerd.transfer.v1.local"])
        .insert("unpack_config", Item::ArrayOfTables(list));
}

/// Appends `plugin` to the top-level `disabled_plugins` list.
fn disable_plugin(root: &mut Table, plugin: &str) {
    let list = root
        .entry("disabled_plugins")
        .or_insert_with(|| toml_edit::value(Array::new()));
    let array = list
        .as_array_mut()
        .expect("disabled_plugins is a list of plugin ids");
    if !array.iter().any(|p| p.as_str() == Some(plugin)) {
        array.push(plugin);
    }
}

/// A node's files written by hand, as an operator might: a version-2
/// config.toml under `dir` whose config_path is `dir/certs.d`, and a
/// docker.io hosts.toml sending pulls to `mirror`, with `host_extra` (TOML
/// lines such as `  override_path = true\n`) added to the mirror's table.
/// Returns config.toml and the hosts.toml.
pub fn write_node_files(dir: &Path, mirror: &str, host_extra: &str) -> (PathBuf, PathBuf) {
    let hosts = dir.join("certs.d");
    let file = hosts.join("docker.io/hosts.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        format!(
            "server = \"https://registry-1.docker.io\"\n\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n{host_extra}"
        ),
    )
    .unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"{}\"\n",
            hosts.display()
        ),
    )
    .unwrap();
    (config, file)
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
