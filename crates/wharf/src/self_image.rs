//! `wharf save --self REF`: an OCI image of the running wharf binary, built
//! here without a Dockerfile (one uncompressed layer: the binary, plus the
//! dynamic loader and libraries `ldd` names when it is not static, plus the
//! CA bundle given with `--ca-file`), and the files that start it on a node
//! with no registry yet: a static Pod manifest and a systemd unit, both
//! naming the image by its final name, so that day 2 (an upgrade pulled
//! from the registry itself) is an ordinary pull of a new tag.
//!
//! `wharf serve --publish-self REF` builds the same image again at start-up
//! and stores it under REF. Inside its own image it finds what to put in
//! the layer in `etc/wharf/self-image.files` (the layer's own list), so the
//! rebuild is byte for byte the side-loaded image: one digest on every node.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use wharf_bundle::LocalImage;
use wharf_oci::{media_type, Descriptor, Digest, Reference, Target};

const BINARY_IN_IMAGE: &str = "usr/local/bin/wharf";
/// Where the image keeps the CA bundle given with `--ca-file`: the first
/// place the system roots are looked for on Debian-like systems.
const CA_BUNDLE_IN_IMAGE: &str = "etc/ssl/certs/ca-certificates.crt";
/// The layer's own list of files, read back by `serve --publish-self`.
const FILE_LIST_IN_IMAGE: &str = "etc/wharf/self-image.files";
const LISTEN: &str = "0.0.0.0:5000";
const ROOT: &str = "/var/lib/wharf";
pub const POD_FILE: &str = "wharf-pod.yaml";
pub const UNIT_FILE: &str = "wharf.service";

/// What to do about a refused self name.
pub const NAME_HINT: &str = "name the image as nodes will pull it, with its registry and an immutable version tag: registry.home.arpa:5000/wharf/wharf:<version>";

/// The self image's name: `given` (fully qualified; no tag means this
/// version's, `latest` and digests are refused), or `localhost/wharf:<version>`
/// when none is given.
pub fn image_name(given: Option<&str>) -> Result<Reference, String> {
    let version = env!("CARGO_PKG_VERSION");
    let given = given.map(str::trim).filter(|g| !g.is_empty());
    let Some(given) = given else {
        return Ok(format!("localhost/wharf:{version}")
            .parse()
            .expect("a valid name"));
    };
    let first = given.split('/').next().unwrap_or_default();
    let qualified =
        given.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !qualified {
        return Err(format!(
            "{given:?} names no registry; the kubelet would pull it from docker.io: write it in full, e.g. registry.home.arpa:5000/{}",
            given.trim_start_matches('/')
        ));
    }
    let reference: Reference = given
        .parse()
        .map_err(|e| format!("{given:?} is not an image reference: {e}"))?;
    if reference.digest().is_some() {
        return Err(format!(
            "{given:?} pins a digest, which only the build can know; give a tag ({}/{}:{version})",
            reference.host(),
            reference.repository()
        ));
    }
    // A reference without a tag reads as `latest`; only a written tag counts.
    let tag_written = given
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'));
    match reference.tag().map(|t| t.as_str()).filter(|_| tag_written) {
        Some("latest") => Err(format!(
            "{given:?} uses `latest`, a name that moves: a node that has one `latest` never pulls the next; use {}/{}:{version}",
            reference.host(),
            reference.repository()
        )),
        Some(_) => Ok(reference),
        None => Ok(Reference::new(
            reference.host(),
            reference.repository().clone(),
            Target::Tag(version.parse().expect("the version is a valid tag")),
        )),
    }
}

/// One file of the layer: its path inside the image, where to read it.
struct LayerFile {
    inside: String,
    source: PathBuf,
}

/// Build the image named `name` in `dir` (the layer is a temp file there,
/// removed when the returned path is dropped), trusting `ca_files` when
/// given.
pub fn build(
    dir: &Path,
    name: Reference,
    ca_files: &[PathBuf],
) -> anyhow::Result<(LocalImage, tempfile::TempPath)> {
    let mut ca_bundle = None;
    let files = match own_file_list()? {
        Some(files) => files,
        None => {
            let mut files = host_files()?;
            if !ca_files.is_empty() {
                let bundle = concatenated(dir, ca_files)?;
                files.push(LayerFile {
                    inside: CA_BUNDLE_IN_IMAGE.to_string(),
                    source: bundle.to_path_buf(),
                });
                ca_bundle = Some(bundle);
            }
            files
        }
    };
    let layer = tempfile::Builder::new()
        .prefix(".wharf-self-layer.")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    write_layer(layer.as_file(), &files)?;
    drop(ca_bundle);
    let (digest, size) = hash_file(layer.path())?;
    let config = Bytes::from(serde_json::to_vec(&config(&digest))?);
    let layer_descriptor = Descriptor::new(media_type::OCI_LAYER_TAR, digest, size);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": Descriptor::new(media_type::OCI_CONFIG, Digest::sha256_of(&config), config.len() as u64),
        "layers": [layer_descriptor],
    });
    let image = LocalImage {
        name,
        manifest: Bytes::from(serde_json::to_vec(&manifest)?),
        config,
        layers: vec![(layer_descriptor, layer.path().to_path_buf())],
    };
    Ok((image, layer.into_temp_path()))
}

/// The binary and the libraries it loads, on the host.
fn host_files() -> anyhow::Result<Vec<LayerFile>> {
    let exe = std::env::current_exe().context("cannot find the running binary")?;
    let libraries = shared_libraries(&exe)?;
    Ok(std::iter::once(LayerFile {
        inside: BINARY_IN_IMAGE.to_string(),
        source: exe,
    })
    .chain(libraries.into_iter().map(|l| LayerFile {
        inside: l.to_string_lossy().trim_start_matches('/').to_string(),
        source: l,
    }))
    .collect())
}

/// Inside the self image: the files its layer holds, from its own list.
fn own_file_list() -> anyhow::Result<Option<Vec<LayerFile>>> {
    let list = Path::new("/").join(FILE_LIST_IN_IMAGE);
    let exe = std::env::current_exe().context("cannot find the running binary")?;
    if !list.is_file() || exe != Path::new("/").join(BINARY_IN_IMAGE) {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&list)
        .with_context(|| format!("cannot read {}", list.display()))?;
    Ok(Some(
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|inside| LayerFile {
                inside: inside.to_string(),
                source: Path::new("/").join(inside),
            })
            .collect(),
    ))
}

/// The CA files as one PEM bundle (a temp file in `dir`).
fn concatenated(dir: &Path, ca_files: &[PathBuf]) -> anyhow::Result<tempfile::TempPath> {
    let mut bundle = tempfile::Builder::new()
        .prefix(".wharf-self-ca.")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    for file in ca_files {
        let mut pem = std::fs::read(file)
            .with_context(|| format!("cannot read the CA file {}", file.display()))?;
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        bundle.write_all(&pem)?;
    }
    bundle.flush()?;
    Ok(bundle.into_temp_path())
}

/// What `ldd` says the binary loads; nothing for a static binary.
fn shared_libraries(exe: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = match Command::new("ldd").arg(exe).output() {
        Ok(o) => o,
        // No ldd: assume a static binary (musl builds, distroless hosts).
        Err(_) => return Ok(Vec::new()),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let mut found = BTreeSet::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            found.insert(PathBuf::from(p));
        }
    }
    Ok(found.into_iter().collect())
}

fn write_layer(file: &File, files: &[LayerFile]) -> anyhow::Result<()> {
    let mut tar = tar::Builder::new(BufWriter::new(file));
    tar.mode(tar::HeaderMode::Deterministic);
    let mut dirs = BTreeSet::from(["tmp".to_string(), "var/lib/wharf".to_string()]);
    let list: String = files.iter().map(|f| format!("{}\n", f.inside)).collect();
    let inside: Vec<&str> = files
        .iter()
        .map(|f| f.inside.as_str())
        .chain([FILE_LIST_IN_IMAGE])
        .collect();
    for path in &inside {
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_string_lossy().to_string());
            parent = p.parent();
        }
    }
    for dir in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
        h.set_size(0);
        tar.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
    }
    for file in files {
        // The content behind a symlink, under the name the loader asks for.
        let mut f = File::open(&file.source)
            .with_context(|| format!("cannot read {}", file.source.display()))?;
        let size = f.metadata()?.len();
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(if file.inside == CA_BUNDLE_IN_IMAGE {
            0o644
        } else {
            0o755
        });
        tar.append_data(&mut h, &file.inside, &mut f)?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(list.len() as u64);
    h.set_mode(0o644);
    tar.append_data(&mut h, FILE_LIST_IN_IMAGE, list.as_bytes())?;
    tar.into_inner()?.flush()?;
    Ok(())
}

fn hash_file(path: &Path) -> anyhow::Result<(Digest, u64)> {
    let mut f = File::open(path)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        size += n as u64;
    }
    let digest = format!("sha256:{}", hex::encode(sha.finalize())).parse()?;
    Ok((digest, size))
}

fn config(layer: &Digest) -> serde_json::Value {
    serde_json::json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Entrypoint": ["/usr/local/bin/wharf", "serve", "--listen", LISTEN, "--root", ROOT],
            "ExposedPorts": {"5000/tcp": {}},
            "Volumes": {ROOT: {}},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.to_string()]},
        "history": [{"created_by": "wharf save --self"}],
    })
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `wharf-pod.yaml` and `wharf.service` beside the bundle, for the image
/// `name`; `carries_ca`: the image holds its own CA bundle (`--ca-file`).
pub fn write_companions(
    out: &Path,
    name: &Reference,
    carries_ca: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    let dir = bundle_dir(out);
    let pod = dir.join(POD_FILE);
    let unit = dir.join(UNIT_FILE);
    std::fs::write(&pod, pod_manifest(name, carries_ca))
        .with_context(|| format!("cannot write {}", pod.display()))?;
    std::fs::write(&unit, systemd_unit(name))
        .with_context(|| format!("cannot write {}", unit.display()))?;
    Ok(vec![pod, unit])
}

/// A static Pod for /etc/kubernetes/manifests: host network, storage on
/// the host, the image side-loaded under its final name and pulled by that
/// name when absent (day 2: a new tag). It trusts the node's CAs (the
/// host's /etc/ssl/certs, mounted read-only) unless it carries its own.
pub fn pod_manifest(name: &Reference, carries_ca: bool) -> String {
    let (ca_mount, ca_volume) = if carries_ca {
        (String::new(), String::new())
    } else {
        (
            "\n        - name: host-ca\n          mountPath: /etc/ssl/certs\n          readOnly: true".to_string(),
            "\n    - name: host-ca\n      hostPath:\n        path: /etc/ssl/certs\n        type: Directory".to_string(),
        )
    };
    format!(
        r#"# Static Pod: copy to /etc/kubernetes/manifests/ after
#   ctr -n k8s.io images import --all-platforms BUNDLE
apiVersion: v1
kind: Pod
metadata:
  name: wharf
  namespace: kube-system
  labels:
    app.kubernetes.io/name: wharf
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  containers:
    - name: wharf
      image: {name}
      imagePullPolicy: IfNotPresent
      args: ["--publish-self", "{name}"]
      ports:
        - containerPort: 5000
          hostPort: 5000
      readinessProbe:
        httpGet:
          path: /readyz
          port: 5000
      volumeMounts:
        - name: data
          mountPath: {ROOT}{ca_mount}
  volumes:
    - name: data
      hostPath:
        path: {ROOT}
        type: DirectoryOrCreate{ca_volume}
"#
    )
}

/// A systemd unit running the binary itself (copy it to /usr/local/bin).
pub fn systemd_unit(name: &Reference) -> String {
    format!(
        r#"[Unit]
Description=wharf registry
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/local/bin/wharf serve --listen {LISTEN} --root {ROOT} --publish-self {name}
Restart=on-failure
# Room for [server] max_connections (4096 by default) plus the files open
# for blobs in flight; the usual 1024 would run out first.
LimitNOFILE=65536
StateDirectory=wharf
KillSignal=SIGTERM

[Install]
WantedBy=multi-user.target
"#
    )
}

/// The directory the bundle goes to.
pub(crate) fn bundle_dir(out: &Path) -> PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_name_is_qualified_and_immutable() {
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            image_name(Some("registry.home.arpa:5000/wharf/wharf:0.2.0"))
                .unwrap()
                .to_string(),
            "registry.home.arpa:5000/wharf/wharf:0.2.0"
        );
        assert_eq!(
            image_name(Some("registry.home.arpa:5000/wharf/wharf"))
                .unwrap()
                .to_string(),
            format!("registry.home.arpa:5000/wharf/wharf:{version}")
        );
        assert_eq!(
            image_name(None).unwrap().to_string(),
            format!("localhost/wharf:{version}")
        );
        for (bad, says) in [
            ("wharf/wharf:0.2.0", "names no registry"),
            ("wharf", "names no registry"),
            ("registry.home.arpa:5000/wharf/wharf:latest", "latest"),
            (
                "registry.home.arpa:5000/wharf/wharf@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "digest",
            ),
        ] {
            let err = image_name(Some(bad)).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn the_pod_and_unit_use_the_one_name() {
        let name = image_name(Some("registry.home.arpa:5000/wharf/wharf:0.2.0")).unwrap();
        let pod = pod_manifest(&name, false);
        assert!(pod.contains("image: registry.home.arpa:5000/wharf/wharf:0.2.0"));
        assert!(pod.contains("imagePullPolicy: IfNotPresent"));
        assert!(!pod.contains("Never"));
        assert!(pod.contains("mountPath: /etc/ssl/certs"), "{pod}");
        let own_ca = pod_manifest(&name, true);
        assert!(!own_ca.contains("/etc/ssl/certs"), "{own_ca}");
        let unit = systemd_unit(&name);
        assert!(unit.contains("--publish-self registry.home.arpa:5000/wharf/wharf:0.2.0"));
    }

    /// systemd's default of 1024 open files would run out long before the
    /// server's connection limit: a thousand silent sockets would lock
    /// everyone out.
    #[test]
    fn systemd_unit_allows_more_files_than_connections() {
        let name = image_name(Some("registry.home.arpa:5000/wharf/wharf:0.2.0")).unwrap();
        let unit = systemd_unit(&name);
        let limit: usize = unit
            .lines()
            .find_map(|l| l.strip_prefix("LimitNOFILE="))
            .expect("the unit sets LimitNOFILE")
            .parse()
            .expect("a number");
        assert!(limit >= 2 * wharf_registry::Limits::default().max_connections);
    }
}
