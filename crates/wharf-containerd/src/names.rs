//! Registry host namespaces and the directory names containerd looks up.
//!
//! For a pull from `host[:port]`, containerd (1.6 through 2.3,
//! `remotes/docker/config/config_unix.go` `hostPaths`) tries, in each
//! `config_path` root, the directories `host_port_` (only when there is a
//! port), `host:port` (or `host`), then `_default`; the first that exists wins.

use std::fmt;

use crate::error::{Error, Result};

/// The fallback namespace directory, used when no other directory matches.
pub const DEFAULT_NAMESPACE: &str = "_default";

/// A registry host namespace: the `host[:port]` part of an image reference,
/// or `_default`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    Default,
    Host { host: String, port: Option<u16> },
}

impl Namespace {
    /// Parse an upstream as written in an image reference (`ghcr.io`,
    /// `host:5000`, `[::1]:5000`) or `_default`.
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidUpstream {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input == DEFAULT_NAMESPACE {
            return Ok(Namespace::Default);
        }
        if input.contains("://") {
            return Err(bad(
                "give the registry host only (e.g. registry.k8s.io), without a scheme",
            ));
        }
        if input.contains('/') {
            return Err(bad(
                "give the registry host only (e.g. registry.k8s.io), without a path",
            ));
        }
        let (host, port) = split_host_port(input).map_err(|r| bad(&r))?;
        check_host_chars(host).map_err(|r| bad(&r))?;
        Ok(Namespace::Host {
            host: host.to_owned(),
            port,
        })
    }

    /// Directory name under the hosts directory. A port stays in the
    /// `host:port` form, which every supported release matches on Unix.
    pub fn dir_name(&self) -> String {
        match self {
            Namespace::Default => DEFAULT_NAMESPACE.to_owned(),
            Namespace::Host { host, port: None } => host.clone(),
            Namespace::Host {
                host,
                port: Some(p),
            } => format!("{host}:{p}"),
        }
    }

    /// What containerd uses when every `[host]` fails and `server` is not
    /// set. docker.io is special-cased to registry-1.docker.io in
    /// `ConfigureHosts` (all releases). `_default` has no single upstream.
    pub fn default_server(&self) -> Option<String> {
        match self {
            Namespace::Default => None,
            Namespace::Host { host, .. } if host == "docker.io" => {
                Some("https://registry-1.docker.io".to_owned())
            }
            Namespace::Host { .. } => Some(format!("https://{}", self.dir_name())),
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dir_name())
    }
}

/// Split `host[:port]`, accepting bracketed IPv6 literals.
pub(crate) fn split_host_port(input: &str) -> std::result::Result<(&str, Option<u16>), String> {
    if input.is_empty() {
        return Err("empty host".to_owned());
    }
    if let Some(rest) = input.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| "unclosed '[' in IPv6 address".to_owned())?;
        let host_len = end + 2;
        let port = parse_port_suffix(&input[host_len..])?;
        return Ok((&input[..host_len], port));
    }
    match input.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((input, None)),
    }
}

fn parse_port_suffix(rest: &str) -> std::result::Result<Option<u16>, String> {
    match rest.strip_prefix(':') {
        Some(port) => Ok(Some(parse_port(port)?)),
        None if rest.is_empty() => Ok(None),
        None => Err(format!("unexpected {rest:?} after the address")),
    }
}

fn parse_port(port: &str) -> std::result::Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!("port {port:?} is not a number between 1 and 65535")),
    }
}

fn check_host_chars(host: &str) -> std::result::Result<(), String> {
    if host.is_empty() {
        return Err("empty host name".to_owned());
    }
    if host.starts_with('[') {
        return Ok(());
    }
    // Image references allow letters, digits, '.' and '-' in the domain
    // (distribution/reference grammar); a '_' can never match a pull.
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    match host.chars().find(|c| !allowed(*c)) {
        Some(c) => Err(format!("character {c:?} cannot appear in a host name")),
        None if host.starts_with('.') || host.ends_with('.') || host.starts_with('-') => {
            Err("a host name cannot start or end with '.' or start with '-'".to_owned())
        }
        None => Ok(()),
    }
}

/// How containerd will treat a directory found in the hosts directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirName {
    /// `_default`.
    Default,
    /// `host` or `host:port`, matched for pulls from that namespace.
    Plain(Namespace),
    /// `host_port_`: the underscore form, tried before `host:port`.
    Underscored(Namespace),
    /// Never matched by any pull; the reason says why.
    NeverMatches {
        reason: String,
        suggestion: Option<String>,
    },
}

/// Classify a directory name the way containerd's lookup will see it.
pub fn classify_dir_name(name: &str) -> DirName {
    if name == DEFAULT_NAMESPACE {
        return DirName::Default;
    }
    if let Some(d) = scheme_like(name) {
        return d;
    }
    if let Some(ns) = underscored_port(name) {
        return DirName::Underscored(ns);
    }
    match Namespace::parse(name) {
        Ok(ns) => docker_hub_alias(name).unwrap_or(DirName::Plain(ns)),
        Err(e) => DirName::NeverMatches {
            reason: e.to_string(),
            suggestion: suggest_from_broken(name),
        },
    }
}

/// `mkdir -p certs.d/https://registry.k8s.io` leaves a directory `https:`.
fn scheme_like(name: &str) -> Option<DirName> {
    let lower = name.to_ascii_lowercase();
    let is_scheme = matches!(lower.as_str(), "http:" | "https:" | "http" | "https");
    is_scheme.then(|| DirName::NeverMatches {
        reason: "a URL scheme is not part of the directory name; a path like \
                 certs.d/https://host/ created nested directories"
            .to_owned(),
        suggestion: None,
    })
}

/// `host_5000_` (containerd's `hostDirectory`) names `host:5000`.
fn underscored_port(name: &str) -> Option<Namespace> {
    let inner = name.strip_suffix('_')?;
    let (host, port) = inner.rsplit_once('_')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    Namespace::parse(host).ok().map(|ns| match ns {
        Namespace::Host { host, .. } => Namespace::Host {
            host,
            port: Some(port),
        },
        Namespace::Default => Namespace::Default,
    })
}

/// Pulls of docker.io images look up `docker.io`, never the API host names.
fn docker_hub_alias(name: &str) -> Option<DirName> {
    matches!(
        name,
        "registry-1.docker.io" | "index.docker.io" | "registry.hub.docker.com"
    )
    .then(|| DirName::NeverMatches {
        reason: format!(
            "images from Docker Hub are looked up under docker.io, not {name}; \
             containerd only rewrites the request host after choosing the directory"
        ),
        suggestion: Some("docker.io".to_owned()),
    })
}

/// Best guess at the intended name for a broken one (`host_5000` → `host:5000`).
fn suggest_from_broken(name: &str) -> Option<String> {
    if let Some((host, port)) = name.rsplit_once('_') {
        if port.parse::<u16>().is_ok() && Namespace::parse(host).is_ok() {
            return Some(format!("{host}:{port}"));
        }
    }
    let trimmed = name.trim_end_matches(':').trim();
    (trimmed != name && Namespace::parse(trimmed).is_ok()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_with_ports() {
        let ns = Namespace::parse("host:5000").unwrap();
        assert_eq!(ns.dir_name(), "host:5000");
        assert_eq!(ns.default_server().unwrap(), "https://host:5000");
        assert_eq!(
            Namespace::parse("docker.io")
                .unwrap()
                .default_server()
                .unwrap(),
            "https://registry-1.docker.io"
        );
        assert_eq!(
            Namespace::parse("[::1]:5000").unwrap().dir_name(),
            "[::1]:5000"
        );
    }

    #[test]
    fn rejects_urls_as_upstreams() {
        assert!(Namespace::parse("https://ghcr.io").is_err());
        assert!(Namespace::parse("ghcr.io/v2").is_err());
        assert!(Namespace::parse("host:0").is_err());
        assert!(Namespace::parse("").is_err());
    }

    #[test]
    fn classifies_directory_names() {
        assert_eq!(classify_dir_name("_default"), DirName::Default);
        assert!(matches!(
            classify_dir_name("host_5000_"),
            DirName::Underscored(_)
        ));
        assert!(matches!(classify_dir_name("host:5000"), DirName::Plain(_)));
        match classify_dir_name("host_5000") {
            DirName::NeverMatches { suggestion, .. } => {
                assert_eq!(suggestion.as_deref(), Some("host:5000"))
            }
            other => panic!("host_5000 never matches: {other:?}"),
        }
        assert!(matches!(
            classify_dir_name("https:"),
            DirName::NeverMatches { .. }
        ));
        match classify_dir_name("host:abc") {
            DirName::NeverMatches { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
