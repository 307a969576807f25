//! Lint of containerd registry configuration: config.toml, a hosts
//! directory, or both together. Lint never writes and never uses the network;
//! [`OnlineCheck`] is the hook for checks that need to talk to a mirror.

mod config;
mod hosts_dir;
mod hosts_file;
mod support;

use std::path::{Path, PathBuf};

use crate::diagnostic::{sort_diagnostics, Code, Diagnostic, Position, Severity};
use crate::source::read_text_file;
use crate::version::ContainerdRelease;

/// One `[host."<url>"]` entry, handed to online checks.
#[derive(Debug, Clone)]
pub struct HostEntry<'a> {
    /// The hosts.toml that declares it.
    pub file: &'a Path,
    /// Its namespace directory name (`docker.io`, `host:5000`, `_default`).
    pub namespace_dir: &'a str,
    /// The URL exactly as written in the file.
    pub url: &'a str,
    pub override_path: bool,
    pub skip_verify: bool,
    /// Where the `[host."<url>"]` key is.
    pub position: Option<Position>,
    /// The text of that line, for diagnostics.
    pub source_line: Option<&'a str>,
}

/// A check that may contact the mirror (e.g. probe `GET <url>/v2/` to
/// confirm or refute `override_path`). Offline lint runs none.
pub trait OnlineCheck {
    fn check_host(&self, host: &HostEntry<'_>) -> Vec<Diagnostic>;
}

/// Lint settings. `Linter::default()` lints offline for any containerd release.
#[derive(Default)]
pub struct Linter {
    containerd: Option<ContainerdRelease>,
    online: Vec<Box<dyn OnlineCheck>>,
}

impl Linter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Judge release-specific behaviour for this release instead of
    /// describing every release.
    pub fn with_containerd(mut self, release: ContainerdRelease) -> Self {
        self.containerd = Some(release);
        self
    }

    pub fn with_online_check(mut self, check: Box<dyn OnlineCheck>) -> Self {
        self.online.push(check);
        self
    }

    /// Lint config.toml text. `path` is used for reporting and to resolve nothing else.
    pub fn lint_config(&self, path: &Path, text: &str) -> Vec<Diagnostic> {
        let mut diagnostics = config::lint_config_text(path, text, self.containerd).diagnostics;
        sort_diagnostics(&mut diagnostics);
        diagnostics
    }

    /// Read (with size and encoding limits) and lint a config.toml.
    pub fn lint_config_file(&self, path: &Path) -> Vec<Diagnostic> {
        self.lint_config_file_inner(path).0
    }

    fn lint_config_file_inner(&self, path: &Path) -> (Vec<Diagnostic>, Option<String>) {
        let (diagnostics, config_path, _) = self.lint_config_file_full(path);
        (diagnostics, config_path)
    }

    #[allow(clippy::type_complexity)]
    fn lint_config_file_full(
        &self,
        path: &Path,
    ) -> (
        Vec<Diagnostic>,
        Option<String>,
        Option<(String, Option<Position>)>,
    ) {
        match read_text_file(path) {
            Ok(text) => {
                let found = config::lint_config_text(path, &text, self.containerd);
                let mut diagnostics = found.diagnostics;
                sort_diagnostics(&mut diagnostics);
                (diagnostics, found.config_path, found.sandbox)
            }
            Err(e) => (
                vec![unreadable(path, &e.to_string(), "config.toml")],
                None,
                None,
            ),
        }
    }

    /// Lint a hosts directory (the `config_path` directory).
    pub fn lint_hosts_dir(&self, dir: &Path) -> Vec<Diagnostic> {
        let mut diagnostics = hosts_dir::lint_dir(dir, self);
        sort_diagnostics(&mut diagnostics);
        diagnostics
    }

    /// Lint one hosts.toml text found in namespace directory `namespace_dir`.
    pub fn lint_hosts_file(&self, path: &Path, namespace_dir: &str, text: &str) -> Vec<Diagnostic> {
        let mut diagnostics = hosts_file::lint_hosts_text(path, namespace_dir, text, self);
        sort_diagnostics(&mut diagnostics);
        diagnostics
    }

    /// Lint a config.toml and the hosts directories it names (or
    /// `hosts_dir` instead, when given).
    pub fn lint_setup(&self, config_file: &Path, hosts_dir: Option<&Path>) -> Vec<Diagnostic> {
        let (mut diagnostics, config_path, sandbox) = self.lint_config_file_full(config_file);
        let roots = hosts_dir
            .map(|d| d.display().to_string())
            .or_else(|| config_path.clone());
        if let (Some(roots), Some((image, position))) = (&roots, &sandbox) {
            diagnostics.extend(sandbox_not_mirrored(config_file, roots, image, *position));
        }
        let dirs: Vec<PathBuf> = match (hosts_dir, config_path) {
            (Some(dir), _) => vec![dir.to_owned()],
            // Missing directories were already reported against config_path.
            (None, Some(paths)) => paths
                .split(':')
                .map(PathBuf::from)
                .filter(|p| p.is_dir())
                .collect(),
            (None, None) => Vec::new(),
        };
        for dir in dirs {
            diagnostics.extend(self.lint_hosts_dir(&dir));
        }
        diagnostics
    }
}

/// Lint config.toml text for any containerd release.
pub fn lint_config(path: &Path, text: &str) -> Vec<Diagnostic> {
    Linter::default().lint_config(path, text)
}

/// Lint a hosts directory for any containerd release.
pub fn lint_hosts_dir(dir: &Path) -> Vec<Diagnostic> {
    Linter::default().lint_hosts_dir(dir)
}

/// Lint a config.toml plus the hosts directory its `config_path` names.
pub fn lint_setup(config_file: &Path, hosts_dir: Option<&Path>) -> Vec<Diagnostic> {
    Linter::default().lint_setup(config_file, hosts_dir)
}

/// The `config_path` a config.toml sets for its own version, if any.
pub fn config_path_of(text: &str) -> Option<String> {
    config::lint_config_text(Path::new("config.toml"), text, None).config_path
}

/// The sandbox image's registry has no mirror under the hosts directory:
/// every pod start pulls it from the registry itself.
fn sandbox_not_mirrored(
    config_file: &Path,
    roots: &str,
    image: &str,
    position: Option<Position>,
) -> Option<Diagnostic> {
    let reference: wharf_oci::Reference = image.parse().ok()?;
    let registry = reference.host();
    let resolution = crate::view::resolve_registry_hosts(Some(roots), registry);
    let mirrored = resolution
        .hosts
        .iter()
        .any(|h| h.is_proxy_for(registry) && h.has(crate::mirror::Capability::Pull));
    if mirrored {
        return None;
    }
    Some(
        Diagnostic::new(
            Code::SandboxImageNotMirrored,
            Severity::Warning,
            config_file,
            format!("no mirror serves the sandbox image {image}: no hosts.toml for {registry} under {roots}"),
        )
        .at(position, None)
        .containerd_will(format!(
            "pull {image} from {registry} itself before every first pod on a node; without internet no pod starts"
        ))
        .fix(format!(
            "copy {image} to the mirror and write its hosts.toml: `wharf containerd hosts {registry} --mirror <URL> --out {}`",
            roots.split(':').next().unwrap_or(roots)
        )),
    )
}

fn unreadable(path: &Path, reason: &str, what: &str) -> Diagnostic {
    Diagnostic::new(Code::Unreadable, Severity::Error, path, reason.to_owned())
        .containerd_will(format!(
            "fail the same way when it reads this {what}, or read something that is not a {what}"
        ))
        .fix(format!("point wharf (and containerd) at the real {what}"))
}
