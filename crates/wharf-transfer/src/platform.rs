//! `--platform os/arch[/variant]` and how it matches an index entry.

use wharf_oci::manifest::Platform;

pub use wharf_oci::platform::PlatformSpec;

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
