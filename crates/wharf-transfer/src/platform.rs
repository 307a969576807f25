//! `--platform os/arch[/variant]` and how it matches an index entry.

use std::fmt;
use std::str::FromStr;

use wharf_oci::manifest::Platform;

/// A platform asked for on the command line or in a sync file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    /// `None` matches every variant (`linux/arm` takes v6 and v7).
    pub variant: Option<String>,
}

impl FromStr for PlatformSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid) {
            return Err(format!(
                "invalid platform {s:?}: expected os/arch[/variant]"
            ));
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

impl PlatformSpec {
    pub fn matches(&self, platform: &Platform) -> bool {
        self.os == platform.os
            && self.architecture == platform.architecture
            && self
                .variant
                .as_ref()
                .is_none_or(|v| platform.variant.as_deref() == Some(v.as_str()))
    }
}

/// Whether an index entry is kept: every entry when nothing was asked for,
/// else entries whose platform one of `specs` matches. Entries without a
/// platform (attestations) go only with an unfiltered copy.
pub fn wanted(specs: &[PlatformSpec], platform: Option<&Platform>) -> bool {
    specs.is_empty() || platform.is_some_and(|p| specs.iter().any(|s| s.matches(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: arch.into(),
            os: os.into(),
            variant: variant.map(Into::into),
            os_version: None,
            os_features: None,
        }
    }

    #[test]
    fn parses_and_matches() {
        let arm: PlatformSpec = "linux/arm64".parse().unwrap();
        assert!(arm.matches(&platform("linux", "arm64", Some("v8"))));
        assert!(!arm.matches(&platform("linux", "amd64", None)));
        let v7: PlatformSpec = "linux/arm/v7".parse().unwrap();
        assert!(!v7.matches(&platform("linux", "arm", Some("v6"))));
        assert_eq!(v7.to_string(), "linux/arm/v7");
        assert!("linux".parse::<PlatformSpec>().is_err());
        assert!("linux/amd64/v1/x".parse::<PlatformSpec>().is_err());
        assert!("linux//amd64".parse::<PlatformSpec>().is_err());
    }

    #[test]
    fn entries_without_platform_only_in_full_copies() {
        assert!(wanted(&[], None));
        assert!(!wanted(&["linux/amd64".parse().unwrap()], None));
    }
}
