//! Real clients against `wharf serve` with authentication: `skopeo login`
//! and `skopeo copy` with Basic and with token auth, `podman login`, push
//! and pull with token auth, and an anonymous pull pattern that never lets
//! an anonymous client push. Users are created with `wharf auth htpasswd`.

mod common;

use common::cli::wharf_htpasswd;
use common::server::Wharf;
use std::path::{Path, PathBuf};
use wharf_testkit::digest_hex;
use wharf_testkit::image::{self, host_arch, write_dir_transport, Artifact, Format};
use wharf_testkit::tools::{podman, require_root, run, run_unchecked, skopeo, Output};

use tempfile::TempDir;

const CI_PASSWORD: &str = "ci-Pa55word";
const READER_PASSWORD: &str = "reader-Pa55word";

/// `wharf auth htpasswd FILE USER` with the password on stdin.
fn add_user(file: &Path, user: &str, password: &str) {
    let out = wharf_htpasswd(file, user, password);
    assert!(
        out.status.success(),
        "wharf auth htpasswd failed: {}",
        out.describe()
    );
}

struct Fixture {
    work: TempDir,
    wharf: Wharf,
    artifact: Artifact,
    source: PathBuf,
}

impl Fixture {
    /// `mode`: "basic" or "token". `ci` may push and pull everything,
    /// `reader` only pull; anonymous clients may pull `public/**`.
    fn new(mode: &str) -> Fixture {
        let work = tempfile::tempdir().expect("temp dir");
        let htpasswd = work.path().join("htpasswd");
        add_user(&htpasswd, "ci", CI_PASSWORD);
        add_user(&htpasswd, "reader", READER_PASSWORD);
        let mode_keys = if mode == "token" {
            format!(
                "token_key = {:?}\ntoken_ttl = \"5m\"\nservice = \"wharf-e2e\"\n",
                work.path().join("token-key.pem")
            )
        } else {
            String::new()
        };
        let config = format!(
            "[auth]\nmode = \"{mode}\"\nhtpasswd = {htpasswd:?}\n{mode_keys}\n\
             [[access]]\nrepos = \"**\"\nusers = [\"ci\"]\nactions = [\"pull\", \"push\", \"delete\"]\n\n\
             [[access]]\nrepos = \"**\"\nusers = [\"reader\"]\nactions = [\"pull\"]\n\n\
             [[access]]\nrepos = \"public/**\"\nusers = [\"anonymous\"]\nactions = [\"pull\", \"push\"]\n"
        );
        let wharf = Wharf::start_with_config_text(&work.path().join("wharf"), &config);
        let artifact = image::image(Format::Oci, &format!("auth-{mode}"), host_arch());
        let source = work.path().join("source");
        write_dir_transport(&artifact, &source);
        Fixture {
            work,
            wharf,
            artifact,
            source,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn docker_ref(&self, repo_ref: &str) -> String {
        format!("docker://{}/{repo_ref}", self.wharf.host())
    }

    fn authfile(&self, user: &str) -> PathBuf {
        self.path(&format!("auth-{user}.json"))
    }

    fn skopeo_login(&self, user: &str, password: &str) {
        run(
            skopeo()
                .args(["login", "--tls-verify=false", "--authfile"])
                .arg(self.authfile(user))
                .args(["-u", user, "-p", password])
                .arg(self.wharf.host()),
            &format!("skopeo login as {user}"),
        );
    }

    fn push(&self, user: Option<&str>, repo_ref: &str) -> Output {
        let mut cmd = skopeo();
        cmd.args(["copy", "--dest-tls-verify=false", "--preserve-digests"]);
        match user {
            Some(u) => cmd.arg("--authfile").arg(self.authfile(u)),
            None => cmd.arg("--dest-no-creds"),
        };
        cmd.arg(format!("dir:{}", self.source.display()))
            .arg(self.docker_ref(repo_ref));
        run_unchecked(&mut cmd)
    }

    /// `skopeo copy` from the registry into a `dir:` and the config digest
    /// it got.
    fn pull(&self, user: Option<&str>, repo_ref: &str, into: &str) -> Output {
        let mut cmd = skopeo();
        cmd.args(["copy", "--src-tls-verify=false"]);
        match user {
            Some(u) => cmd.arg("--authfile").arg(self.authfile(u)),
            None => cmd.arg("--src-no-creds"),
        };
        cmd.arg(self.docker_ref(repo_ref))
            .arg(format!("dir:{}", self.path(into).display()));
        run_unchecked(&mut cmd)
    }

    /// Every blob of the pushed image arrived byte for byte in `dir`.
    fn assert_pulled(&self, dir: &str) {
        for blob in self.artifact.all_blobs() {
            let path = self.path(dir).join(digest_hex(&blob.digest().to_string()));
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("pulled blob {} missing: {e}", path.display()));
            assert_eq!(bytes, blob.bytes, "blob {} differs", blob.digest());
        }
    }
}

fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed:\n{}", out.describe());
}

fn assert_refused(out: &Output, what: &str) {
    assert!(
        !out.status.success(),
        "{what} must be refused:\n{}",
        out.describe()
    );
    let text = out.stderr.to_lowercase();
    assert!(
        text.contains("unauthorized")
            || text.contains("denied")
            || text.contains("authentication required"),
        "{what} failed for another reason than authorisation:\n{}",
        out.describe()
    );
}

fn skopeo_round_trip(mode: &str) {
    let f = Fixture::new(mode);
    f.skopeo_login("ci", CI_PASSWORD);
    f.skopeo_login("reader", READER_PASSWORD);
    assert_ok(&f.push(Some("ci"), "e2e/app:v1"), "ci pushes");
    assert_ok(
        &f.pull(Some("reader"), "e2e/app:v1", "pulled"),
        "reader pulls",
    );
    f.assert_pulled("pulled");
    assert_refused(&f.push(Some("reader"), "e2e/app:v2"), "reader pushes");
    assert_refused(&f.push(None, "e2e/app:v3"), "an anonymous push");
    assert_refused(
        &f.pull(None, "e2e/app:v1", "anonymous-private"),
        "an anonymous pull outside public/**",
    );

    assert_ok(
        &f.push(Some("ci"), "public/app:v1"),
        "ci pushes to public/**",
    );
    assert_ok(
        &f.pull(None, "public/app:v1", "anonymous-public"),
        "an anonymous pull of public/**",
    );
    f.assert_pulled("anonymous-public");
    assert_refused(
        &f.push(None, "public/app:v2"),
        "an anonymous push to public/**, although a rule names push",
    );
    let log = std::fs::read_to_string(f.path("wharf").join("wharf-1.log")).unwrap();
    assert!(
        log.contains("wharf::audit") && log.contains("push-manifest"),
        "pushes are audited:\n{log}"
    );
    for secret in [CI_PASSWORD, READER_PASSWORD] {
        assert!(!log.contains(secret), "a password reached the server log");
    }
}

#[test]
fn skopeo_login_push_and_pull_with_basic_auth() {
    skopeo_round_trip("basic");
}

#[test]
fn skopeo_login_push_and_pull_with_token_auth() {
    skopeo_round_trip("token");
}

#[test]
fn podman_login_push_and_pull_with_token_auth() {
    require_root("podman with its own storage root");
    let f = Fixture::new("token");
    f.skopeo_login("ci", CI_PASSWORD);
    assert_ok(&f.push(Some("ci"), "e2e/podman:v1"), "seeding with skopeo");
    let dir = f.path("podman");
    std::fs::create_dir_all(&dir).unwrap();
    let authfile = f.path("podman-auth.json");
    let source = format!("{}/e2e/podman:v1", f.wharf.host());

    let anonymous = run_unchecked(podman(&dir).args(["pull", "--tls-verify=false", &source]));
    assert_refused(&anonymous, "podman pull without login");
    run(
        podman(&dir)
            .args(["login", "--tls-verify=false", "--authfile"])
            .arg(&authfile)
            .args(["-u", "ci", "-p", CI_PASSWORD])
            .arg(f.wharf.host()),
        "podman login",
    );
    let pulled = run(
        podman(&dir)
            .args(["pull", "--tls-verify=false", "--authfile"])
            .arg(&authfile)
            .arg(&source),
        "podman pull after login",
    );
    let config_hex = digest_hex(&f.artifact.config().digest().to_string()).to_owned();
    assert!(
        pulled.stdout.contains(&config_hex),
        "podman pulled another image:\n{}",
        pulled.describe()
    );
    let target = format!("{}/e2e/podman-pushed:v2", f.wharf.host());
    run(
        podman(&dir)
            .args(["push", "--tls-verify=false", "--authfile"])
            .arg(&authfile)
            .arg(&source)
            .arg(format!("docker://{target}")),
        "podman push after login",
    );
    f.skopeo_login("reader", READER_PASSWORD);
    assert_ok(
        &f.pull(Some("reader"), "e2e/podman-pushed:v2", "from-podman"),
        "reading back what podman pushed",
    );
    let config = std::fs::read(f.path("from-podman").join(&config_hex))
        .expect("the pushed image has the original config");
    assert_eq!(config, f.artifact.config().bytes);
}
