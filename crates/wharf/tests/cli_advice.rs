//! The advice users act on, word for word: doctor's `fix:` lines and the
//! commands' `hint:` lines for their most common failures (a registry that
//! does not answer, one that wants credentials, an image it lacks, a bad
//! file). A change of wording shows up here, to be made on purpose.

mod common;

use common::server::Wharf;
use std::path::{Path, PathBuf};
use std::process::Command;
use wharf_testkit::free_port;
use wharf_testkit::in_private_netns;
use wharf_testkit::tools::run_unchecked;
use wharf_testkit::tools::Output;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

fn wharf(args: &[&str]) -> Output {
    run_unchecked(Command::new(WHARF).args(args))
}

/// The text after `prefix` on the line that starts with it (leading spaces
/// ignored), e.g. `fix:` of doctor's verdict.
fn line_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix(prefix))
        .map(str::trim)
        .collect()
}

/// A node whose containerd (1.7, modelled: no runtime answers) sends
/// docker.io pulls to `mirror`. Returns config.toml and the hosts.toml.
fn node(dir: &Path, mirror: &str) -> (PathBuf, PathBuf) {
    common::containerd::write_node_files(dir, mirror, "")
}

/// `wharf doctor docker.io/library/alpine:3.21` on that node.
fn doctor(dir: &Path, config: &Path) -> Output {
    let out = wharf(&[
        "doctor",
        "--config",
        config.to_str().unwrap(),
        "--address",
        dir.join("no-containerd.sock").to_str().unwrap(),
        "--containerd-version",
        "1.7",
        "--timeout",
        "2",
        "docker.io/library/alpine:3.21",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    out
}

/// The first `fix:` of the verdict: the one for the mirror.
fn mirror_fix(out: &Output) -> String {
    line_after(&out.stdout, "fix:")
        .first()
        .unwrap_or_else(|| panic!("a fix line: {}", out.describe()))
        .to_string()
}

#[test]
fn doctor_advice_for_a_mirror_that_is_down_lacks_the_image_or_wants_credentials() {
    // Only loopback: docker.io, which the node falls back to, stays out of reach.
    in_private_netns(|| {
        let work = tempfile::tempdir().unwrap();

        let closed = format!("127.0.0.1:{}", free_port());
        let (config, file) = node(&work.path().join("down"), &format!("http://{closed}"));
        let out = doctor(&work.path().join("down"), &config);
        assert_eq!(
            mirror_fix(&out),
            format!(
                "nothing accepts connections on {closed}: start the registry there, or correct the host and port of the URL ([host] at {}:3)",
                file.display()
            )
        );

        let mirror = Wharf::start(&work.path().join("empty-mirror"));
        let (config, file) = node(&work.path().join("empty"), &mirror.url());
        let out = doctor(&work.path().join("empty"), &config);
        assert_eq!(
            mirror_fix(&out),
            format!(
                "the mirror has no library/alpine:3.21: copy the image to it (containerd asks for /v2/library/alpine with ?ns=docker.io; a wharf mirror serves that from docker.io/library/alpine) ([host] at {}:3)",
                file.display()
            )
        );

        let locked = locked_wharf(&work.path().join("locked-mirror"));
        let (config, _) = node(&work.path().join("locked"), &locked.url());
        let out = doctor(&work.path().join("locked"), &config);
        assert_eq!(
            mirror_fix(&out),
            format!(
                "the registry wants credentials: set them for {host} in the CRI config (`[plugins.\"…\".registry.configs.\"{host}\".auth]`); this check only tries anonymous pulls",
                host = locked.host()
            )
        );
    });
}

/// A wharf that lets no anonymous client pull.
fn locked_wharf(dir: &Path) -> Wharf {
    std::fs::create_dir_all(dir).unwrap();
    let htpasswd = dir.join("htpasswd");
    let out = run_unchecked(
        Command::new("sh")
            .args([
                "-c",
                "printf 'secret-password' | \"$0\" auth htpasswd \"$1\" ci",
            ])
            .arg(WHARF)
            .arg(&htpasswd),
    );
    assert!(out.status.success(), "{}", out.describe());
    Wharf::start_with_config_text(
        dir,
        &format!("[auth]\nmode = \"basic\"\nhtpasswd = {htpasswd:?}\n"),
    )
}

/// The `hint:` line of a failed command's stderr.
fn hint(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    let hints = line_after(&out.stderr, "hint:");
    assert_eq!(hints.len(), 1, "one hint: {}", out.describe());
    hints[0].to_owned()
}

#[test]
fn serve_advice_for_a_taken_port_and_an_unwritable_root() {
    let work = tempfile::tempdir().unwrap();
    let running = Wharf::start(&work.path().join("running"));
    let out = wharf(&[
        "serve",
        "--listen",
        &running.host(),
        "--root",
        work.path().join("second").to_str().unwrap(),
    ]);
    assert_eq!(
        hint(&out),
        "another process already listens there; stop it or choose another address with --listen"
    );

    let out = wharf(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--root",
        "/proc/wharf-cannot-write-here",
    ]);
    assert_eq!(
        hint(&out),
        "check that the directory given to --root is writable by this user"
    );
}

#[test]
fn gc_advice_for_a_bad_duration() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("wharf.toml");
    std::fs::write(&config, "[gc]\ngrace = \"one day\"\n").unwrap();
    let root = work.path().join("data");
    let out = wharf(&[
        "gc",
        "--root",
        root.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(
        out.stderr
            .contains("\"one day\" is not a duration: use a number and a unit, e.g. \"30s\", \"15m\", \"1h30m\", \"30d\""),
        "{}",
        out.describe()
    );
    assert_eq!(
        hint(&out),
        "fix the setting shown above; `wharf serve --help` lists every section and key of wharf.toml"
    );
}

#[test]
fn load_advice_for_a_file_that_is_not_a_bundle() {
    let work = tempfile::tempdir().unwrap();
    let not_a_bundle = work.path().join("site.tar");
    std::fs::write(&not_a_bundle, b"not a tar at all").unwrap();
    let target = Wharf::start(&work.path().join("target"));
    let out = wharf(&[
        "load",
        "-q",
        "--to",
        &target.host(),
        not_a_bundle.to_str().unwrap(),
    ]);
    assert_eq!(
        hint(&out),
        "nothing was imported; copy the bundle again (its checksums are inside it) or write it anew with wharf save"
    );
}

#[test]
fn images_advice_for_a_registry_that_does_not_answer() {
    let work = tempfile::tempdir().unwrap();
    let manifest = work.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: app\n      image: registry.example/team/app:v1\n",
    )
    .unwrap();
    let closed = format!("127.0.0.1:{}", free_port());
    let out = wharf(&[
        "images",
        "--lint",
        "--registry",
        &closed,
        manifest.to_str().unwrap(),
    ]);
    assert_eq!(
        hint(&out),
        format!("cannot ask {closed}; check it answers (wharf doctor) or drop --registry")
    );
}

/// The lines of a failed copy's stderr: one `error:` per image, then the hints.
fn copy(from: &str, to: &str) -> Output {
    let out = wharf(&["copy", "-q", from, to]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    out
}

#[test]
fn copy_advice_for_a_missing_image_and_for_missing_credentials() {
    let work = tempfile::tempdir().unwrap();
    let source = Wharf::start(&work.path().join("source"));
    let target = Wharf::start(&work.path().join("target"));

    let missing = format!("{}/team/absent:v1", source.host());
    let out = copy(&missing, &target.host());
    assert_eq!(
        line_after(&out.stderr, "hint:"),
        ["check the repository and tag of each image named above: the registry has no manifest under that name"],
        "{}",
        out.describe()
    );

    let locked = locked_wharf(&work.path().join("locked"));
    let out = copy(&format!("{}/team/app:v1", locked.host()), &target.host());
    assert_eq!(
        line_after(&out.stderr, "hint:"),
        ["give credentials for that registry: --src-creds or --dest-creds USER:PASS, or log in with `podman login HOST` or `docker login HOST` (wharf reads what they write)"],
        "{}",
        out.describe()
    );
}
