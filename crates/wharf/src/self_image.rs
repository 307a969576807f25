//! `wharf save --self`: an OCI image of the running wharf binary, built
//! here without a Dockerfile (one uncompressed layer: the binary, plus the
//! dynamic loader and libraries `ldd` names when it is not static), and the
//! files that start it on a node with no registry yet: a static Pod
//! manifest and a systemd unit.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use wharf_bundle::LocalImage;
use wharf_oci::{media_type, Descriptor, Digest, Reference};

const BINARY_IN_IMAGE: &str = "usr/local/bin/wharf";
const LISTEN: &str = "0.0.0.0:5000";
const ROOT: &str = "/var/lib/wharf";
pub const POD_FILE: &str = "wharf-pod.yaml";
pub const UNIT_FILE: &str = "wharf.service";

/// The image's name: local, versioned, never pulled.
pub fn image_name() -> String {
    format!("localhost/wharf:{}", env!("CARGO_PKG_VERSION"))
}

/// Build the image next to `out` (the layer is a temp file there, removed
/// when the returned path is dropped).
pub fn build(out: &Path) -> anyhow::Result<(LocalImage, tempfile::TempPath)> {
    let exe = std::env::current_exe().context("cannot find the running binary")?;
    let libraries = shared_libraries(&exe)?;
    let dir = crate::save_cmd::bundle_dir(out);
    let layer = tempfile::Builder::new()
        .prefix(".wharf-self-layer.")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    write_layer(layer.as_file(), &exe, &libraries)?;
    let (digest, size) = hash_file(layer.path())?;
    let config = Bytes::from(serde_json::to_vec(&config(&digest))?);
    let layer_descriptor = descriptor(media_type::OCI_LAYER_TAR, digest, size);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(media_type::OCI_CONFIG, Digest::sha256_of(&config), config.len() as u64),
        "layers": [layer_descriptor],
    });
    let name: Reference = image_name().parse().expect("a valid name");
    let image = LocalImage {
        name,
        manifest: Bytes::from(serde_json::to_vec(&manifest)?),
        config,
        layers: vec![(layer_descriptor, layer.path().to_path_buf())],
    };
    Ok((image, layer.into_temp_path()))
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

fn write_layer(file: &File, exe: &Path, libraries: &[PathBuf]) -> anyhow::Result<()> {
    let mut tar = tar::Builder::new(BufWriter::new(file));
    tar.mode(tar::HeaderMode::Deterministic);
    let mut dirs = BTreeSet::from(["tmp".to_string(), "var/lib/wharf".to_string()]);
    let inside: Vec<(String, &Path, u32)> =
        std::iter::once((BINARY_IN_IMAGE.to_string(), exe, 0o755))
            .chain(libraries.iter().map(|l| {
                (
                    l.to_string_lossy().trim_start_matches('/').to_string(),
                    l.as_path(),
                    0o755,
                )
            }))
            .collect();
    for (path, _, _) in &inside {
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
    for (path, source, mode) in inside {
        // The content behind a symlink, under the name the loader asks for.
        let mut f =
            File::open(source).with_context(|| format!("cannot read {}", source.display()))?;
        let size = f.metadata()?.len();
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(mode);
        tar.append_data(&mut h, &path, &mut f)?;
    }
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

fn descriptor(media: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media.to_string(),
        digest,
        size,
        artifact_type: None,
        annotations: None,
        platform: None,
        urls: None,
    }
}

/// `wharf-pod.yaml` and `wharf.service` beside the bundle.
pub fn write_companions(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = crate::save_cmd::bundle_dir(out);
    let pod = dir.join(POD_FILE);
    let unit = dir.join(UNIT_FILE);
    std::fs::write(&pod, pod_manifest())
        .with_context(|| format!("cannot write {}", pod.display()))?;
    std::fs::write(&unit, systemd_unit())
        .with_context(|| format!("cannot write {}", unit.display()))?;
    Ok(vec![pod, unit])
}

/// A static Pod for /etc/kubernetes/manifests: host network, storage on
/// the host, the image imported from the bundle (never pulled).
pub fn pod_manifest() -> String {
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
      image: {image}
      imagePullPolicy: Never
      args: []
      ports:
        - containerPort: 5000
          hostPort: 5000
      readinessProbe:
        httpGet:
          path: /readyz
          port: 5000
      volumeMounts:
        - name: data
          mountPath: {ROOT}
  volumes:
    - name: data
      hostPath:
        path: {ROOT}
        type: DirectoryOrCreate
"#,
        image = image_name()
    )
}

/// A systemd unit running the binary itself (copy it to /usr/local/bin).
pub fn systemd_unit() -> String {
    format!(
        r#"[Unit]
Description=wharf registry
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/local/bin/wharf serve --listen {LISTEN} --root {ROOT}
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

#[cfg(test)]
mod tests {
    use super::*;

    /// systemd's default of 1024 open files would run out long before the
    /// server's connection limit: a thousand silent sockets would lock
    /// everyone out.
    #[test]
    fn systemd_unit_allows_more_files_than_connections() {
        let unit = systemd_unit();
        let limit: usize = unit
            .lines()
            .find_map(|l| l.strip_prefix("LimitNOFILE="))
            .expect("the unit sets LimitNOFILE")
            .parse()
            .expect("a number");
        assert!(limit >= 2 * wharf_registry::Limits::default().max_connections);
    }
}
