//! The report: what containerd would try, what each layer did on each host,
//! and the verdict. Serialised as JSON with a format version; fields are
//! only ever added.

use std::path::PathBuf;

use serde::Serialize;

/// Bumped when a field changes meaning or disappears (never for additions).
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// The layers a pull crosses, in the order they are tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// containerd's own configuration: a section it ignores, a file that
    /// differs from what it loaded, a hosts.toml it cannot use.
    Config,
    Dns,
    Tcp,
    Tls,
    /// `GET /v2/` (and the token dance it asks for).
    Api,
    Manifest,
    Blob,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Config => "config",
            Layer::Dns => "dns",
            Layer::Tcp => "tcp",
            Layer::Tls => "tls",
            Layer::Api => "api",
            Layer::Manifest => "manifest",
            Layer::Blob => "blob",
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Ok,
    Failed,
    Skipped,
}

/// What exactly went wrong, for scripts and for choosing the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    NameNotResolved {
        name: String,
    },
    ConnectionRefused {
        addr: String,
    },
    ConnectTimeout {
        addr: String,
    },
    Unreachable {
        addr: String,
    },
    CertificateUnknownIssuer,
    CertificateNameMismatch {
        expected: String,
        presented: Vec<String>,
    },
    CertificateExpired,
    CertificateNotYetValid,
    CertificateInvalid {
        reason: String,
    },
    /// The server answered the TLS handshake with plain HTTP.
    NotTls,
    TlsHandshake {
        reason: String,
    },
    ClientCertificate {
        reason: String,
    },
    Timeout,
    HttpStatus {
        status: u16,
    },
    /// The registry wants credentials the doctor does not have.
    AuthRequired {
        scheme: String,
    },
    TokenFailed {
        realm: String,
        reason: String,
    },
    ManifestNotFound,
    PlatformMissing {
        wanted: String,
        available: Vec<String>,
    },
    BadManifest {
        reason: String,
    },
    BlobNotFound {
        digest: String,
    },
    /// A redirect to an address this node cannot reach.
    RedirectUnreachable {
        location: String,
        addr: String,
        reason: String,
    },
    TooManyRedirects,
    Protocol {
        reason: String,
    },
}

/// One layer tested on one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub layer: Layer,
    pub status: StepStatus,
    /// What was tested: an address, a request, a digest.
    pub target: String,
    /// A short detail when ok, the reason when failed.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    /// The error text containerd would log for this failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containerd_error: Option<String>,
}

impl Step {
    pub fn ok(layer: Layer, target: impl Into<String>, detail: impl Into<String>) -> Step {
        Step {
            layer,
            status: StepStatus::Ok,
            target: target.into(),
            detail: detail.into(),
            elapsed_ms: None,
            problem: None,
            containerd_error: None,
        }
    }

    pub fn failed(
        layer: Layer,
        target: impl Into<String>,
        detail: impl Into<String>,
        problem: Problem,
    ) -> Step {
        Step {
            status: StepStatus::Failed,
            problem: Some(problem),
            ..Step::ok(layer, target, detail)
        }
    }

    pub fn skipped(layer: Layer, target: impl Into<String>, detail: impl Into<String>) -> Step {
        Step {
            status: StepStatus::Skipped,
            ..Step::ok(layer, target, detail)
        }
    }

    pub fn timed(mut self, elapsed: std::time::Duration) -> Step {
        self.elapsed_ms = Some(elapsed.as_secs_f64() * 1000.0);
        self
    }

    pub fn with_containerd_error(mut self, text: impl Into<String>) -> Step {
        self.containerd_error = Some(text.into());
        self
    }

    pub fn is_failed(&self) -> bool {
        self.status == StepStatus::Failed
    }
}

/// Where a host in the list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostRole {
    /// A `[host."<url>"]` entry of hosts.toml.
    Mirror,
    /// The `server` of hosts.toml.
    Server,
    /// The registry named in the image (no `server`, or no hosts.toml).
    Upstream,
}

/// One host, in the order containerd tries them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostReport {
    /// `scheme://host/api-root`.
    pub url: String,
    pub role: HostRole,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub capabilities: Vec<String>,
    pub override_path: bool,
    pub skip_verify: bool,
    /// The `?ns=` value containerd adds to this host's requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns: Option<String>,
    /// Why the host was not tested (an earlier host serves the pull).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_tested: Option<String>,
    pub steps: Vec<Step>,
}

impl HostReport {
    /// The first failed step: the layer that broke on this host.
    pub fn first_failure(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.is_failed())
    }
}

/// What the node's containerd configuration says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerdSetup {
    pub config_file: PathBuf,
    pub config_found: bool,
    /// The config.toml `version` (1 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_version: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
    /// The hosts directory roots searched, and where they came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts_dir: Option<String>,
    pub hosts_dir_source: HostsDirSource,
    /// The namespace directory that applies (`<root>/<registry>` or `_default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts_file: Option<PathBuf>,
    /// Why a hosts.toml in the namespace directory is not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts_file_problem: Option<String>,
    /// Whether the running containerd was asked, or its release modelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<crate::runtime::RuntimeSource>,
    /// The sandbox (pause) image the CRI uses for every pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_image_source: Option<String>,
    /// Whether the runtime holds it (only known when asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_image_present: Option<bool>,
    /// When it is missing: whether pulling it would succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_pull_would_succeed: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostsDirSource {
    /// `--hosts-dir` (what `ctr --hosts-dir` would use).
    Flag,
    /// The CRI `config_path` of config.toml.
    ConfigPath,
    /// Neither: containerd pulls from the registry itself.
    None,
}

/// One host that broke, the layer, and what to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub url: String,
    pub layer: Layer,
    pub reason: String,
    pub fix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub would_succeed: bool,
    /// The host that serves the image (manifest and blobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// The digest the reference resolved to, on the first host that resolved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Every tested host that broke, in containerd's order; the first is
    /// the one to fix.
    pub failures: Vec<Failure>,
    /// The error containerd would report for the pull (when it fails).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containerd_error: Option<String>,
    pub notes: Vec<String>,
}

impl Verdict {
    /// The failure to fix first.
    pub fn primary(&self) -> Option<&Failure> {
        self.failures.first()
    }
}

/// The whole answer to "why can this node not pull IMAGE?".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub version: u32,
    /// The normalised reference (`docker.io/library/alpine:latest`).
    pub image: String,
    pub platform: String,
    pub containerd: ContainerdSetup,
    pub hosts: Vec<HostReport>,
    pub verdict: Verdict,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serialises")
    }
}
