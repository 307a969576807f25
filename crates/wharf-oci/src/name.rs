//! Repository names and tags, validated with the distribution spec's grammar.

use std::fmt;
use std::str::FromStr;

/// Longest repository name accepted. The spec suggests clients keep host plus
/// name under 255 characters; distribution enforces the same bound.
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("repository name {0:?} does not match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*")]
    Invalid(String),
    #[error("repository name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("tag {0:?} does not match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    InvalidTag(String),
}

/// A repository name such as `library/alpine` or `docker.io/library/alpine`.
///
/// Every component starts and ends with `[a-z0-9]`, so a valid name can never
/// contain `..`, an empty component or a leading `/`: it is safe to use as a
/// relative storage path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

impl RepositoryName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// `prefix/self`, validated again (the prefix may be invalid).
    pub fn prefixed(&self, prefix: &str) -> Result<RepositoryName, NameError> {
        format!("{prefix}/{}", self.0).parse()
    }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn is_valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !is_alnum(b[i]) {
            return false;
        }
    }
    true
}

impl FromStr for RepositoryName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if s.split('/').all(is_valid_component) {
            Ok(RepositoryName(s.to_string()))
        } else {
            Err(NameError::Invalid(s.to_string()))
        }
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepositoryName({})", self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`. It can never be `.` or `..`
/// (it cannot start with a dot), so it is a safe file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
        let rest_ok = b[1.min(b.len())..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
        if first_ok && rest_ok && b.len() <= 128 {
            Ok(Tag(s.to_string()))
        } else {
            Err(NameError::InvalidTag(s.to_string()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

/// The repository path component that stands for registry `host`, as used by
/// mirrors (`?ns=docker.io` → `docker.io/…`). Hosts are case-insensitive, so
/// they are lower-cased; a port cannot appear in a repository name, so
/// `host:5000` becomes `host_5000`.
pub fn host_component(host: &str) -> Result<String, NameError> {
    let c = host.to_ascii_lowercase().replace(':', "_");
    if is_valid_component(&c) {
        Ok(c)
    } else {
        Err(NameError::Invalid(host.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_as_components() {
        assert_eq!(host_component("docker.io").unwrap(), "docker.io");
        assert_eq!(
            host_component("Registry.K8s.io").unwrap(),
            "registry.k8s.io"
        );
        assert_eq!(host_component("localhost:5000").unwrap(), "localhost_5000");
        assert!(host_component("a/b").is_err());
        assert!(host_component("..").is_err());
        assert!(host_component("").is_err());
    }

    #[test]
    fn accepts_spec_names() {
        for ok in [
            "alpine",
            "library/alpine",
            "docker.io/library/alpine",
            "registry.k8s.io/coredns/coredns",
            "a__b",
            "a---b",
            "a_b.c-d",
            "0",
        ] {
            assert!(ok.parse::<RepositoryName>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "Alpine",
            "a//b",
            "/a",
            "a/",
            "..",
            "a/../b",
            "a/./b",
            "a___b",
            "a.-b",
            "-a",
            "a-",
            "a b",
            "a:5000/b",
            "_manifests",
        ] {
            assert!(bad.parse::<RepositoryName>().is_err(), "{bad}");
        }
        assert_eq!(
            "a".repeat(256).parse::<RepositoryName>(),
            Err(NameError::TooLong)
        );
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.11.3", "_x", "A-b.c_d", &"a".repeat(128)] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "-a", "a/b", "a:b", &"a".repeat(129)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad}");
        }
    }
}
