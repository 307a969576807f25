//! What containerd's resolver takes from a hosts directory, read-only: which
//! `hosts.toml` applies to a registry, and the ordered hosts a pull tries.
//!
//! Mirrors containerd's `remotes/docker/config/hosts.go` (`ConfigureHosts`,
//! `HostDirFromRoot`, `parseHostsFile`, `parseHostConfig`, `loadCertFiles`;
//! 1.6–2.3) and the CRI's `hostDirFromRoots`: hosts in file order, then the
//! root (`server`) entry; an empty `server` becomes the registry itself.

use std::fs;
use std::path::{Path, PathBuf};

use toml_edit::{Document, Item, TableLike, Value};

use crate::mirror::{Capability, Scheme};
use crate::names::DEFAULT_NAMESPACE;
use crate::source::{read_text_file, LineIndex};
use crate::version::ConfigVersion;

const HOSTS_TOML: &str = "hosts.toml";

/// Why containerd cannot decode a hosts.toml. containerd logs "failed to
/// decode hosts.toml" and falls back to certificate files in the directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct HostsDecodeError {
    pub path: PathBuf,
    pub reason: String,
}

/// A client certificate and, when in a separate file, its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPair {
    pub cert: PathBuf,
    pub key: Option<PathBuf>,
}

/// One entry of a hosts.toml as containerd decodes it: a `[host."<url>"]`
/// table, or the root table that configures `server`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// The URL as written (table key or `server` value); `None` for a root
    /// without `server`.
    pub url: Option<String>,
    /// `None` when not set, which containerd reads as pull, resolve and push.
    pub capabilities: Option<Vec<Capability>>,
    pub skip_verify: Option<bool>,
    /// CA files, made absolute against the hosts.toml's directory.
    pub ca: Vec<PathBuf>,
    pub client: Vec<ClientPair>,
    pub headers: Vec<(String, Vec<String>)>,
    pub override_path: bool,
    /// 1-based line of the `[host."<url>"]` header or of `server`.
    pub line: Option<usize>,
    /// 1-based line of `override_path`, when set.
    pub override_path_line: Option<usize>,
}

/// A decoded hosts.toml: the `[host]` entries in file order, and the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsToml {
    pub path: PathBuf,
    pub hosts: Vec<HostConfig>,
    pub root: HostConfig,
}

/// Decode hosts.toml `text` (read from `path`) the way containerd does:
/// unknown keys are ignored, a wrong type or an unknown capability fails
/// the whole file.
pub fn parse_hosts_toml(path: &Path, text: &str) -> Result<HostsToml, HostsDecodeError> {
    let fail = |reason: String| HostsDecodeError {
        path: path.to_owned(),
        reason,
    };
    let doc = Document::parse(text)
        .map_err(|e| fail(format!("not valid TOML: {}", e.message().trim())))?;
    let base = path.parent().unwrap_or(Path::new("/"));
    let lines = LineIndex::new(text);
    let root = doc.as_table();
    let reader = EntryReader {
        base,
        lines: &lines,
    };
    let mut hosts = Vec::new();
    if let Some(item) = root.get("host") {
        let table = item.as_table_like().ok_or_else(|| {
            fail("`host` must be a table of [host.\"<url>\"] sections".to_owned())
        })?;
        for (url, entry) in hosts_in_file_order(table) {
            let entry_table = entry
                .as_table_like()
                .ok_or_else(|| fail(format!("host {url:?} must be a table")))?;
            let mut host = reader.read(entry_table).map_err(&fail)?;
            host.url = Some(url.to_owned());
            host.line = reader.line_of_key(table, url);
            hosts.push(host);
        }
    }
    let mut root_entry = reader.read(root).map_err(&fail)?;
    match root.get("server") {
        None => {}
        Some(item) => {
            let server = item
                .as_str()
                .ok_or_else(|| fail("`server` must be a string".to_owned()))?;
            if !server.is_empty() {
                root_entry.url = Some(server.to_owned());
                root_entry.line = reader.line_of_key(root, "server");
            }
        }
    }
    Ok(HostsToml {
        path: path.to_owned(),
        hosts,
        root: root_entry,
    })
}

/// containerd sorts hosts by the position of their table in the file.
fn hosts_in_file_order(table: &dyn TableLike) -> Vec<(&str, &Item)> {
    let mut entries: Vec<(usize, &str, &Item)> = table
        .iter()
        .map(|(k, v)| {
            let at = table
                .key(k)
                .and_then(|key| key.span())
                .map_or(usize::MAX, |s| s.start);
            (at, k, v)
        })
        .collect();
    entries.sort_by_key(|(at, _, _)| *at);
    entries.into_iter().map(|(_, k, v)| (k, v)).collect()
}

struct EntryReader<'a> {
    base: &'a Path,
    lines: &'a LineIndex<'a>,
}

impl EntryReader<'_> {
    fn line_of_key(&self, table: &dyn TableLike, key: &str) -> Option<usize> {
        let span = table
            .key(key)
            .and_then(|k| k.span())
            .or_else(|| table.get(key).and_then(Item::span))?;
        Some(self.lines.position(span.start).0)
    }

    fn read(&self, table: &dyn TableLike) -> Result<HostConfig, String> {
        let override_path = read_bool(table, "override_path")?.unwrap_or(false);
        Ok(HostConfig {
            url: None,
            capabilities: read_capabilities(table)?,
            skip_verify: read_bool(table, "skip_verify")?,
            ca: read_paths(table, "ca")?
                .into_iter()
                .map(|p| self.absolute(&p))
                .collect(),
            client: self.read_client(table)?,
            headers: read_headers(table)?,
            override_path,
            line: None,
            override_path_line: override_path
                .then(|| self.line_of_key(table, "override_path"))
                .flatten(),
        })
    }

    fn absolute(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base.join(path)
        }
    }

    fn read_client(&self, table: &dyn TableLike) -> Result<Vec<ClientPair>, String> {
        let Some(item) = table.get("client") else {
            return Ok(Vec::new());
        };
        let single = |cert: &str| ClientPair {
            cert: self.absolute(cert),
            key: None,
        };
        if let Some(s) = item.as_str() {
            return Ok(vec![single(s)]);
        }
        let array = item
            .as_array()
            .ok_or("`client` must be a path or an array")?;
        array
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(single(s.value())),
                Value::Array(pair) => {
                    let parts: Vec<&str> = pair.iter().filter_map(Value::as_str).collect();
                    match parts.as_slice() {
                        [cert, key] if pair.len() == 2 => Ok(ClientPair {
                            cert: self.absolute(cert),
                            key: (!key.is_empty()).then(|| self.absolute(key)),
                        }),
                        _ => Err("each `client` pair must be [cert, key]".to_owned()),
                    }
                }
                _ => Err("invalid type for `client`".to_owned()),
            })
            .collect()
    }
}

fn read_bool(table: &dyn TableLike, key: &str) -> Result<Option<bool>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(item) => item
            .as_bool()
            .map(Some)
            .ok_or_else(|| format!("`{key}` must be true or false")),
    }
}

fn read_capabilities(table: &dyn TableLike) -> Result<Option<Vec<Capability>>, String> {
    let Some(item) = table.get("capabilities") else {
        return Ok(None);
    };
    let array = item
        .as_array()
        .ok_or("`capabilities` must be an array of strings")?;
    let caps = array
        .iter()
        .map(|v| {
            let name = v.as_str().ok_or("every capability must be a string")?;
            Capability::parse(name).ok_or_else(|| format!("unknown capability {name}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // An empty list decodes like an absent one: every capability.
    Ok((!caps.is_empty()).then_some(caps))
}

fn read_paths(table: &dyn TableLike, key: &str) -> Result<Vec<String>, String> {
    let Some(item) = table.get(key) else {
        return Ok(Vec::new());
    };
    if let Some(s) = item.as_str() {
        return Ok(vec![s.to_owned()]);
    }
    let array = item
        .as_array()
        .ok_or_else(|| format!("`{key}` must be a path or an array of paths"))?;
    array
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("`{key}` entries must be strings"))
        })
        .collect()
}

fn read_headers(table: &dyn TableLike) -> Result<Vec<(String, Vec<String>)>, String> {
    let Some(item) = table.get("header") else {
        return Ok(Vec::new());
    };
    let headers = item.as_table_like().ok_or("`header` must be a table")?;
    headers
        .iter()
        .map(|(name, value)| {
            let values = if let Some(s) = value.as_str() {
                vec![s.to_owned()]
            } else {
                read_paths(headers, name).map_err(|_| {
                    format!("header {name:?} must be a string or an array of strings")
                })?
            };
            Ok((name.to_owned(), values))
        })
        .collect()
}

/// The directory containerd reads for pulls from `registry_host`
/// (`host[:port]` as in the image reference): in each `:`-separated root of
/// `config_path`, `host_port_` (with a port), `host[:port]`, then
/// `_default`; the first that exists wins, roots in order.
pub fn find_hosts_dir(config_path: &str, registry_host: &str) -> Option<PathBuf> {
    config_path
        .split(':')
        .filter(|root| !root.is_empty())
        .find_map(|root| {
            host_dir_candidates(Path::new(root), registry_host)
                .into_iter()
                .find(|p| p.exists())
        })
}

fn host_dir_candidates(root: &Path, host: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(idx) = host.rfind(':').filter(|&i| i > 0) {
        dirs.push(root.join(format!("{}_{}_", &host[..idx], &host[idx + 1..])));
    }
    dirs.push(root.join(host));
    dirs.push(root.join(DEFAULT_NAMESPACE));
    dirs
}

/// Where a host in the final list came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSource {
    /// A `[host."<url>"]` table.
    Mirror { file: PathBuf, line: Option<usize> },
    /// The `server` key of a hosts.toml.
    Server { file: PathBuf, line: Option<usize> },
    /// No `server` (or no usable hosts.toml): the registry named in the image.
    Default,
}

/// One host as containerd's resolver will use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHost {
    pub scheme: Scheme,
    /// `host[:port]` connections go to.
    pub host: String,
    /// The API root requests are made under: `/v2`, `<path>/v2`, or with
    /// `override_path` exactly the URL's path (possibly empty).
    pub path: String,
    pub capabilities: Vec<Capability>,
    pub skip_verify: bool,
    pub ca: Vec<PathBuf>,
    pub client: Vec<ClientPair>,
    pub headers: Vec<(String, Vec<String>)>,
    pub override_path: bool,
    pub override_path_line: Option<usize>,
    pub source: HostSource,
}

impl RegistryHost {
    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// `scheme://host/path`, the base of every request.
    pub fn base_url(&self) -> String {
        format!("{}://{}{}", self.scheme.as_str(), self.host, self.path)
    }

    /// Whether requests to this host carry `?ns=<registry>`: containerd adds
    /// it whenever the host is not the registry itself (`isProxy`), with
    /// docker.io served by registry-1.docker.io counting as itself.
    pub fn is_proxy_for(&self, registry_host: &str) -> bool {
        registry_host != self.host
            && !(registry_host == "docker.io" && self.host == "registry-1.docker.io")
    }
}

/// How the host list for one registry was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsResolution {
    /// The namespace directory that applies, if any.
    pub dir: Option<PathBuf>,
    /// The hosts.toml that was decoded, if any.
    pub file: Option<PathBuf>,
    /// Why a hosts.toml in `dir` was not used (missing, empty, undecodable).
    pub problem: Option<String>,
    pub hosts: Vec<RegistryHost>,
}

/// The hosts containerd tries for pulls from `registry_host`, given the
/// CRI's `config_path` (`None`: no hosts directory, only the registry).
pub fn resolve_registry_hosts(config_path: Option<&str>, registry_host: &str) -> HostsResolution {
    let dir = config_path.and_then(|p| find_hosts_dir(p, registry_host));
    let Some(dir) = dir else {
        return HostsResolution {
            dir: None,
            file: None,
            problem: None,
            hosts: vec![default_host(registry_host, HostConfig::default())],
        };
    };
    let file = dir.join(HOSTS_TOML);
    let (configs, used, problem) = match load_hosts_file(&file) {
        Ok(parsed) => (parsed, Some(file), None),
        Err(problem) => (vec![cert_files_entry(&dir)], None, Some(problem)),
    };
    let hosts = to_registry_hosts(configs, used.as_deref(), registry_host);
    HostsResolution {
        dir: Some(dir),
        file: used,
        problem,
        hosts,
    }
}

/// The entries of a usable hosts.toml, or why containerd will not use it.
fn load_hosts_file(file: &Path) -> Result<Vec<HostConfig>, String> {
    if !file.exists() {
        return Err(format!("{} does not exist", file.display()));
    }
    let text = read_text_file(file).map_err(|e| e.to_string())?;
    if text.is_empty() {
        return Err(format!("{} is empty", file.display()));
    }
    let parsed = parse_hosts_toml(file, &text).map_err(|e| {
        format!("containerd cannot decode it (\"failed to decode hosts.toml\"): {e}")
    })?;
    let mut all = parsed.hosts;
    all.push(parsed.root);
    Ok(all)
}

/// Docker-style certificate files (`*.crt`, `*.cert` + `*.key`): what
/// containerd uses when the directory has no usable hosts.toml.
fn cert_files_entry(dir: &Path) -> HostConfig {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut entry = HostConfig::default();
    for name in &names {
        if name.ends_with(".crt") {
            entry.ca.push(dir.join(name));
        }
        if let Some(stem) = name.strip_suffix(".cert") {
            let key = dir.join(format!("{stem}.key"));
            entry.client.push(ClientPair {
                cert: dir.join(name),
                key: key.exists().then_some(key),
            });
        }
    }
    entry
}

fn to_registry_hosts(
    configs: Vec<HostConfig>,
    file: Option<&Path>,
    registry_host: &str,
) -> Vec<RegistryHost> {
    let last = configs.len().saturating_sub(1);
    configs
        .into_iter()
        .enumerate()
        .map(|(i, config)| match (&config.url, file) {
            (Some(url), Some(file)) => {
                let source = if i == last {
                    HostSource::Server {
                        file: file.to_owned(),
                        line: config.line,
                    }
                } else {
                    HostSource::Mirror {
                        file: file.to_owned(),
                        line: config.line,
                    }
                };
                configured_host(url, config.clone(), source)
            }
            _ => default_host(registry_host, config),
        })
        .collect()
}

/// `parseHostConfig`: a URL without a scheme gets https; `/v2` is appended
/// to the path unless `override_path` is set.
fn configured_host(url: &str, config: HostConfig, source: HostSource) -> RegistryHost {
    let with_scheme = if url.starts_with("http") {
        url.to_owned()
    } else {
        format!("https://{url}")
    };
    let (scheme, rest) = match with_scheme.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some((_, rest)) => (Scheme::Https, rest),
        None => (Scheme::Https, with_scheme.as_str()),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (host, raw_path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let cleaned = clean_path(raw_path);
    let path = if config.override_path || cleaned.ends_with("/v2") {
        cleaned
    } else {
        format!("{cleaned}/v2")
    };
    RegistryHost {
        scheme,
        host: host.to_owned(),
        path,
        capabilities: capabilities_or_all(&config),
        skip_verify: config.skip_verify.unwrap_or(false),
        ca: config.ca,
        client: config.client,
        headers: config.headers,
        override_path: config.override_path,
        override_path_line: config.override_path_line,
        source,
    }
}

/// The last entry without a URL becomes the registry itself
/// (`ConfigureHosts`): docker.io is served by registry-1.docker.io, a
/// loopback registry is spoken to over plain HTTP without verification.
fn default_host(registry_host: &str, config: HostConfig) -> RegistryHost {
    let (scheme, host, skip_verify) = if registry_host == "docker.io" {
        (
            Scheme::Https,
            "registry-1.docker.io".to_owned(),
            config.skip_verify,
        )
    } else if is_localhost(registry_host) {
        (Scheme::Http, registry_host.to_owned(), Some(true))
    } else {
        (Scheme::Https, registry_host.to_owned(), config.skip_verify)
    };
    RegistryHost {
        scheme,
        host,
        path: "/v2".to_owned(),
        capabilities: vec![Capability::Pull, Capability::Resolve, Capability::Push],
        skip_verify: skip_verify.unwrap_or(false),
        ca: config.ca,
        client: config.client,
        headers: config.headers,
        override_path: false,
        override_path_line: None,
        source: HostSource::Default,
    }
}

fn capabilities_or_all(config: &HostConfig) -> Vec<Capability> {
    config
        .capabilities
        .clone()
        .unwrap_or_else(|| vec![Capability::Pull, Capability::Resolve, Capability::Push])
}

/// Go's `path.Clean` for the absolute paths containerd builds; empty stays empty.
fn clean_path(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    if out.is_empty() {
        if path.is_empty() {
            String::new()
        } else {
            "/".to_owned()
        }
    } else {
        format!("/{}", out.join("/"))
    }
}

/// The hosts the CRI tries for `registry_host` from deprecated
/// `registry.mirrors` endpoints (no `config_path`): each endpoint for pull
/// and resolve, then the registry itself unless an endpoint is it already
/// (1.6 `pkg/cri/server/image_pull.go` `registryEndpoints`).
pub fn legacy_mirror_hosts(
    registry_host: &str,
    endpoints: &[String],
    file: &Path,
    line: Option<usize>,
) -> Vec<RegistryHost> {
    let config = HostConfig {
        capabilities: Some(vec![Capability::Pull, Capability::Resolve]),
        ..HostConfig::default()
    };
    let mut hosts: Vec<RegistryHost> = endpoints
        .iter()
        .map(|url| {
            let source = HostSource::Mirror {
                file: file.to_owned(),
                line,
            };
            configured_host(url, config.clone(), source)
        })
        .collect();
    let default = default_host(registry_host, HostConfig::default());
    if !hosts.iter().any(|h| h.host == default.host) {
        hosts.push(default);
    }
    hosts
}

/// containerd's `IsLocalhost`: `localhost` or a loopback IP, port ignored.
pub fn is_localhost(host: &str) -> bool {
    let bare = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => match host.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        },
    };
    bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `version` a config.toml states (no `version` means 1), or `None`
/// when the text is not TOML or the version is not one containerd knows.
pub fn config_version_of(text: &str) -> Option<ConfigVersion> {
    let doc = Document::parse(text).ok()?;
    match doc.get("version") {
        None => Some(ConfigVersion::V1),
        Some(item) => ConfigVersion::from_number(item.as_integer()?).ok(),
    }
}

/// Registries with deprecated `registry.mirrors` entries in a config.toml
/// (under the plugin its version reads). Without `config_path` the CRI
/// sends pulls to those endpoints instead of reading any hosts.toml.
pub fn legacy_mirrors_of(text: &str) -> Vec<String> {
    let Some(version) = config_version_of(text) else {
        return Vec::new();
    };
    let Ok(doc) = Document::parse(text) else {
        return Vec::new();
    };
    doc.get("plugins")
        .and_then(|p| p.get(version.registry_plugin()))
        .and_then(|p| p.get("registry"))
        .and_then(|r| r.get("mirrors"))
        .and_then(Item::as_table_like)
        .map(|mirrors| mirrors.iter().map(|(host, _)| host.to_owned()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> HostsToml {
        parse_hosts_toml(
            Path::new("/etc/containerd/certs.d/docker.io/hosts.toml"),
            text,
        )
        .unwrap()
    }

    #[test]
    fn hosts_keep_file_order_and_lines() {
        let toml = "server = \"https://registry-1.docker.io\"\n\n\
                    [host.\"http://b:5000\"]\n  capabilities = [\"pull\"]\n\n\
                    [host.\"http://a:5000\"]\n  override_path = true\n  ca = \"ca.pem\"\n";
        let parsed = parse(toml);
        let urls: Vec<_> = parsed
            .hosts
            .iter()
            .map(|h| h.url.clone().unwrap())
            .collect();
        assert_eq!(urls, ["http://b:5000", "http://a:5000"]);
        assert_eq!(parsed.hosts[0].line, Some(3));
        assert_eq!(parsed.hosts[1].override_path_line, Some(7));
        assert_eq!(
            parsed.hosts[1].ca,
            [PathBuf::from("/etc/containerd/certs.d/docker.io/ca.pem")]
        );
        assert_eq!(
            parsed.root.url.as_deref(),
            Some("https://registry-1.docker.io")
        );
        assert_eq!(parsed.root.line, Some(1));
    }

    #[test]
    fn wrong_types_fail_the_whole_file() {
        let p = Path::new("/x/hosts.toml");
        assert!(parse_hosts_toml(p, "[host.\"http://a\"]\nskip_verify = \"yes\"\n").is_err());
        assert!(parse_hosts_toml(p, "[host.\"http://a\"]\ncapabilities = [\"pul\"]\n").is_err());
        assert!(parse_hosts_toml(p, "server = 1\n").is_err());
    }

    #[test]
    fn configured_paths_follow_override_path() {
        let file = Path::new("/d/hosts.toml");
        let parsed = parse_hosts_toml(
            file,
            "[host.\"http://m:5000\"]\noverride_path = true\n[host.\"https://n/repo\"]\n[host.\"o:443\"]\n",
        )
        .unwrap();
        let mut configs = parsed.hosts;
        configs.push(parsed.root);
        let hosts = to_registry_hosts(configs, Some(file), "docker.io");
        assert_eq!(hosts[0].base_url(), "http://m:5000");
        assert_eq!(hosts[1].base_url(), "https://n/repo/v2");
        assert_eq!(hosts[2].base_url(), "https://o:443/v2");
        assert_eq!(hosts[3].base_url(), "https://registry-1.docker.io/v2");
        assert_eq!(hosts[3].source, HostSource::Default);
        assert!(hosts[0].is_proxy_for("docker.io"));
        assert!(!hosts[3].is_proxy_for("docker.io"));
    }

    #[test]
    fn loopback_registries_default_to_plain_http() {
        let h = default_host("127.0.0.1:5000", HostConfig::default());
        assert_eq!(h.base_url(), "http://127.0.0.1:5000/v2");
        assert!(h.skip_verify);
        assert!(is_localhost("localhost:5000"));
        assert!(is_localhost("[::1]:5000"));
        assert!(!is_localhost("registry.local:5000"));
    }

    #[test]
    fn host_directory_lookup_order() {
        let root = tempfile::tempdir().unwrap();
        let config_path = root.path().display().to_string();
        assert_eq!(find_hosts_dir(&config_path, "h:5000"), None);
        fs::create_dir(root.path().join("_default")).unwrap();
        assert_eq!(
            find_hosts_dir(&config_path, "h:5000"),
            Some(root.path().join("_default"))
        );
        fs::create_dir(root.path().join("h:5000")).unwrap();
        fs::create_dir(root.path().join("h_5000_")).unwrap();
        assert_eq!(
            find_hosts_dir(&config_path, "h:5000"),
            Some(root.path().join("h_5000_"))
        );
    }

    #[test]
    fn finds_legacy_mirrors() {
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"http://m:5000\"]\n";
        assert_eq!(legacy_mirrors_of(text), ["docker.io"]);
        assert!(legacy_mirrors_of("version = 2\n").is_empty());
    }

    #[test]
    fn config_versions() {
        assert_eq!(config_version_of("version = 3\n"), Some(ConfigVersion::V3));
        assert_eq!(config_version_of(""), Some(ConfigVersion::V1));
        assert_eq!(config_version_of("version = 9\n"), None);
    }
}
