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
    /// Registries spoken to over plain HTTP (skopeo's `--tls-verify=false`);
    /// `*` stands for every registry. Loopback hosts are always plain HTTP
    /// unless listed in `https_hosts`.
    pub insecure_hosts: Vec<String>,
    /// Registries that must use HTTPS even though they are on loopback
    /// (a TLS-terminating registry on 127.0.0.1).
    pub https_hosts: Vec<String>,
    /// PEM files with extra trusted CAs, added to the system's roots.
    pub ca_files: Vec<PathBuf>,
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
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            user_agent: concat!("wharf/", env!("CARGO_PKG_VERSION")).to_string(),
            insecure_hosts: Vec::new(),
            https_hosts: Vec::new(),
            ca_files: Vec::new(),
            credentials: CredentialSources::none(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
            max_manifest_bytes: 8 * 1024 * 1024,
            max_blob_resumes: 5,
            max_pages: 10_000,
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

impl ClientConfig {
    /// The scheme used for `host` (a registry host as in a reference).
    pub fn scheme(&self, host: &str) -> &'static str {
        let listed = |list: &[String]| list.iter().any(|h| h.eq_ignore_ascii_case(host));
        if listed(&self.https_hosts) {
            "https"
        } else if listed(&self.insecure_hosts)
            || self.insecure_hosts.iter().any(|h| h == "*")
            || is_loopback(host)
        {
            "http"
        } else {
            "https"
        }
    }

    /// `<scheme>://<endpoint>/v2/`.
    pub fn base_url(&self, host: &str) -> Option<Url> {
        let endpoint = endpoint_host(host);
        let url = Url::parse(&format!("{}://{endpoint}/v2/", self.scheme(host))).ok()?;
        // A "host" with a path or credentials in it is not a host.
        (url.path() == "/v2/" && url.username().is_empty() && url.password().is_none())
            .then_some(url)
    }
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
        let every = ClientConfig {
            insecure_hosts: vec!["*".into()],
            https_hosts: vec!["127.0.0.1:8443".into()],
            ..ClientConfig::default()
        };
        assert_eq!(every.scheme("mirror.lan"), "http");
        assert_eq!(every.scheme("127.0.0.1:8443"), "https");
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
