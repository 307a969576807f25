//! `wharf save` and `wharf load` as an operator runs them, between real
//! `wharf serve` processes: digests kept across save and load, multi-arch
//! by default, a delta on top of its base gives the full set, damaged
//! bundles (truncated, flipped, newer, missing a blob) are refused before
//! anything is imported, a failed save (missing image, file size limit,
//! full disk) leaves no file behind.

mod common;

use common::server::Wharf;
use std::path::Path;
use std::process::Command;
use wharf_testkit::image::{self, host_arch, Artifact, Format};

use common::api::{push_artifact as push, Api};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

/// `wharf ARGS…` as (exit code, stdout, stderr).
fn wharf(args: &[&str]) -> (i32, String, String) {
    let out = common::cli::wharf(args);
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

/// A source registry with a multi-arch OCI index, a Docker image and a
/// second tag sharing layers with the first.
struct Source {
    server: Wharf,
    multi: Artifact,
    docker: Artifact,
}

impl Source {
    fn start(dir: &Path) -> Source {
        let server = Wharf::start(dir);
        let api = Api::new(&server.url());
        let multi = image::multi_arch(Format::Oci, "bundle-multi");
        let docker = image::image(Format::Docker, "bundle-docker", host_arch());
        push(&api, "team/multi", "v1", &multi);
        push(&api, "team/docker", "v1", &docker);
        Source {
            server,
            multi,
            docker,
        }
    }

    fn refs(&self) -> Vec<String> {
        vec![
            format!("{}/team/multi:v1", self.server.host()),
            format!("{}/team/docker:v1", self.server.host()),
        ]
    }
}

fn save(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["save", "-q"];
    all.extend_from_slice(args);
    wharf(&all)
}

/// The digest `repo:tag` has at `server`, or None.
fn digest_at(server: &Wharf, repo: &str, tag: &str) -> Option<String> {
    Api::new(&server.url())
        .manifest(repo, tag)
        .ok()
        .map(|m| m.digest)
}

#[test]
fn save_then_load_keeps_every_digest_and_every_platform() {
    let work = tempfile::tempdir().unwrap();
    let src = Source::start(&work.path().join("src"));
    for name in ["site.tar", "site.tar.zst"] {
        let bundle = work.path().join(name);
        let refs = src.refs();
        let mut args = vec!["-o", bundle.to_str().unwrap()];
        args.extend(refs.iter().map(String::as_str));
        let (code, out, err) = save(&args);
        assert_eq!(code, 0, "save {name}: {out}\n{err}");
        assert!(bundle.exists());

        let dst = Wharf::start(&work.path().join(format!("dst-{name}")));
        let (code, out, err) = wharf(&[
            "load",
            "-q",
            "--output",
            "json",
            "--to",
            &dst.host(),
            bundle.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "load {name}: {out}\n{err}");
        let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
        assert_eq!(report["command"], "load");
        assert_eq!(report["summary"]["images"], 2);
        assert_eq!(report["summary"]["failed"], 0);

        // Under the upstream host, as sync puts them, with the source's digests.
        let host = src.server.host().replace(':', "_");
        let multi_repo = format!("{host}/team/multi");
        assert_eq!(
            digest_at(&dst, &multi_repo, "v1"),
            Some(src.multi.digest().to_string())
        );
        for child in &src.multi.children {
            assert_eq!(
                digest_at(&dst, &multi_repo, &child.digest().to_string()),
                Some(child.digest().to_string()),
                "every platform of the index is in the bundle"
            );
        }
        let docker_repo = format!("{host}/team/docker");
        assert_eq!(
            digest_at(&dst, &docker_repo, "v1"),
            Some(src.docker.digest().to_string())
        );
        let api = Api::new(&dst.url());
        for blob in &src.docker.blobs {
            assert_eq!(
                api.blob(&docker_repo, &blob.digest().to_string()).unwrap(),
                blob.bytes
            );
        }

        // Loading again moves nothing.
        let (code, out, _) = wharf(&[
            "load",
            "-q",
            "--output",
            "json",
            "--to",
            &dst.host(),
            bundle.to_str().unwrap(),
        ]);
        assert_eq!(code, 0);
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["summary"]["up_to_date"], 2, "{out}");
        assert_eq!(report["summary"]["bytes_sent"], 0);
    }
}

#[test]
fn platform_restricts_and_a_delta_on_its_base_equals_the_full_bundle() {
    let work = tempfile::tempdir().unwrap();
    let src = Source::start(&work.path().join("src"));
    let refs = src.refs();
    let base = work.path().join("base.tar");
    let (code, out, err) = save(&["-o", base.to_str().unwrap(), &refs[1]]);
    assert_eq!(code, 0, "{out}{err}");

    // A second image sharing nothing but the list: the delta holds only it,
    // and still names the image that was in the base.
    let delta = work.path().join("delta.tar");
    let (code, out, err) = save(&[
        "-o",
        delta.to_str().unwrap(),
        "--since",
        base.to_str().unwrap(),
        &refs[0],
        &refs[1],
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let full = work.path().join("full.tar");
    let (code, _, err) = save(&["-o", full.to_str().unwrap(), &refs[0], &refs[1]]);
    assert_eq!(code, 0, "{err}");
    let docker_layers: u64 = src
        .docker
        .layers()
        .iter()
        .map(|b| b.bytes.len() as u64)
        .sum();
    let (delta_len, full_len) = (
        std::fs::metadata(&delta).unwrap().len(),
        std::fs::metadata(&full).unwrap().len(),
    );
    assert!(
        delta_len + docker_layers <= full_len,
        "the delta ({delta_len}) leaves out the base's layers ({docker_layers}) of the full ({full_len})"
    );

    let from_delta = Wharf::start(&work.path().join("dst-delta"));
    let (code, out, err) = wharf(&[
        "load",
        "-q",
        "--to",
        &from_delta.host(),
        base.to_str().unwrap(),
        delta.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let from_full = Wharf::start(&work.path().join("dst-full"));
    let (code, _, err) = wharf(&[
        "load",
        "-q",
        "--to",
        &from_full.host(),
        full.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let host = src.server.host().replace(':', "_");
    for repo in ["team/multi", "team/docker"] {
        let repo = format!("{host}/{repo}");
        let a = digest_at(&from_delta, &repo, "v1");
        assert!(a.is_some());
        assert_eq!(a, digest_at(&from_full, &repo, "v1"), "{repo}");
    }

    // --platform keeps one platform: a filtered index naming only it.
    let one = work.path().join("one.tar");
    let (code, out, err) = save(&[
        "-o",
        one.to_str().unwrap(),
        "--platform",
        &format!("linux/{}", host_arch()),
        &refs[0],
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let dst = Wharf::start(&work.path().join("dst-one"));
    let (code, out, err) = wharf(&[
        "load",
        "-q",
        "--output",
        "json",
        "--to",
        &dst.host(),
        one.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let loaded = report["images"][0]["digest"].as_str().unwrap().to_string();
    assert_ne!(
        loaded,
        src.multi.digest().to_string(),
        "a filtered index has its own digest"
    );
    let repo = format!("{host}/team/multi");
    let index = Api::new(&dst.url()).manifest(&repo, "v1").unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index.body).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        index["manifests"][0]["platform"]["architecture"],
        host_arch()
    );
}

/// The spellings users bring from docker and skopeo: `save --output FILE`
/// with `--format json`, `load -i FILE`, `--platform a,b` and
/// `--platform all`; and the text summary naming where each image landed.
#[test]
fn docker_style_flags_name_files_and_platform_lists() {
    let work = tempfile::tempdir().unwrap();
    let src = Source::start(&work.path().join("src"));
    let refs = src.refs();
    let bundle = work.path().join("pair.tar");
    let (code, out, err) = save(&[
        "--output",
        bundle.to_str().unwrap(),
        "--format",
        "json",
        &refs[0],
        &refs[1],
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        bundle.is_file(),
        "--output names the bundle, as docker save -o"
    );
    let report: serde_json::Value = serde_json::from_str(&out).expect("--format json");
    assert_eq!(report["command"], "save");
    assert_eq!(report["version"], 1);

    let dst = Wharf::start(&work.path().join("dst"));
    let (code, out, err) = wharf(&[
        "load",
        "-q",
        "-i",
        bundle.to_str().unwrap(),
        "--to",
        &dst.host(),
    ]);
    assert_eq!(code, 0, "load -i, as docker load: {out}{err}");
    let landed = format!(
        "{}/{}/team/multi:v1",
        dst.host(),
        src.server.host().replace(':', "_")
    );
    assert!(
        out.contains("DESTINATION") && out.contains(&landed),
        "the table says where: {out}"
    );

    // A list of platforms that names every one keeps the index as it is;
    // so does `all`. One platform makes a filtered index of its own.
    let both = format!("linux/{},linux/{}", host_arch(), image::other_arch());
    for (platform, repo) in [(both.as_str(), "both"), ("all", "all")] {
        let to = format!("{}/{repo}/multi:v1", dst.host());
        let (code, out, err) = wharf(&["copy", "-q", &refs[0], &to, "--platform", platform]);
        assert_eq!(code, 0, "--platform {platform}: {out}{err}");
        assert_eq!(
            digest_at(&dst, &format!("{repo}/multi"), "v1"),
            Some(src.multi.digest().to_string()),
            "--platform {platform}"
        );
    }
    let (code, _, err) = wharf(&["copy", "-q", &refs[0], &dst.host(), "--platform", "linux"]);
    assert_eq!(
        code, 2,
        "a platform without an architecture is bad usage: {err}"
    );
    assert!(err.contains("os/arch"), "{err}");
}

#[test]
fn damaged_bundles_are_refused_and_nothing_is_imported() {
    let work = tempfile::tempdir().unwrap();
    let src = Source::start(&work.path().join("src"));
    let bundle = work.path().join("site.tar");
    let refs = src.refs();
    let (code, _, err) = save(&["-o", bundle.to_str().unwrap(), &refs[0], &refs[1]]);
    assert_eq!(code, 0, "{err}");
    let clean = std::fs::read(&bundle).unwrap();
    let dst = Wharf::start(&work.path().join("dst"));

    let truncated = work.path().join("truncated.tar");
    std::fs::write(&truncated, &clean[..clean.len() * 2 / 3]).unwrap();
    let mut flipped_bytes = clean.clone();
    // The middle of the largest blob's data.
    let layer = src.multi.children[0].layers()[0].bytes.clone();
    let at = clean
        .windows(32)
        .position(|w| w == &layer[..32])
        .expect("layer in the bundle")
        + layer.len() / 2;
    flipped_bytes[at] ^= 0x01;
    let flipped = work.path().join("flipped.tar");
    std::fs::write(&flipped, &flipped_bytes).unwrap();

    for (bad, word) in [(&truncated, "truncated"), (&flipped, "corrupt")] {
        // The good bundle first on the command line: verification of all
        // comes before any import, so even it is not loaded.
        let (code, out, err) = wharf(&[
            "load",
            "-q",
            "--to",
            &dst.host(),
            bundle.to_str().unwrap(),
            bad.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains(word), "{err}");
        assert!(
            err.contains(bad.to_str().unwrap()),
            "the error names the file: {err}"
        );
        assert!(err.contains("nothing was imported"), "{err}");
        assert!(
            Api::new(&dst.url()).catalog().unwrap().is_empty(),
            "nothing reached the registry"
        );
    }
}

/// `from` rewritten without the entry named `skip`.
fn copy_tar_without(from: &Path, to: &Path, skip: &str) {
    let mut archive = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut builder = tar::Builder::new(std::fs::File::create(to).unwrap());
    let mut skipped = false;
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().to_string();
        if name == skip {
            skipped = true;
            continue;
        }
        let mut header = entry.header().clone();
        builder.append_data(&mut header, &name, entry).unwrap();
    }
    builder.finish().unwrap();
    assert!(skipped, "{skip} was in the bundle");
}

#[test]
fn a_newer_format_or_a_missing_blob_is_refused_and_nothing_is_imported() {
    let work = tempfile::tempdir().unwrap();
    let src = Source::start(&work.path().join("src"));
    let bundle = work.path().join("site.tar");
    let refs = src.refs();
    let (code, _, err) = save(&["-o", bundle.to_str().unwrap(), &refs[0], &refs[1]]);
    assert_eq!(code, 0, "{err}");
    let clean = std::fs::read(&bundle).unwrap();
    let dst = Wharf::start(&work.path().join("dst"));

    // The marker says version 9; same length, so the tar stays well formed.
    let marker = br#""version":1"#;
    let at = clean
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the marker in the bundle")
        + marker.len()
        - 1;
    let mut newer_bytes = clean.clone();
    newer_bytes[at] = b'9';
    let newer = work.path().join("newer.tar");
    std::fs::write(&newer, &newer_bytes).unwrap();

    let layer = src.docker.layers()[1].digest().to_string();
    let missing = work.path().join("missing.tar");
    copy_tar_without(
        &bundle,
        &missing,
        &format!("blobs/sha256/{}", wharf_testkit::digest_hex(&layer)),
    );

    for (bad, words) in [
        (&newer, vec!["format version 9", "upgrade wharf"]),
        (&missing, vec!["is missing", layer.as_str()]),
    ] {
        let (code, out, err) = wharf(&[
            "load",
            "-q",
            "--to",
            &dst.host(),
            bundle.to_str().unwrap(),
            bad.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{out}{err}");
        for word in words {
            assert!(err.contains(word), "{word:?} in {err}");
        }
        assert!(err.contains(bad.to_str().unwrap()), "{err}");
        assert!(err.contains("nothing was imported"), "{err}");
        assert!(
            Api::new(&dst.url()).catalog().unwrap().is_empty(),
            "nothing reached the registry"
        );
    }
}

#[test]
fn a_reference_the_source_lacks_leaves_no_bundle() {
    let work = tempfile::tempdir().unwrap();
    let src = Source::start(&work.path().join("src"));
    let bundle = work.path().join("site.tar");
    let absent = format!("{}/team/absent:v9", src.server.host());
    let refs = src.refs();
    let (code, out, err) = save(&["-o", bundle.to_str().unwrap(), &refs[0], &absent]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&absent), "the missing image is named: {err}");
    assert!(!bundle.exists(), "nothing under the final name");
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("site.tar"))
        .collect();
    assert!(leftovers.is_empty(), "no temp file left: {leftovers:?}");
}

/// `wharf save -o BUNDLE REF` run under `umask`, as a shell sets it.
fn save_under_umask(umask: &str, bundle: &Path, reference: &str) -> (i32, String) {
    let out = Command::new("sh")
        .args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\"")])
        .arg(WHARF)
        .args(["save", "-q", "-o"])
        .arg(bundle)
        .arg(reference)
        .output()
        .expect("run wharf save under sh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bundle_gets_the_mode_the_umask_gives_any_new_file() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let src = Source::start(&work.path().join("src"));
    let reference = &src.refs()[1];
    for (umask, mode) in [("022", 0o644), ("027", 0o640), ("077", 0o600)] {
        let bundle = work.path().join(format!("umask-{umask}.tar"));
        let (code, err) = save_under_umask(umask, &bundle, reference);
        assert_eq!(code, 0, "save under umask {umask}: {err}");
        let found = std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            found, mode,
            "umask {umask}: mode {found:o}, expected {mode:o}"
        );
    }
}

#[test]
fn load_into_a_containerd_that_is_not_running_fails_at_once_with_one_error() {
    let work = tempfile::tempdir().unwrap();
    let src = Source::start(&work.path().join("src"));
    let bundle = work.path().join("site.tar");
    let refs = src.refs();
    let (code, out, err) = save(&["-o", bundle.to_str().unwrap(), &refs[0], &refs[1]]);
    assert_eq!(code, 0, "{out}{err}");
    let socket = work.path().join("containerd.sock");

    let started = std::time::Instant::now();
    let (code, out, err) = wharf(&[
        "load",
        "--containerd",
        "--address",
        socket.to_str().unwrap(),
        bundle.to_str().unwrap(),
    ]);
    let took = started.elapsed();

    assert_eq!(code, 1, "{out}{err}");
    // ctr alone waits 10 s to dial, once per bundle.
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors,
        [format!(
            "error: cannot import into containerd: nothing answers on {}: No such file or directory (os error 2)",
            socket.display()
        )],
        "{err}"
    );
    assert!(
        err.ends_with(
            "\nhint: is containerd running? Start it (`systemctl start containerd`), or give its socket with --address PATH; nothing was imported\n"
        ),
        "{err}"
    );
    assert!(out.is_empty(), "no table of failed images: {out}");
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_source_serving_wrong_bytes_leaves_no_bundle() {
    let work = tempfile::tempdir().unwrap();
    let src = Source::start(&work.path().join("src"));
    // Damage the layer where the source stores it (same length): the
    // registry serves it as it is, under its old digest.
    let layer = &src.docker.layers()[1];
    let stored = files_under(src.server.root())
        .into_iter()
        .find(|p| std::fs::read(p).is_ok_and(|b| b == layer.bytes))
        .expect("the layer in the source's storage");
    let mut damaged = layer.bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    std::fs::write(&stored, &damaged).unwrap();

    let bundle = work.path().join("site.tar");
    let refs = src.refs();
    let (code, out, err) = save(&["-o", bundle.to_str().unwrap(), &refs[1]]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&layer.digest().to_string()),
        "the blob is named: {err}"
    );
    assert!(!bundle.exists(), "nothing under the final name");
}

#[test]
fn a_full_disk_leaves_nothing_under_the_final_name() {
    // A file size limit makes write(2) fail part-way (EFBIG, with SIGXFSZ
    // ignored), as a full disk does (ENOSPC), without needing a mount.
    let work = tempfile::tempdir().unwrap();
    let src = Source::start(&work.path().join("src"));
    let bundle = work.path().join("site.tar");
    let refs = src.refs();
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 8 && exec \"$0\" save -q -o \"$1\" \"$2\" \"$3\"")
        .arg(WHARF)
        .arg(&bundle)
        .arg(&refs[0])
        .arg(&refs[1])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("site.tar"), "{err}");
    assert!(!bundle.exists(), "nothing under the final name");
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("site.tar"))
        .collect();
    assert!(leftovers.is_empty(), "no temp file left: {leftovers:?}");
}

#[test]
fn a_disk_that_fills_up_leaves_nothing_under_the_final_name() {
    // A real full disk: a tmpfs of one page, mounted in a private mount
    // namespace so it vanishes with the command. What is left in it is
    // listed before the namespace goes.
    wharf_testkit::tools::require_root("mounting a tmpfs");
    let unshare = wharf_testkit::tools::require_tool("unshare");
    let work = tempfile::tempdir().unwrap();
    let src = Source::start(&work.path().join("src"));
    let full = work.path().join("full");
    std::fs::create_dir(&full).unwrap();
    let refs = src.refs();
    let script = r#"mount -t tmpfs -o size=4k tmpfs "$1" || exit 99
"$0" save -q -o "$1/site.tar" "$2" "$3"
rc=$?
echo "left: $(ls -A "$1")"
exit $rc"#;
    let out = Command::new(unshare)
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(WHARF)
        .arg(&full)
        .arg(&refs[0])
        .arg(&refs[1])
        .output()
        .unwrap();
    let (stdout, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{err}");
    assert!(err.contains("site.tar"), "the bundle is named: {err}");
    assert!(
        err.contains("No space left on device"),
        "the cause is named: {err}"
    );
    assert_eq!(stdout.trim(), "left:", "nothing left on the full disk");
    assert!(!full.join("site.tar").exists());
}

#[test]
fn save_self_adds_an_image_of_wharf_and_the_files_to_start_it() {
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bootstrap.tar");
    let (code, out, err) = save(&["--self", "-o", bundle.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let pod = std::fs::read_to_string(work.path().join("wharf-pod.yaml")).unwrap();
    assert!(pod.contains("hostNetwork: true") && pod.contains("localhost/wharf:"));
    let unit = std::fs::read_to_string(work.path().join("wharf.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/wharf serve"));

    let dst = Wharf::start(&work.path().join("dst"));
    let (code, out, err) = wharf(&[
        "load",
        "-q",
        "--flatten",
        "--to",
        &dst.host(),
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let api = Api::new(&dst.url());
    let version = env!("CARGO_PKG_VERSION");
    let manifest = api
        .manifest("wharf", version)
        .expect("the image of wharf itself");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.body).unwrap();
    let config = api
        .blob("wharf", manifest["config"]["digest"].as_str().unwrap())
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["config"]["Entrypoint"][1], "serve");
    // The layer holds this very binary.
    let layer = api
        .blob("wharf", manifest["layers"][0]["digest"].as_str().unwrap())
        .unwrap();
    let mut archive = tar::Archive::new(&layer[..]);
    let binary = std::fs::read(WHARF).unwrap();
    let found = archive.entries().unwrap().any(|e| {
        let mut e = e.unwrap();
        let is_binary = e.path().unwrap().to_string_lossy() == "usr/local/bin/wharf";
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        is_binary && bytes == binary
    });
    assert!(found, "usr/local/bin/wharf is the running binary");
}

#[test]
fn images_lint_flags_what_a_bundle_or_registry_lacks() {
    let work = tempfile::tempdir().unwrap();
    let src = Source::start(&work.path().join("src"));
    let refs = src.refs();
    let bundle = work.path().join("site.tar");
    let (code, _, err) = save(&["-o", bundle.to_str().unwrap(), &refs[0]]);
    assert_eq!(code, 0, "{err}");
    let host = src.server.host();
    let yaml = work.path().join("app.yaml");
    std::fs::write(
        &yaml,
        format!(
            "spec:\n  containers:\n    - image: {host}/team/multi:v1\n    - image: {host}/team/multi:v2\n      imagePullPolicy: IfNotPresent\n"
        ),
    )
    .unwrap();
    let (code, out, err) = wharf(&[
        "images",
        "--lint",
        "--bundle",
        bundle.to_str().unwrap(),
        yaml.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let line = format!("{}:4: error[WK010]", yaml.display());
    assert!(
        err.contains(&line),
        "file and line of the missing tag: {err}"
    );
    assert!(
        err.contains(&format!("holds {host}/team/multi:v1")),
        "the closest name: {err}"
    );
    assert!(
        !err.contains(":3: error[WK010]"),
        "v1 is in the bundle: {err}"
    );

    // The same against a registry that got the bundle.
    let dst = Wharf::start(&work.path().join("dst"));
    let (code, _, err) = wharf(&["load", "-q", "--to", &dst.host(), bundle.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = wharf(&[
        "images",
        "--lint",
        "--registry",
        &dst.host(),
        yaml.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&line), "{err}");
    assert!(
        err.contains(&format!("holds {host}/team/multi:v1")),
        "{err}"
    );
    assert!(!err.contains(":3: error[WK010]"), "{err}");
}

/// The catalog of `server`, sorted.
fn catalog(server: &Wharf) -> Vec<String> {
    let mut repos = Api::new(&server.url()).catalog().unwrap();
    repos.sort();
    repos
}

#[test]
fn load_copy_and_sync_onto_the_images_own_registry_keep_its_plain_path() {
    let work = tempfile::tempdir().unwrap();
    let own = Wharf::start(&work.path().join("own"));
    let name = own.host();
    let app = image::image(Format::Oci, "own-app", host_arch());
    push(&Api::new(&own.url()), "repo/registry", "v0.4.2", &app);
    let reference = format!("{name}/repo/registry:v0.4.2");
    let bundle = work.path().join("own.tar");
    let (code, out, err) = save(&["-o", bundle.to_str().unwrap(), &reference]);
    assert_eq!(code, 0, "{out}{err}");

    // As given: the bundle back into the registry it names.
    let fresh_root = own.root().to_path_buf();
    drop(own);
    std::fs::remove_dir_all(&fresh_root).unwrap();
    let port: u16 = name.rsplit(':').next().unwrap().parse().unwrap();
    let same = Wharf::start_on(&work.path().join("same"), port, &[]);
    let (code, out, err) = wharf(&["load", "-q", "--to", &name, bundle.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("is the destination registry"),
        "the plan says so: {err}"
    );
    assert_eq!(catalog(&same), ["repo/registry"]);
    assert_eq!(
        digest_at(&same, "repo/registry", "v0.4.2"),
        Some(app.digest().to_string())
    );

    // Under another name, given with --registry-name: load, copy and sync.
    let other = Wharf::start(&work.path().join("other"));
    let (code, out, err) = wharf(&[
        "load",
        "-q",
        "--to",
        &other.host(),
        "--registry-name",
        &name,
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(catalog(&other), ["repo/registry"]);
    let copied = Wharf::start(&work.path().join("copied"));
    let (code, out, err) = wharf(&[
        "copy",
        "-q",
        &reference,
        &copied.host(),
        "--registry-name",
        &name,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        digest_at(&copied, "repo/registry", "v0.4.2"),
        Some(app.digest().to_string())
    );
    let list = work.path().join("images.txt");
    std::fs::write(&list, format!("{reference}\n")).unwrap();
    let synced = Wharf::start(&work.path().join("synced"));
    let (code, out, err) = wharf(&[
        "sync",
        "-q",
        "--to",
        &synced.host(),
        "--registry-name",
        &name,
        list.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("is the destination registry"), "{err}");
    assert_eq!(catalog(&synced), ["repo/registry"]);

    // Any other registry keeps the ?ns= layout.
    let mirror = Wharf::start(&work.path().join("mirror"));
    let (code, out, err) = wharf(&[
        "load",
        "-q",
        "--to",
        &mirror.host(),
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        catalog(&mirror),
        [format!("{}/repo/registry", name.replace(':', "_"))]
    );
}

#[test]
fn names_that_map_two_images_onto_one_are_refused_and_nothing_is_copied() {
    let work = tempfile::tempdir().unwrap();
    let a = Wharf::start(&work.path().join("a"));
    let b = Wharf::start(&work.path().join("b"));
    push(
        &Api::new(&a.url()),
        "repo/app",
        "v1",
        &image::image(Format::Oci, "from-a", host_arch()),
    );
    push(
        &Api::new(&b.url()),
        "repo/app",
        "v1",
        &image::image(Format::Oci, "from-b", host_arch()),
    );
    let refs = [
        format!("{}/repo/app:v1", a.host()),
        format!("{}/repo/app:v1", b.host()),
    ];
    let dst = Wharf::start(&work.path().join("dst"));
    let aliases = ["--registry-name", &a.host(), "--registry-name", &b.host()];

    let list = work.path().join("images.txt");
    std::fs::write(&list, refs.join("\n")).unwrap();
    let dst_host = dst.host();
    let mut sync = vec!["sync", "-q", "--to", &dst_host];
    sync.extend(aliases);
    sync.push(list.to_str().unwrap());
    let (code, out, err) = wharf(&sync);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("would both be stored as"), "{err}");
    assert!(err.contains(&refs[0]) && err.contains(&refs[1]), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(catalog(&dst).is_empty(), "nothing was copied");

    // The same through two bundles: all are checked before anything is pushed.
    let (bundle_a, bundle_b) = (work.path().join("a.tar"), work.path().join("b.tar"));
    for (bundle, reference) in [(&bundle_a, &refs[0]), (&bundle_b, &refs[1])] {
        let (code, out, err) = save(&["-o", bundle.to_str().unwrap(), reference]);
        assert_eq!(code, 0, "{out}{err}");
    }
    let mut load = vec!["load", "-q", "--to", &dst_host];
    load.extend(aliases);
    load.extend([bundle_a.to_str().unwrap(), bundle_b.to_str().unwrap()]);
    let (code, out, err) = wharf(&load);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("would both be stored as"), "{err}");
    assert!(err.contains("nothing was loaded"), "{err}");
    assert!(catalog(&dst).is_empty(), "nothing was loaded");
}

#[test]
fn a_self_name_that_is_not_qualified_or_uses_latest_is_refused_with_the_fix() {
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("self.tar");
    for (name, says) in [
        ("wharf/wharf:0.2.0", "names no registry"),
        ("registry.home.arpa:5000/wharf/wharf:latest", "latest"),
    ] {
        let (code, out, err) = save(&["--self", name, "-o", bundle.to_str().unwrap()]);
        assert_eq!(code, 2, "{name}: {out}{err}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(
            err.contains("hint: name the image as nodes will pull it"),
            "{name}: {err}"
        );
        assert!(!bundle.exists(), "no bundle for {name}");
        assert!(!work.path().join("wharf-pod.yaml").exists());
    }
}

#[test]
fn a_bundle_whose_names_collide_is_not_written() {
    let work = tempfile::tempdir().unwrap();
    let src = Wharf::start(&work.path().join("src"));
    // Another image already under the name the self image is to take.
    push(
        &Api::new(&src.url()),
        "wharf/wharf",
        "9.9.9",
        &image::image(Format::Oci, "not-wharf", host_arch()),
    );
    let name = format!("{}/wharf/wharf:9.9.9", src.host());
    let bundle = work.path().join("clash.tar");
    let (code, out, err) = save(&["--self", &name, &name, "-o", bundle.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("would both be named"), "{err}");
    assert!(!bundle.exists(), "no bundle names one of them wrongly");
    assert!(
        files_under(work.path())
            .iter()
            .all(|f| !f.to_string_lossy().contains("clash")),
        "no temp file left"
    );
}

/// The entries of a tar held in memory, by path.
fn tar_entries(bytes: &[u8]) -> std::collections::HashMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (path, data)
        })
        .collect()
}

#[test]
fn a_self_image_with_ca_files_carries_them_and_the_pod_mounts_nothing() {
    let work = tempfile::tempdir().unwrap();
    let ca = common::tls::ca_init(&work.path().join("ca"));
    let name = "registry.home.arpa:5000/wharf/wharf:0.2.0";
    let bundle = work.path().join("self.tar");
    let (code, out, err) = save(&[
        "--self",
        name,
        "--ca-file",
        ca.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let files = tar_entries(&std::fs::read(&bundle).unwrap());
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["io.containerd.image.name"] == name)
        .expect("the self image under its name");
    let blob = |digest: &serde_json::Value| {
        let hex = digest.as_str().unwrap().trim_start_matches("sha256:");
        files[&format!("blobs/sha256/{hex}")].clone()
    };
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&entry["digest"])).unwrap();
    let layer = tar_entries(&blob(&manifest["layers"][0]["digest"]));
    assert_eq!(
        layer["etc/ssl/certs/ca-certificates.crt"],
        std::fs::read(&ca).unwrap(),
        "the CA where the system roots are looked for"
    );
    let list = String::from_utf8(layer["etc/wharf/self-image.files"].clone()).unwrap();
    assert!(list.lines().any(|l| l == "usr/local/bin/wharf"), "{list}");
    assert!(
        list.lines()
            .any(|l| l == "etc/ssl/certs/ca-certificates.crt"),
        "{list}"
    );
    let pod = std::fs::read_to_string(work.path().join("wharf-pod.yaml")).unwrap();
    assert!(pod.contains(&format!("image: {name}")), "{pod}");
    assert!(
        !pod.contains("/etc/ssl/certs"),
        "the image trusts its own CA: {pod}"
    );
}
