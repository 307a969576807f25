//! Where registry credentials come from, in the order tools agree on:
//!
//! 1. explicit credentials (`--src-creds user:pass`), per registry host;
//! 2. the file given with `--authfile` ([`CredentialSources::with_authfile`]);
//! 3. `$REGISTRY_AUTH_FILE`;
//! 4. containers `auth.json`: `$XDG_RUNTIME_DIR/containers/auth.json` (or,
//!    without `XDG_RUNTIME_DIR`, `/run/containers/$UID/auth.json`, as
//!    podman falls back), then `~/.config/containers/auth.json`;
//! 5. Docker's `config.json` in `$DOCKER_CONFIG` or `~/.docker`.
//!
//! `wharf login` writes the first of 3–4 that applies
//! ([`crate::auth_file::default_path`]), so what it saved is what is read.
//!
//! Within one file: a `credHelpers` entry for the host, then `credsStore`,
//! then the `auths` entry (`auth` = base64 `user:pass`, or `identitytoken`).
//! The first file that knows the host wins.
//!
//! Docker Hub is known by several names (`docker.io`, `index.docker.io`,
//! `registry-1.docker.io`, `https://index.docker.io/v1/`); all are one host
//! here. Repository-scoped `auth.json` keys (`host/namespace`) are not used.
//!
//! Invariant: secrets never appear in `Debug` output or error messages.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::error::{Context, Error, ErrorKind, Result};

/// The key Docker stores Hub credentials under, and what helpers are asked for.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";
const DOCKER_HUB_ALIASES: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];
/// A credential helper that does not answer in this time is treated as failed.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// A secret for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (Docker's `identitytoken`), exchanged at the
    /// token realm for access tokens.
    IdentityToken(String),
}

impl Credential {
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Credential {
        Credential::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    /// `user:pass` as skopeo's `--src-creds` takes it (the password may
    /// itself contain colons).
    pub fn parse_user_pass(s: &str) -> Option<Credential> {
        let (user, pass) = s.split_once(':')?;
        (!user.is_empty()).then(|| Credential::basic(user, pass))
    }

    /// The `Authorization: Basic …` value, for Basic credentials.
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credential::IdentityToken(_) => None,
        }
    }

    pub fn username(&self) -> Option<&str> {
        match self {
            Credential::Basic { username, .. } => Some(username),
            Credential::IdentityToken(_) => None,
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// The canonical form of a registry host for credential lookups.
pub fn normalize_host(key: &str) -> String {
    let key = key.to_ascii_lowercase();
    // `https://host/v1/` (Docker's legacy keys) means `host`.
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"));
    let host = match without_scheme {
        Some(rest) => rest.split('/').next().unwrap_or(rest),
        None => key.trim_end_matches('/'),
    };
    if DOCKER_HUB_ALIASES.contains(&host) {
        "docker.io".to_string()
    } else {
        host.to_string()
    }
}

/// The server URL a credential helper is asked about.
fn helper_server_url(host: &str) -> String {
    if host == "docker.io" {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        host.to_string()
    }
}

/// Where to look, resolved once (from the environment or by a test).
#[derive(Clone, Default)]
pub struct CredentialSources {
    /// Explicit credentials by host (any alias; normalised on insert).
    explicit: HashMap<String, Credential>,
    /// Auth files in priority order; missing files are skipped.
    files: Vec<PathBuf>,
    /// `PATH` for finding `docker-credential-<name>`; the process's own
    /// when `None`.
    helper_path: Option<OsString>,
}

impl fmt::Debug for CredentialSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialSources")
            .field("explicit_hosts", &self.explicit.keys().collect::<Vec<_>>())
            .field("files", &self.files)
            .field("helper_path", &self.helper_path)
            .finish()
    }
}

impl CredentialSources {
    /// No files, no helpers: only what is added explicitly.
    pub fn none() -> CredentialSources {
        CredentialSources::default()
    }

    /// The standard files, located through the process environment.
    pub fn from_env() -> CredentialSources {
        let uid = rustix::process::geteuid().as_raw();
        CredentialSources::from_vars(|k| std::env::var_os(k), uid)
    }

    /// The standard files for user `uid`, located through `var` (testable
    /// without touching the process environment).
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>, uid: u32) -> CredentialSources {
        let var = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let mut files = Vec::new();
        files.extend(var("REGISTRY_AUTH_FILE"));
        match var("XDG_RUNTIME_DIR") {
            Some(run) => files.push(run.join("containers/auth.json")),
            None => files.push(PathBuf::from(format!("/run/containers/{uid}/auth.json"))),
        }
        let home = var("HOME");
        let config_home =
            var("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")));
        if let Some(c) = config_home {
            files.push(c.join("containers/auth.json"));
        }
        match (var("DOCKER_CONFIG"), &home) {
            (Some(d), _) => files.push(d.join("config.json")),
            (None, Some(h)) => files.push(h.join(".docker/config.json")),
            (None, None) => {}
        }
        CredentialSources {
            files,
            ..CredentialSources::default()
        }
    }

    /// `--authfile FILE`: read before every standard location.
    pub fn with_authfile(mut self, file: PathBuf) -> CredentialSources {
        self.files.insert(0, file);
        self
    }

    /// Auth files, in priority order, after those already listed.
    pub fn with_files(mut self, files: impl IntoIterator<Item = PathBuf>) -> CredentialSources {
        self.files.extend(files);
        self
    }

    /// Look for `docker-credential-<name>` helpers on this `PATH` instead
    /// of the process's.
    pub fn with_helper_path(mut self, path: impl Into<OsString>) -> CredentialSources {
        self.helper_path = Some(path.into());
        self
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Credentials given on the command line for `host`; they win over files.
    pub fn with_explicit(mut self, host: &str, credential: Credential) -> CredentialSources {
        self.explicit.insert(normalize_host(host), credential);
        self
    }
}

#[derive(Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    #[serde(default)]
    username: String,
    secret: String,
}

/// Looks credentials up on first use and remembers the answer per host
/// (helpers can be slow or ask the user to unlock a keyring).
#[derive(Clone)]
pub(crate) struct CredentialStore {
    sources: Arc<CredentialSources>,
    cache: Arc<Mutex<HashMap<String, Option<Credential>>>>,
}

impl CredentialStore {
    pub fn new(sources: CredentialSources) -> CredentialStore {
        CredentialStore {
            sources: Arc::new(sources),
            cache: Arc::default(),
        }
    }

    pub async fn lookup(&self, host: &str) -> Result<Option<Credential>> {
        let host = normalize_host(host);
        if let Some(hit) = self.cache.lock().expect("lock").get(&host) {
            return Ok(hit.clone());
        }
        let found = self.resolve(&host).await?;
        self.cache.lock().expect("lock").insert(host, found.clone());
        Ok(found)
    }

    async fn resolve(&self, host: &str) -> Result<Option<Credential>> {
        if let Some(c) = self.sources.explicit.get(host) {
            return Ok(Some(c.clone()));
        }
        for path in &self.sources.files {
            if let Some(c) = self.lookup_in_file(path, host).await? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    async fn lookup_in_file(&self, path: &Path, host: &str) -> Result<Option<Credential>> {
        let ctx = Context::new("read credentials for", host);
        let text = match tokio::fs::read(path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    &ctx,
                    format!("cannot read {}: {e}", path.display()),
                ))
            }
        };
        let file: AuthFile = serde_json::from_slice(&text).map_err(|e| {
            // serde_json's message names a position, never the content.
            Error::new(
                ErrorKind::Config,
                &ctx,
                format!("{} is not a valid auth file: {e}", path.display()),
            )
        })?;
        let helper = file
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_host(k) == host)
            .map(|(_, v)| v.clone());
        if let Some(helper) = helper {
            return self.run_helper(&helper, host, &ctx).await;
        }
        if let Some(store) = file.creds_store.as_deref().filter(|s| !s.is_empty()) {
            if let Some(c) = self.run_helper(store, host, &ctx).await? {
                return Ok(Some(c));
            }
        }
        let entry = file
            .auths
            .iter()
            .find(|(k, _)| normalize_host(k) == host)
            .map(|(_, v)| v);
        match entry {
            Some(e) => decode_entry(e, path, &ctx),
            None => Ok(None),
        }
    }

    /// `docker-credential-<name> get` with the server URL on stdin.
    async fn run_helper(
        &self,
        name: &str,
        host: &str,
        ctx: &Context,
    ) -> Result<Option<Credential>> {
        let program = format!("docker-credential-{name}");
        let fail = |msg: String| Error::new(ErrorKind::Config, ctx, msg);
        let mut cmd = tokio::process::Command::new(&program);
        cmd.arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(path) = &self.sources.helper_path {
            cmd.env("PATH", path);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("cannot run credential helper {program}: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let url = helper_server_url(host);
        // A helper that exits without reading its input is not our problem
        // here: its exit status tells.
        let _ = stdin.write_all(url.as_bytes()).await;
        drop(stdin);
        let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| fail(format!("credential helper {program} did not answer")))?
            .map_err(|e| fail(format!("credential helper {program} failed: {e}")))?;
        if !output.status.success() {
            // Helpers say "credentials not found in native keychain" on stdout.
            let said = String::from_utf8_lossy(&output.stdout);
            if said.contains("credentials not found") {
                return Ok(None);
            }
            return Err(fail(format!(
                "credential helper {program} exited with {}",
                output.status
            )));
        }
        let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
            .map_err(|_| fail(format!("credential helper {program} printed invalid JSON")))?;
        Ok(Some(if answer.username == "<token>" {
            Credential::IdentityToken(answer.secret)
        } else {
            Credential::basic(answer.username, answer.secret)
        }))
    }
}

fn decode_entry(e: &AuthEntry, path: &Path, ctx: &Context) -> Result<Option<Credential>> {
    if let Some(token) = e.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken(token.to_string())));
    }
    if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
        let bad = || {
            Error::new(
                ErrorKind::Config,
                ctx,
                format!(
                    "the auth entry in {} is not base64 user:password",
                    path.display()
                ),
            )
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        return Credential::parse_user_pass(&text).map(Some).ok_or_else(bad);
    }
    match (&e.username, &e.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credential::basic(u, p))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_aliases_are_one_host() {
        for k in [
            "docker.io",
            "index.docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
            "HTTPS://Index.Docker.io/v1/",
        ] {
            let k = k.to_lowercase();
            assert_eq!(normalize_host(&k), "docker.io", "{k}");
        }
        assert_eq!(
            normalize_host("https://r.example:5000/v2/"),
            "r.example:5000"
        );
        assert_eq!(normalize_host("r.example:5000"), "r.example:5000");
        assert_eq!(helper_server_url("docker.io"), DOCKER_HUB_AUTH_KEY);
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = Credential::basic("alice", "hunter2");
        let t = Credential::IdentityToken("refresh-secret".into());
        let printed = format!("{c:?} {t:?}");
        assert!(printed.contains("alice"));
        assert!(!printed.contains("hunter2") && !printed.contains("refresh-secret"));
        let s = CredentialSources::none().with_explicit("r", c);
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn user_pass_parsing() {
        assert_eq!(
            Credential::parse_user_pass("u:p:q"),
            Some(Credential::basic("u", "p:q"))
        );
        assert_eq!(Credential::parse_user_pass("nopass"), None);
        assert_eq!(Credential::parse_user_pass(":p"), None);
    }

    #[test]
    fn file_order_from_environment() {
        let vars: HashMap<&str, &str> = [
            ("REGISTRY_AUTH_FILE", "/a/auth.json"),
            ("XDG_RUNTIME_DIR", "/run/user/1"),
            ("HOME", "/home/u"),
            ("DOCKER_CONFIG", ""),
        ]
        .into();
        let s = CredentialSources::from_vars(|k| vars.get(k).map(OsString::from), 1)
            .with_authfile("/given.json".into());
        let files: Vec<_> = s.files().iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            files,
            [
                "/given.json",
                "/a/auth.json",
                "/run/user/1/containers/auth.json",
                "/home/u/.config/containers/auth.json",
                "/home/u/.docker/config.json",
            ]
        );
        let without_runtime_dir = CredentialSources::from_vars(
            |k| (k == "HOME").then(|| OsString::from("/home/u")),
            1000,
        );
        assert_eq!(
            without_runtime_dir.files()[0],
            PathBuf::from("/run/containers/1000/auth.json"),
            "podman's fallback when XDG_RUNTIME_DIR is unset"
        );
    }

    #[tokio::test]
    async fn auth_file_entries() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"dTpwOnE="},
                "tokens.example":{"auth":"","identitytoken":"refresh"},
                "plain.example":{"username":"a","password":"b"},
                "broken.example":{"auth":"***"}
            }}"#,
        )
        .unwrap();
        let store = CredentialStore::new(CredentialSources::none().with_files([file]));
        assert_eq!(
            store.lookup("registry-1.docker.io").await.unwrap(),
            Some(Credential::basic("u", "p:q"))
        );
        assert_eq!(
            store.lookup("tokens.example").await.unwrap(),
            Some(Credential::IdentityToken("refresh".into()))
        );
        assert_eq!(
            store.lookup("plain.example").await.unwrap(),
            Some(Credential::basic("a", "b"))
        );
        assert_eq!(store.lookup("unknown.example").await.unwrap(), None);
        let err = store.lookup("broken.example").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(!err.to_string().contains("***"));
    }

    #[tokio::test]
    async fn explicit_credentials_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        std::fs::write(&file, r#"{"auths":{"r.example":{"auth":"dTpw"}}}"#).unwrap();
        let sources = CredentialSources::none()
            .with_files([file])
            .with_explicit("r.example", Credential::basic("cli", "x"));
        let store = CredentialStore::new(sources);
        assert_eq!(
            store.lookup("r.example").await.unwrap(),
            Some(Credential::basic("cli", "x"))
        );
    }
}
