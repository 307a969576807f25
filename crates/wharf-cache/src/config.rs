//! What a cache is built from: the upstreams it answers for and how it
//! talks to them. The binary fills this from `wharf.toml`.

use std::path::PathBuf;
use std::time::Duration;

use wharf_client::{Credential, RetryPolicy};

/// Where an upstream's API is reached when it is not at its own host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
}

impl Endpoint {
    /// `https://registry-1.example` or `http://127.0.0.1:5001` (a trailing
    /// `/` is allowed; a path is not).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!(
                "endpoint {url:?} must start with http:// or https://"
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty()
            || authority.contains(['/', '@', '?', '#'])
            || authority.contains(char::is_whitespace)
        {
            return Err(format!(
                "endpoint {url:?} must be scheme://host[:port] without a path"
            ));
        }
        Ok(Endpoint {
            https,
            authority: authority.to_string(),
        })
    }
}

/// One upstream registry the cache answers for.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The registry's name as images use it (`registry.k8s.io`); served for
    /// `?ns=<host>` and under `/v2/<host>/…`.
    pub host: String,
    /// Where its API is, when not `https://<host>` (Docker Hub's is known).
    pub endpoint: Option<Endpoint>,
    pub credential: Option<Credential>,
    /// How long a tag is served without asking the upstream again.
    pub tag_ttl: Duration,
    /// Accept pushes into this upstream's repositories.
    pub allow_push: bool,
}

impl UpstreamConfig {
    pub fn new(host: impl Into<String>) -> UpstreamConfig {
        UpstreamConfig {
            host: host.into(),
            endpoint: None,
            credential: None,
            tag_ttl: DEFAULT_TAG_TTL,
            allow_push: false,
        }
    }
}

pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(600);

/// Everything a [`crate::Cache`] is built from.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub upstreams: Vec<UpstreamConfig>,
    pub connect_timeout: Duration,
    /// Longest silence from an upstream before the request is given up.
    pub read_timeout: Duration,
    pub retry: RetryPolicy,
    /// Largest manifest accepted from an upstream.
    pub max_manifest_bytes: usize,
    /// Extra CA files trusted for upstreams.
    pub ca_files: Vec<PathBuf>,
}

impl CacheConfig {
    pub fn new(upstreams: Vec<UpstreamConfig>) -> CacheConfig {
        CacheConfig {
            upstreams,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            retry: RetryPolicy {
                max_attempts: 3,
                ..RetryPolicy::default()
            },
            max_manifest_bytes: 4 * 1024 * 1024,
            ca_files: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("https://registry-1.example/").unwrap(),
            Endpoint {
                https: true,
                authority: "registry-1.example".into()
            }
        );
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:5001").unwrap().authority,
            "127.0.0.1:5001"
        );
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("https://x/v2").is_err());
        assert!(Endpoint::parse("https://user@x").is_err());
        assert!(Endpoint::parse("https://").is_err());
    }
}
