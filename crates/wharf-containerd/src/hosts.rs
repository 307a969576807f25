//! Generation of `<config_path>/<namespace>/hosts.toml` files.
//!
//! The keys written here are the ones containerd's `hostFileConfig` decodes
//! (1.6–2.3, `remotes/docker/config/hosts.go`); keys that only some releases
//! know (`dial_timeout`, the `referrers` capability) are only written when
//! the target release is known to support them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::mirror::{is_go_duration, Capability, MirrorUrl, Scheme};
use crate::names::Namespace;
use crate::version::ContainerdRelease;

/// A client certificate, optionally with its key in a separate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: String,
    pub key: Option<String>,
}

/// One `[host."<url>"]` entry: a mirror and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    pub url: MirrorUrl,
    pub capabilities: Vec<Capability>,
    pub skip_verify: bool,
    /// CA certificate files (absolute, or relative to the hosts.toml).
    pub ca: Vec<String>,
    pub client: Vec<ClientCert>,
    /// Extra HTTP headers, in the order given.
    pub headers: Vec<(String, Vec<String>)>,
    /// Go duration such as `"1s"`; containerd 2.0.7+ / 2.1+ only.
    pub dial_timeout: Option<String>,
}

impl HostSettings {
    /// A mirror trusted to pull and to resolve tags, the usual setup for a
    /// private mirror (containerd `docs/hosts.md`, "Private Mirror").
    pub fn new(url: MirrorUrl) -> Self {
        HostSettings {
            url,
            capabilities: vec![Capability::Pull, Capability::Resolve],
            skip_verify: false,
            ca: Vec::new(),
            client: Vec::new(),
            headers: Vec::new(),
            dial_timeout: None,
        }
    }

    /// `override_path` makes containerd use the URL path verbatim as the API
    /// root; needed exactly when the path is more than `/v2`.
    pub fn needs_override_path(&self) -> bool {
        self.url.has_path_beyond_api_root()
    }

    fn has_tls_settings(&self) -> bool {
        self.skip_verify || !self.ca.is_empty() || !self.client.is_empty()
    }
}

/// What to generate.
#[derive(Debug, Clone, Default)]
pub struct HostsRequest {
    pub upstreams: Vec<Namespace>,
    pub mirrors: Vec<HostSettings>,
    /// Also write `_default/hosts.toml`, used for every registry without its own directory.
    pub include_default: bool,
    /// Target release; required for release-specific keys.
    pub containerd: Option<ContainerdRelease>,
}

/// One generated file: `<dir>/hosts.toml` relative to the hosts directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsFile {
    pub dir: String,
    pub contents: String,
}

impl HostsFile {
    pub const FILE_NAME: &'static str = "hosts.toml";

    pub fn relative_path(&self) -> PathBuf {
        PathBuf::from(&self.dir).join(Self::FILE_NAME)
    }
}

/// Validate the request and render one hosts.toml per namespace.
pub fn generate_hosts(request: &HostsRequest) -> Result<Vec<HostsFile>> {
    let namespaces = namespaces_of(request)?;
    validate_mirrors(&request.mirrors, request.containerd)?;
    Ok(namespaces
        .iter()
        .map(|ns| HostsFile {
            dir: ns.dir_name(),
            contents: render_hosts_toml(ns, &request.mirrors),
        })
        .collect())
}

fn namespaces_of(request: &HostsRequest) -> Result<Vec<Namespace>> {
    let mut seen = BTreeSet::new();
    let mut namespaces = Vec::new();
    let extra_default = request.include_default.then_some(Namespace::Default);
    for ns in request.upstreams.iter().cloned().chain(extra_default) {
        if seen.insert(ns.clone()) {
            namespaces.push(ns);
        } else if ns != Namespace::Default {
            return Err(Error::InvalidOption(format!(
                "upstream {ns} is listed twice"
            )));
        }
    }
    if namespaces.is_empty() {
        return Err(Error::InvalidOption(
            "name at least one upstream registry (or use --default)".to_owned(),
        ));
    }
    Ok(namespaces)
}

fn validate_mirrors(mirrors: &[HostSettings], release: Option<ContainerdRelease>) -> Result<()> {
    if mirrors.is_empty() {
        return Err(Error::InvalidOption("give at least one mirror".to_owned()));
    }
    let mut seen = BTreeSet::new();
    for mirror in mirrors {
        if !seen.insert(mirror.url.to_string()) {
            return Err(Error::InvalidOption(format!(
                "mirror {} is listed twice",
                mirror.url
            )));
        }
        validate_mirror(mirror, release)?;
    }
    Ok(())
}

fn validate_mirror(mirror: &HostSettings, release: Option<ContainerdRelease>) -> Result<()> {
    let invalid = |msg: String| Err(Error::InvalidOption(msg));
    if mirror.url.scheme() == Scheme::Http && mirror.has_tls_settings() {
        return invalid(format!(
            "{} is plain HTTP: skip_verify, ca and client certificates only apply to HTTPS; \
             use an https:// mirror URL or drop the TLS options",
            mirror.url
        ));
    }
    if mirror.capabilities.is_empty() {
        // An empty list means "every capability" to containerd, push included.
        return invalid(format!("{}: give at least one capability", mirror.url));
    }
    if mirror.capabilities.contains(&Capability::Referrers) {
        require_release(
            release,
            ContainerdRelease::supports_referrers,
            "the referrers capability",
            "2.2",
        )?;
    }
    if let Some(timeout) = &mirror.dial_timeout {
        require_release(
            release,
            ContainerdRelease::supports_dial_timeout,
            "dial_timeout",
            "2.0.7 or 2.1",
        )?;
        if !is_go_duration(timeout) {
            return invalid(format!(
                "dial_timeout {timeout:?} is not a duration like \"1s\" or \"500ms\""
            ));
        }
    }
    mirror
        .headers
        .iter()
        .try_for_each(|(name, _)| validate_header_name(name))
}

/// Release-specific keys break older releases (an unknown capability makes
/// containerd drop the whole file), so they need an explicit target.
fn require_release(
    release: Option<ContainerdRelease>,
    supports: fn(ContainerdRelease) -> bool,
    what: &str,
    since: &str,
) -> Result<()> {
    match release {
        Some(r) if supports(r) => Ok(()),
        Some(r) => Err(Error::InvalidOption(format!(
            "{what} needs containerd {since} or later; the target is containerd {r}"
        ))),
        None => Err(Error::InvalidOption(format!(
            "{what} needs containerd {since} or later: name the target release (--containerd-version)"
        ))),
    }
}

fn validate_header_name(name: &str) -> Result<()> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(Error::InvalidOption(format!(
            "{name:?} is not a valid HTTP header name"
        )));
    }
    Ok(())
}

/// Render the hosts.toml for one namespace. Mirrors are tried in order,
/// then `server` (containerd `docs/hosts.md`, "server field").
pub fn render_hosts_toml(namespace: &Namespace, mirrors: &[HostSettings]) -> String {
    let mut out = String::new();
    out.push_str(&header_comment(namespace));
    if let Some(server) = namespace.default_server() {
        out.push_str(&format!("server = {}\n", quote(&server)));
    }
    for mirror in mirrors {
        out.push('\n');
        out.push_str(&render_host(mirror));
    }
    out
}

fn header_comment(namespace: &Namespace) -> String {
    match namespace {
        Namespace::Default => "# Written by wharf. Used for every registry that has no directory of its own;\n\
             # with no `server` here, the registry named in the image is the last resort.\n"
            .to_owned(),
        Namespace::Host { .. } => format!(
            "# Written by wharf. Pulls from {namespace} try these mirrors in order, then `server`.\n"
        ),
    }
}

fn render_host(mirror: &HostSettings) -> String {
    let table = format!("host.{}", quote(&mirror.url.to_string()));
    let mut out = format!("[{table}]\n");
    let caps: Vec<&str> = mirror.capabilities.iter().map(|c| c.as_str()).collect();
    out.push_str(&format!("  capabilities = {}\n", string_array(&caps)));
    if mirror.skip_verify {
        out.push_str("  skip_verify = true\n");
    }
    if !mirror.ca.is_empty() {
        out.push_str(&format!("  ca = {}\n", string_or_array(&mirror.ca)));
    }
    if !mirror.client.is_empty() {
        out.push_str(&format!("  client = {}\n", client_pairs(&mirror.client)));
    }
    if mirror.needs_override_path() {
        out.push_str("  override_path = true\n");
    }
    if let Some(timeout) = &mirror.dial_timeout {
        out.push_str(&format!("  dial_timeout = {}\n", quote(timeout)));
    }
    if !mirror.headers.is_empty() {
        out.push_str(&render_headers(&table, &mirror.headers));
    }
    out
}

fn render_headers(host_table: &str, headers: &[(String, Vec<String>)]) -> String {
    let mut out = format!("  [{host_table}.header]\n");
    for (name, values) in headers {
        let key = toml_edit::Key::new(name.as_str())
            .display_repr()
            .into_owned();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        out.push_str(&format!("    {key} = {}\n", string_array(&refs)));
    }
    out
}

/// A TOML basic string with all escaping done by toml_edit.
pub(crate) fn quote(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_owned()
}

fn string_array(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn string_or_array(items: &[String]) -> String {
    match items {
        [one] => quote(one),
        many => string_array(&many.iter().map(String::as_str).collect::<Vec<_>>()),
    }
}

/// Always the array-of-pairs form: it says explicitly whether a key file exists.
fn client_pairs(certs: &[ClientCert]) -> String {
    let pairs: Vec<String> = certs
        .iter()
        .map(|c| string_array(&[c.cert.as_str(), c.key.as_deref().unwrap_or("")]))
        .collect();
    format!("[{}]", pairs.join(", "))
}
