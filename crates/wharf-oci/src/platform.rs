//! Platform selectors (`linux/amd64`, `linux/arm64/v8`): parsed from
//! `--platform`, matched against index entries the way containerd's default
//! matcher does for simple cases.

use std::fmt;
use std::str::FromStr;

/// A platform asked for, with Go's names for operating system and
/// architecture. `variant: None` matches every variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8")]
pub struct PlatformError(pub String);

impl PlatformSpec {
    /// The platform of this node, in Go's names.
    pub fn of_this_node() -> PlatformSpec {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        PlatformSpec {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether an index entry's platform is this one. Without a variant any
    /// variant matches; `arm64` without a variant is `arm64/v8`.
    pub fn matches(&self, p: &crate::manifest::Platform) -> bool {
        if p.os != self.os || p.architecture != self.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(wanted) => {
                let normal = |v: Option<&str>| match (self.architecture.as_str(), v) {
                    ("arm64", None | Some("")) => Some("v8".to_owned()),
                    (_, v) => v.filter(|v| !v.is_empty()).map(str::to_owned),
                };
                normal(Some(wanted)) == normal(p.variant.as_deref())
            }
        }
    }
}

impl FromStr for PlatformSpec {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid) {
            return Err(PlatformError(s.to_owned()));
        }
        Ok(PlatformSpec {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// `os/arch[/variant]` of an index entry, for listing what an image has.
pub fn describe(p: &crate::manifest::Platform) -> String {
    match p.variant.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci(os: &str, arch: &str, variant: Option<&str>) -> crate::manifest::Platform {
        crate::manifest::Platform {
            architecture: arch.to_owned(),
            os: os.to_owned(),
            variant: variant.map(str::to_owned),
            os_version: None,
            os_features: None,
        }
    }

    #[test]
    fn parses_and_prints() {
        let p: PlatformSpec = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!("linux".parse::<PlatformSpec>().is_err());
        assert!("linux//x".parse::<PlatformSpec>().is_err());
        assert!("a/b/c/d".parse::<PlatformSpec>().is_err());
    }

    #[test]
    fn matches_variants_like_containerd() {
        let arm64: PlatformSpec = "linux/arm64/v8".parse().unwrap();
        assert!(arm64.matches(&oci("linux", "arm64", None)));
        assert!(!arm64.matches(&oci("linux", "amd64", None)));
        let armv7: PlatformSpec = "linux/arm/v7".parse().unwrap();
        assert!(!armv7.matches(&oci("linux", "arm", Some("v6"))));
        let any_arm: PlatformSpec = "linux/arm".parse().unwrap();
        assert!(any_arm.matches(&oci("linux", "arm", Some("v6"))));
    }
}
