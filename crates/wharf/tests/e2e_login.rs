//! `wharf login` / `wharf logout` against a `wharf serve` with htpasswd
//! users, with the real clients that share the file: what wharf writes,
//! podman and skopeo read; what podman writes, wharf reads. A refused
//! password saves nothing; logout removes only its registry's entry.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::cli::wharf_htpasswd;
use common::server::Wharf;
use serde_json::Value;
use tempfile::TempDir;
use wharf_testkit::digest_hex;
use wharf_testkit::image::{self, host_arch, write_dir_transport, Artifact, Format};
use wharf_testkit::tools::{
    podman, require_root, run, run_unchecked, run_with_stdin, skopeo, Output,
};

const PASSWORD: &str = "ci-Pa55word";

struct Fixture {
    work: TempDir,
    wharf: Wharf,
    artifact: Artifact,
}

impl Fixture {
    /// A registry where `ci` may do anything and nobody else anything,
    /// with `mode` "basic" or "token" authentication.
    fn new(mode: &str) -> Fixture {
        let work = tempfile::tempdir().expect("temp dir");
        let htpasswd = work.path().join("htpasswd");
        let added = wharf_htpasswd(&htpasswd, "ci", PASSWORD);
        assert!(added.status.success(), "{}", added.describe());
        let token = if mode == "token" {
            format!(
                "token_key = {:?}\nservice = \"wharf-login\"\n",
                work.path().join("token-key.pem")
            )
        } else {
            String::new()
        };
        let config = format!(
            "[auth]\nmode = \"{mode}\"\nhtpasswd = {htpasswd:?}\n{token}\n\
             [[access]]\nrepos = \"**\"\nusers = [\"ci\"]\nactions = [\"pull\", \"push\", \"delete\"]\n"
        );
        let wharf = Wharf::start_with_config_text(&work.path().join("wharf"), &config);
        let artifact = image::image(Format::Oci, &format!("login-{mode}"), host_arch());
        Fixture {
            work,
            wharf,
            artifact,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// `wharf login -u ci --password-stdin HOST` with `password` on stdin.
    fn login(&self, authfile: Option<&Path>, password: &str, env: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.args(["login", "-u", "ci", "--password-stdin"]);
        if let Some(file) = authfile {
            cmd.arg("--authfile").arg(file);
        }
        cmd.arg(self.wharf.host());
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_with_stdin(&mut cmd, Some(format!("{password}\n").as_bytes()))
    }

    /// `skopeo copy` of the test image into `repo_ref` with `authfile`.
    fn push_with_skopeo(&self, authfile: &Path, repo_ref: &str) -> Output {
        let source = self.path("source");
        if !source.exists() {
            write_dir_transport(&self.artifact, &source);
        }
        run_unchecked(
            skopeo()
                .args([
                    "copy",
                    "--dest-tls-verify=false",
                    "--preserve-digests",
                    "--authfile",
                ])
                .arg(authfile)
                .arg(format!("dir:{}", source.display()))
                .arg(format!("docker://{}/{repo_ref}", self.wharf.host())),
        )
    }
}

fn auth_entries(file: &Path) -> Value {
    let text = std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    serde_json::from_slice::<Value>(&text).expect("auth.json is JSON")["auths"].clone()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed:\n{}", out.describe());
}

#[test]
fn podman_and_skopeo_use_what_wharf_login_wrote() {
    require_root("podman with its own storage root");
    let f = Fixture::new("token");
    let authfile = f.path("auth.json");
    std::fs::write(
        &authfile,
        r#"{"auths":{"elsewhere.example":{"auth":"eDp5"}}}"#,
    )
    .unwrap();
    let login = f.login(Some(&authfile), PASSWORD, &[]);
    assert_ok(&login, "wharf login");
    assert!(
        login.stderr.contains("login succeeded"),
        "{}",
        login.describe()
    );
    assert!(!login.stderr.contains(PASSWORD) && !login.stdout.contains(PASSWORD));
    let mode = std::fs::metadata(&authfile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "auth.json is private");
    let entries = auth_entries(&authfile);
    assert_eq!(
        entries["elsewhere.example"]["auth"], "eDp5",
        "other entries kept"
    );
    assert!(entries[f.wharf.host()]["auth"].is_string(), "{entries}");

    assert_ok(
        &f.push_with_skopeo(&authfile, "e2e/app:v1"),
        "skopeo copy with wharf's auth.json",
    );
    let inspected = run(
        skopeo()
            .args(["inspect", "--tls-verify=false", "--authfile"])
            .arg(&authfile)
            .arg(format!("docker://{}/e2e/app:v1", f.wharf.host())),
        "skopeo inspect with wharf's auth.json",
    );
    assert!(
        inspected.stdout.contains("\"Digest\""),
        "{}",
        inspected.describe()
    );

    let dir = f.path("podman");
    std::fs::create_dir_all(&dir).unwrap();
    let pulled = run(
        podman(&dir)
            .args(["pull", "--tls-verify=false", "--authfile"])
            .arg(&authfile)
            .arg(format!("{}/e2e/app:v1", f.wharf.host())),
        "podman pull with wharf's auth.json",
    );
    let config_hex = digest_hex(&f.artifact.config().digest().to_string()).to_owned();
    assert!(pulled.stdout.contains(&config_hex), "{}", pulled.describe());
}

#[test]
fn a_refused_password_exits_1_and_saves_nothing() {
    for mode in ["basic", "token"] {
        let f = Fixture::new(mode);
        let authfile = f.path("auth.json");
        let before = r#"{"auths":{"elsewhere.example":{"auth":"eDp5"}}}"#;
        std::fs::write(&authfile, before).unwrap();
        let out = f.login(Some(&authfile), "wrong-password", &[]);
        assert_eq!(out.status.code(), Some(1), "{mode}: {}", out.describe());
        assert!(
            out.stderr.contains("refused the credentials"),
            "{mode}: {}",
            out.describe()
        );
        assert!(
            out.stderr
                .contains("hint: check the user name and password; nothing was saved"),
            "{mode}: {}",
            out.describe()
        );
        assert!(!out.stderr.contains("wrong-password"));
        assert_eq!(std::fs::read_to_string(&authfile).unwrap(), before);

        let missing = f.path("never-written.json");
        let out = f.login(Some(&missing), "wrong-password", &[]);
        assert_eq!(out.status.code(), Some(1), "{mode}: {}", out.describe());
        assert!(!missing.exists(), "{mode}: a refused login creates no file");
    }
}

#[test]
fn wharf_reads_what_podman_login_wrote() {
    require_root("podman with its own storage root");
    let f = Fixture::new("token");
    let dir = f.path("podman");
    std::fs::create_dir_all(&dir).unwrap();
    let authfile = f.path("podman-auth.json");
    run(
        podman(&dir)
            .args(["login", "--tls-verify=false", "--authfile"])
            .arg(&authfile)
            .args(["-u", "ci", "-p", PASSWORD])
            .arg(f.wharf.host()),
        "podman login",
    );
    assert_ok(&f.push_with_skopeo(&authfile, "e2e/app:v1"), "seeding");
    let open = Wharf::start(&f.path("open"));
    let copy = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.args(["copy", "-q"])
            .arg(format!("{}/e2e/app:v1", f.wharf.host()))
            .arg(open.host())
            .args(extra)
            // No credentials from this machine's own files.
            .env("HOME", f.path("home"))
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG");
        run_unchecked(&mut cmd)
    };
    let anonymous = copy(&[]);
    assert_eq!(anonymous.status.code(), Some(1), "{}", anonymous.describe());
    let authfile = authfile.to_string_lossy().into_owned();
    assert_ok(&copy(&["--authfile", &authfile]), "wharf copy --authfile");
    let with_env = {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.args(["copy", "-q"])
            .arg(format!("{}/e2e/app:v1", f.wharf.host()))
            .arg(format!("{}/again/app:v1", open.host()))
            .env("HOME", f.path("home"))
            .env("REGISTRY_AUTH_FILE", &authfile);
        run_unchecked(&mut cmd)
    };
    assert_ok(&with_env, "wharf copy with REGISTRY_AUTH_FILE");
}

#[test]
fn login_without_authfile_writes_where_podman_looks_and_logout_removes_it() {
    let f = Fixture::new("basic");
    let runtime_dir = f.path("run");
    std::fs::create_dir_all(&runtime_dir).unwrap();
    let env = [("XDG_RUNTIME_DIR", runtime_dir.as_path())];
    let login = f.login(None, PASSWORD, &env);
    assert_ok(&login, "wharf login");
    let authfile = runtime_dir.join("containers/auth.json");
    assert!(auth_entries(&authfile)[f.wharf.host()].is_object());

    // Another registry's entry must survive the logout.
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&authfile).unwrap()).unwrap();
    doc["auths"]["elsewhere.example"] = serde_json::json!({"auth": "eDp5"});
    std::fs::write(&authfile, serde_json::to_vec(&doc).unwrap()).unwrap();

    let logout = |host: &str| {
        run_unchecked(
            Command::new(env!("CARGO_BIN_EXE_wharf"))
                .args(["logout", host])
                .env("XDG_RUNTIME_DIR", &runtime_dir),
        )
    };
    assert_ok(&logout(&f.wharf.host()), "wharf logout");
    let entries = auth_entries(&authfile);
    assert!(entries.get(f.wharf.host()).is_none(), "{entries}");
    assert_eq!(entries["elsewhere.example"]["auth"], "eDp5");

    let again = logout(&f.wharf.host());
    assert_eq!(again.status.code(), Some(1), "{}", again.describe());
    assert!(
        again.stderr.contains("not logged in to"),
        "{}",
        again.describe()
    );
    assert!(again.stderr.contains("hint:"), "{}", again.describe());
}
