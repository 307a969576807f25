//! Image references (`registry.k8s.io/coredns/coredns:v1.11.3`,
//! `alpine@sha256:…`), normalised the way Docker and containerd do.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};
use crate::name::{NameError, RepositoryName, Tag};

pub const DOCKER_HUB: &str = "docker.io";
/// The API endpoint behind `docker.io`.
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

/// What a manifest request names: a tag or a digest.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Target {
    Tag(Tag),
    Digest(Digest),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tag(t) => t.fmt(f),
            Target::Digest(d) => d.fmt(f),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("invalid registry host {0:?}")]
    InvalidHost(String),
    #[error("invalid repository in {reference:?}: {source}")]
    Name {
        reference: String,
        source: NameError,
    },
    #[error("invalid tag in {reference:?}: {source}")]
    Tag {
        reference: String,
        source: NameError,
    },
    #[error("invalid digest in {reference:?}: {source}")]
    Digest {
        reference: String,
        source: DigestError,
    },
}

/// A fully-qualified image reference: registry host, repository, and a tag
/// and/or digest. When both are given, the digest is what gets pulled.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Reference {
    host: String,
    repository: RepositoryName,
    tag: Option<Tag>,
    digest: Option<Digest>,
}

fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || host.starts_with('[') => (n, Some(p)),
        _ => (host, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = if name.starts_with('[') && name.ends_with(']') {
        name[1..name.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    };
    port_ok && name_ok
}

impl Reference {
    pub fn new(host: &str, repository: RepositoryName, target: Target) -> Reference {
        let (tag, digest) = match target {
            Target::Tag(t) => (Some(t), None),
            Target::Digest(d) => (None, Some(d)),
        };
        Reference {
            host: host.to_string(),
            repository,
            tag,
            digest,
        }
    }

    /// Parse and normalise. Returns the reference and whether normalisation
    /// changed what the user wrote (so a CLI can say so).
    pub fn parse_normalized(s: &str) -> Result<(Reference, bool), ReferenceError> {
        let r: Reference = s.parse()?;
        let changed = r.to_string() != s;
        Ok((r, changed))
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn repository(&self) -> &RepositoryName {
        &self.repository
    }

    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn target(&self) -> Target {
        match (&self.digest, &self.tag) {
            (Some(d), _) => Target::Digest(d.clone()),
            (None, Some(t)) => Target::Tag(t.clone()),
            (None, None) => Target::Tag("latest".parse().expect("valid tag")),
        }
    }

    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The host to open connections to (`docker.io` is served elsewhere).
    pub fn endpoint_host(&self) -> &str {
        if self.host == DOCKER_HUB {
            DOCKER_HUB_ENDPOINT
        } else {
            &self.host
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse().map_err(|source| ReferenceError::Digest {
                    reference: s.to_string(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        // The tag separator is a ':' after the last '/', so "host:5000/a" has none.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag_str = &rest[last_slash + i + 1..];
                let tag = tag_str.parse().map_err(|source| ReferenceError::Tag {
                    reference: s.to_string(),
                    source,
                })?;
                (&rest[..last_slash + i], Some(tag))
            }
            None => (rest, None),
        };
        let (host, repo) = match path.split_once('/') {
            Some((first, remainder)) if looks_like_host(first) => {
                (first.to_string(), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), path.to_string()),
        };
        let host = match host.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => host,
        };
        if !valid_host(&host) {
            return Err(ReferenceError::InvalidHost(host));
        }
        let repo = if host == DOCKER_HUB && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo
        };
        let repository = repo.parse().map_err(|source| ReferenceError::Name {
            reference: s.to_string(),
            source,
        })?;
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".parse().expect("valid tag"))
        } else {
            tag
        };
        Ok(Reference {
            host,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("alpine:3.21"), "docker.io/library/alpine:3.21");
        assert_eq!(norm("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(
            norm("index.docker.io/library/alpine:3"),
            "docker.io/library/alpine:3"
        );
        assert_eq!(
            norm("registry.k8s.io/coredns/coredns:v1.11.3"),
            "registry.k8s.io/coredns/coredns:v1.11.3"
        );
        assert_eq!(norm("localhost/a"), "localhost/a:latest");
        assert_eq!(norm("localhost:5000/a/b:1"), "localhost:5000/a/b:1");
        assert_eq!(norm("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
    }

    #[test]
    fn digest_references() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r: Reference = format!("alpine@{d}").parse().unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.target(), Target::Digest(d.parse().unwrap()));
        let r: Reference = format!("alpine:3.21@{d}").parse().unwrap();
        assert_eq!(r.tag().unwrap().as_str(), "3.21");
        assert!(matches!(r.target(), Target::Digest(_)));
    }

    #[test]
    fn reports_normalisation() {
        assert!(Reference::parse_normalized("alpine").unwrap().1);
        assert!(
            !Reference::parse_normalized("docker.io/library/alpine:latest")
                .unwrap()
                .1
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!("".parse::<Reference>().is_err());
        assert!("UPPER/case".parse::<Reference>().is_err());
        assert!("a:b:c".parse::<Reference>().is_err());
        assert!("host..io/a".parse::<Reference>().is_err());
        assert!("alpine@sha256:zz".parse::<Reference>().is_err());
        assert!("alpine:".parse::<Reference>().is_err());
    }
}
