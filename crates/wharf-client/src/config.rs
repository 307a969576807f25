//! Client settings: which scheme each registry is spoken to with, extra CAs,
//! timeouts, retry policy, credential sources.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use wharf_oci::reference::{DOCKER_HUB, DOCKER_HUB_ENDPOINT};

use crate::credentials::CredentialSources;

/// How failed requests are retried. Delays grow exponentially from
/// `initial_backoff` up to `max_backoff`, each scaled by a random factor in
/// [0.5, 1) so many clients do not retry in step. A `Retry-After` from the
/// server replaces the computed delay.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total tries of one request, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured. A server asking for longer is
    /// taken as a final answer (the error says rate limited) rather than
    /// stalling a transfer for an unbounded time.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(16),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The delay before retry number `retry` (0 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(30)));
        exp.min(self.max_backoff).mul_f64(0.5 + jitter() / 2.0)
    }
}

/// A number in [0, 1). Randomness from the std hasher's per-process keys is
/// plenty for spreading retries.
fn jitter() -> f64 {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let bits = RandomState::new().hash_one(nanos);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Everything a [`crate::Client`] is built from.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub user_agent: String,
    /// Registries that may be spoken to over plain HTTP (skopeo's
    /// `--tls-verify=false`). Like loopback hosts, they are tried in plain
    /// HTTP first and switch to HTTPS for good when they answer in TLS;
    /// `*` stands for every registry.
    pub insecure_hosts: Vec<String>,
    /// Registries that must use HTTPS even though they are on loopback or
    /// insecure (`https://` written before the host).
    pub https_hosts: Vec<String>,
    /// Registries that must use plain HTTP whatever they are (`http://`
    /// written before the host).
    pub http_hosts: Vec<String>,
    /// PEM files with extra trusted CAs, added to the system's roots.
    pub ca_files: Vec<PathBuf>,
    /// Roots of per-host certificate directories (`ROOT/HOST[:PORT]/*.crt`,
    /// `*.cert` + `*.key`), as podman and docker read them
    /// ([`crate::trust::CERTS_D_ROOTS`] by default).
    pub certs_dirs: Vec<PathBuf>,
    pub credentials: CredentialSources,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// Longest silence while reading a response before giving up on it.
    pub read_timeout: Duration,
    /// Largest manifest accepted from a registry.
    pub max_manifest_bytes: usize,
    /// How often one blob download may be resumed with `Range` after the
    /// connection broke.
    pub max_blob_resumes: u32,
    /// Largest number of pages followed in a tags or catalog listing.
    pub max_pages: usize,
    /// After a registry's `/v2/` did not answer through every retry, how
    /// long further requests to it fail at once instead of retrying all
    /// over again. A command that runs once (`wharf copy`) sets some
    /// seconds; a long-running server (the pull-through cache) leaves it at
    /// zero, to notice an upstream's return with the next request.
    pub unreachable_memory: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            user_agent: concat!("wharf/", env!("CARGO_PKG_VERSION")).to_string(),
            insecure_hosts: Vec::new(),
            https_hosts: Vec::new(),
            http_hosts: Vec::new(),
            ca_files: Vec::new(),
            certs_dirs: crate::trust::CERTS_D_ROOTS.map(PathBuf::from).to_vec(),
            credentials: CredentialSources::none(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
            max_manifest_bytes: 8 * 1024 * 1024,
            max_blob_resumes: 5,
            max_pages: 10_000,
            unreachable_memory: Duration::ZERO,
        }
    }
}

/// The host's name without a port (and without IPv6 brackets).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

pub(crate) fn is_loopback(host: &str) -> bool {
    let name = host_name(host);
    name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host connections go to: Docker Hub's API lives elsewhere.
pub fn endpoint_host(host: &str) -> &str {
    if host == DOCKER_HUB {
        DOCKER_HUB_ENDPOINT
    } else {
        host
    }
}

/// How the scheme of a registry is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeChoice {
    Https,
    Http,
    /// Plain HTTP first; HTTPS from the moment the registry answers in TLS
    /// (a loopback or insecure registry that serves HTTPS). Only the first
    /// request, an anonymous `GET /v2/`, can go out in plain text.
    HttpUnlessTls,
}

/// `https://host…` or `http://host…` as a user writes a registry: the
/// scheme asked for, and the rest.
pub fn split_scheme(written: &str) -> (Option<&'static str>, &str) {
    for scheme in ["https", "http"] {
        let prefix_len = scheme.len() + 3;
        if written.len() > prefix_len
            && written[..prefix_len].eq_ignore_ascii_case(&format!("{scheme}://"))
        {
            return (Some(scheme), &written[prefix_len..]);
        }
    }
    (None, written)
}

impl ClientConfig {
    /// How the scheme for `host` (a registry host as in a reference) is chosen.
    pub fn scheme_choice(&self, host: &str) -> SchemeChoice {
        let listed = |list: &[String]| list.iter().any(|h| h.eq_ignore_ascii_case(host));
        if listed(&self.https_hosts) {
            SchemeChoice::Https
        } else if listed(&self.http_hosts) {
            SchemeChoice::Http
        } else if listed(&self.insecure_hosts)
            || self.insecure_hosts.iter().any(|h| h == "*")
            || is_loopback(host)
        {
            SchemeChoice::HttpUnlessTls
        } else {
            SchemeChoice::Https
        }
    }

    /// The scheme the first request to `host` uses.
    pub fn scheme(&self, host: &str) -> &'static str {
        match self.scheme_choice(host) {
            SchemeChoice::Https => "https",
            SchemeChoice::Http | SchemeChoice::HttpUnlessTls => "http",
        }
    }

    /// Make `host` use `scheme` ("https" or "http"), as a prefix written
    /// before it asks.
    pub fn force_scheme(&mut self, host: &str, scheme: &str) {
        let list = if scheme == "https" {
            &mut self.https_hosts
        } else {
            &mut self.http_hosts
        };
        list.push(host.to_string());
    }

    /// `<scheme>://<endpoint>/v2/` with the first scheme for `host`.
    pub fn base_url(&self, host: &str) -> Option<Url> {
        base_url_with(self.scheme(host), host)
    }
}

/// `<scheme>://<endpoint>/v2/`, or `None` when `host` is not a host.
pub(crate) fn base_url_with(scheme: &str, host: &str) -> Option<Url> {
    let endpoint = endpoint_host(host);
    let url = Url::parse(&format!("{scheme}://{endpoint}/v2/")).ok()?;
    // A "host" with a path or credentials in it is not a host.
    (url.path() == "/v2/" && url.username().is_empty() && url.password().is_none()).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        let c = ClientConfig {
            insecure_hosts: vec!["mirror.lan:5000".into()],
            https_hosts: vec!["127.0.0.1:8443".into()],
            ..ClientConfig::default()
        };
        assert_eq!(c.scheme("registry.k8s.io"), "https");
        assert_eq!(c.scheme("localhost:5000"), "http");
        assert_eq!(c.scheme("localhost"), "http");
        assert_eq!(c.scheme("127.0.0.1:5000"), "http");
        assert_eq!(c.scheme("127.1.2.3"), "http");
        assert_eq!(c.scheme("[::1]:5000"), "http");
        assert_eq!(c.scheme("mirror.lan:5000"), "http");
        assert_eq!(c.scheme("mirror.lan"), "https");
        assert_eq!(c.scheme("127.0.0.1:8443"), "https");
        assert_eq!(c.scheme("128.0.0.1"), "https");
        assert_eq!(
            c.scheme_choice("localhost:5000"),
            SchemeChoice::HttpUnlessTls
        );
        assert_eq!(
            c.scheme_choice("mirror.lan:5000"),
            SchemeChoice::HttpUnlessTls
        );
        assert_eq!(c.scheme_choice("127.0.0.1:8443"), SchemeChoice::Https);
        let mut forced = c.clone();
        forced.force_scheme("mirror.lan:5000", "http");
        forced.force_scheme("localhost:5000", "https");
        assert_eq!(forced.scheme_choice("mirror.lan:5000"), SchemeChoice::Http);
        assert_eq!(forced.scheme_choice("localhost:5000"), SchemeChoice::Https);
        let every = ClientConfig {
            insecure_hosts: vec!["*".into()],
            https_hosts: vec!["127.0.0.1:8443".into()],
            ..ClientConfig::default()
        };
        assert_eq!(every.scheme("mirror.lan"), "http");
        assert_eq!(every.scheme("127.0.0.1:8443"), "https");
    }

    #[test]
    fn written_schemes() {
        assert_eq!(
            split_scheme("https://localhost:5002"),
            (Some("https"), "localhost:5002")
        );
        assert_eq!(
            split_scheme("HTTP://r.lan/a/b:1"),
            (Some("http"), "r.lan/a/b:1")
        );
        assert_eq!(split_scheme("localhost:5002"), (None, "localhost:5002"));
        assert_eq!(split_scheme("https://"), (None, "https://"));
    }

    #[test]
    fn base_urls() {
        let c = ClientConfig::default();
        assert_eq!(
            c.base_url("docker.io").unwrap().as_str(),
            "https://registry-1.docker.io/v2/"
        );
        assert_eq!(
            c.base_url("localhost:5000").unwrap().as_str(),
            "http://localhost:5000/v2/"
        );
        assert!(c.base_url("a/b").is_none());
        assert!(c.base_url("user@host").is_none());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        for retry in 0..10 {
            let d = p.backoff(retry);
            let full = p
                .initial_backoff
                .saturating_mul(1 << retry)
                .min(p.max_backoff);
            assert!(
                d >= full / 2 && d <= full,
                "retry {retry}: {d:?} vs {full:?}"
            );
        }
    }
}
