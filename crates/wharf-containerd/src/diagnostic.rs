//! Lint findings: a stable code, a severity, where, what containerd will
//! actually do, and how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How bad a finding is. Ordered so that `Error` is the greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing is wrong.
    Info,
    /// Works, but not the way the author probably intended.
    Warning,
    /// containerd will not use the mirror (or will not start CRI).
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stable rule codes. Never renumber: scripts match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// The TOML does not parse.
    InvalidToml,
    /// A key under a plugin path that the file's `version` does not read.
    WrongVersionPath,
    /// A key containerd does not know (ignored).
    UnknownKey,
    /// No `config_path`.
    ConfigPathMissing,
    /// `config_path` names a directory that does not exist.
    ConfigPathNotFound,
    /// `registry.mirrors` next to `config_path`.
    MirrorsWithConfigPath,
    /// `registry.configs.<host>.tls` next to `config_path`.
    ConfigsTlsWithConfigPath,
    /// A host directory name that no pull will ever match.
    UnmatchableHostDir,
    /// A host directory without a usable `hosts.toml`.
    HostsTomlMissing,
    /// A `hosts.toml` directly in the hosts directory.
    HostsTomlAtRoot,
    /// `override_path = true` on a URL without a path beyond `/v2`.
    OverridePathWithoutPath,
    /// A mirror that cannot resolve tags (or cannot pull).
    MissingCapability,
    /// A value containerd cannot decode: the whole hosts.toml is dropped.
    InvalidValue,
    /// TLS settings on an `http://` host.
    TlsOnPlainHttp,
    /// No `server`: the fallback is implicit.
    ServerImplicit,
    /// The same host listed twice (or a namespace directory shadowed).
    DuplicateHost,
    /// `ctr` does not read the CRI `config_path`.
    CtrIgnoresConfigPath,
    /// The config `version` is invalid or not read by the target release.
    UnsupportedVersion,
    /// A host URL without a scheme.
    HostWithoutScheme,
    /// A file that could not be read (too big, binary, a directory, I/O error).
    Unreadable,
    /// The sandbox (pause) image has no registry host.
    SandboxImageNotQualified,
    /// No mirror is configured for the sandbox image's registry.
    SandboxImageNotMirrored,
    /// A hosts.toml with only `server`, which some releases ignore.
    ServerOnlyIgnored,
    /// The CRI's image snapshotter is not one the transfer service unpacks
    /// into, so every CRI pull fails (2.1+).
    UnpackPlatformMissing,
}

impl Code {
    pub const ALL: [Code; 24] = [
        Code::InvalidToml,
        Code::WrongVersionPath,
        Code::UnknownKey,
        Code::ConfigPathMissing,
        Code::ConfigPathNotFound,
        Code::MirrorsWithConfigPath,
        Code::ConfigsTlsWithConfigPath,
        Code::UnmatchableHostDir,
        Code::HostsTomlMissing,
        Code::HostsTomlAtRoot,
        Code::OverridePathWithoutPath,
        Code::MissingCapability,
        Code::InvalidValue,
        Code::TlsOnPlainHttp,
        Code::ServerImplicit,
        Code::DuplicateHost,
        Code::CtrIgnoresConfigPath,
        Code::UnsupportedVersion,
        Code::HostWithoutScheme,
        Code::Unreadable,
        Code::SandboxImageNotQualified,
        Code::SandboxImageNotMirrored,
        Code::ServerOnlyIgnored,
        Code::UnpackPlatformMissing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidToml => "WH001",
            Code::WrongVersionPath => "WH002",
            Code::UnknownKey => "WH003",
            Code::ConfigPathMissing => "WH004",
            Code::ConfigPathNotFound => "WH005",
            Code::MirrorsWithConfigPath => "WH006",
            Code::ConfigsTlsWithConfigPath => "WH007",
            Code::UnmatchableHostDir => "WH008",
            Code::HostsTomlMissing => "WH009",
            Code::HostsTomlAtRoot => "WH010",
            Code::OverridePathWithoutPath => "WH011",
            Code::MissingCapability => "WH012",
            Code::InvalidValue => "WH013",
            Code::TlsOnPlainHttp => "WH014",
            Code::ServerImplicit => "WH015",
            Code::DuplicateHost => "WH016",
            Code::CtrIgnoresConfigPath => "WH017",
            Code::UnsupportedVersion => "WH018",
            Code::HostWithoutScheme => "WH019",
            Code::Unreadable => "WH020",
            Code::SandboxImageNotQualified => "WH021",
            Code::SandboxImageNotMirrored => "WH022",
            Code::ServerOnlyIgnored => "WH023",
            Code::UnpackPlatformMissing => "WH024",
        }
    }

    /// A short kebab-case name, for people who do not memorise numbers.
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidToml => "invalid-toml",
            Code::WrongVersionPath => "wrong-version-path",
            Code::UnknownKey => "unknown-key",
            Code::ConfigPathMissing => "config-path-missing",
            Code::ConfigPathNotFound => "config-path-not-found",
            Code::MirrorsWithConfigPath => "mirrors-with-config-path",
            Code::ConfigsTlsWithConfigPath => "configs-tls-with-config-path",
            Code::UnmatchableHostDir => "unmatchable-host-dir",
            Code::HostsTomlMissing => "hosts-toml-missing",
            Code::HostsTomlAtRoot => "hosts-toml-at-root",
            Code::OverridePathWithoutPath => "override-path-without-path",
            Code::MissingCapability => "missing-capability",
            Code::InvalidValue => "invalid-value",
            Code::TlsOnPlainHttp => "tls-on-plain-http",
            Code::ServerImplicit => "server-implicit",
            Code::DuplicateHost => "duplicate-host",
            Code::CtrIgnoresConfigPath => "ctr-ignores-config-path",
            Code::UnsupportedVersion => "unsupported-version",
            Code::HostWithoutScheme => "host-without-scheme",
            Code::Unreadable => "unreadable",
            Code::SandboxImageNotQualified => "sandbox-image-not-qualified",
            Code::SandboxImageNotMirrored => "sandbox-image-not-mirrored",
            Code::ServerOnlyIgnored => "server-only-ignored",
            Code::UnpackPlatformMissing => "unpack-platform-missing",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub file: PathBuf,
    /// `None` for findings about a directory or a whole file.
    pub position: Option<Position>,
    pub message: String,
    /// What containerd will actually do with this configuration.
    pub containerd_will: String,
    pub fix: String,
    /// The offending line, captured at lint time so rendering needs no file access.
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// Start a diagnostic; the builder methods fill in the rest.
    pub fn new(code: Code, severity: Severity, file: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity,
            file: file.to_owned(),
            position: None,
            message: message.into(),
            containerd_will: String::new(),
            fix: String::new(),
            source_line: None,
        }
    }

    /// Point at a position and remember the line's text for the renderer.
    pub fn at(mut self, position: Option<Position>, text: Option<&str>) -> Self {
        self.position = position;
        self.source_line = position
            .zip(text)
            .and_then(|(p, t)| t.lines().nth(p.line - 1))
            .map(str::to_owned);
        self
    }

    pub fn containerd_will(mut self, text: impl Into<String>) -> Self {
        self.containerd_will = text.into();
        self
    }

    pub fn fix(mut self, text: impl Into<String>) -> Self {
        self.fix = text.into();
        self
    }

    pub fn line(&self) -> Option<usize> {
        self.position.map(|p| p.line)
    }

    pub fn column(&self) -> Option<usize> {
        self.position.map(|p| p.column)
    }
}

/// Whether any finding is an error (the CLI exits 1 then).
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(|d| d.severity == Severity::Error)
}

/// Sort by file, then position, then code, for stable output.
pub fn sort_diagnostics(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| (&a.file, a.position, a.code).cmp(&(&b.file, b.position, b.code)));
}
