//! containerd releases and config.toml schema versions, and what each
//! supports. Every rule cites the containerd release it was read from.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The `version = N` schema of a containerd config.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigVersion {
    /// No `version` key: containerd 1.x reads short plugin names
    /// (`[plugins.cri]`); containerd 2.x migrates it (v2.0
    /// `cmd/containerd/server/config/config.go`, `v1Migrate`).
    V1,
    /// Fully qualified plugin IDs; CRI lives in `io.containerd.grpc.v1.cri`
    /// (containerd 1.6, 1.7; 2.x migrates it).
    V2,
    /// containerd 2.0–2.2: CRI split into `io.containerd.cri.v1.images`
    /// and `io.containerd.cri.v1.runtime` (v2.0 `plugins/cri/images/plugin.go`).
    V3,
    /// containerd 2.3+: server sections moved into plugins (v2.3
    /// `serviceMigrate`); the CRI plugin IDs are the same as in version 3.
    V4,
}

/// CRI plugin ID that holds the `registry` table in versions 1 and 2.
pub const CRI_V2_PLUGIN: &str = "io.containerd.grpc.v1.cri";
/// CRI image plugin ID (versions 3 and 4) that holds the `registry` table.
pub const CRI_IMAGES_PLUGIN: &str = "io.containerd.cri.v1.images";
/// CRI runtime plugin ID (versions 3 and 4).
pub const CRI_RUNTIME_PLUGIN: &str = "io.containerd.cri.v1.runtime";
/// The short CRI plugin name of version-1 files (containerd 1.x).
pub const CRI_V1_PLUGIN: &str = "cri";

impl ConfigVersion {
    /// The newest schema wharf knows (containerd v2.3 `version.ConfigVersion`).
    pub const NEWEST: ConfigVersion = ConfigVersion::V4;

    pub fn from_number(n: i64) -> Result<Self> {
        match n {
            // containerd treats 0 like 1 (v2.0 `migrations`: "Version 0 is not defined").
            0 | 1 => Ok(ConfigVersion::V1),
            2 => Ok(ConfigVersion::V2),
            3 => Ok(ConfigVersion::V3),
            4 => Ok(ConfigVersion::V4),
            other => Err(Error::UnsupportedConfigVersion(other)),
        }
    }

    pub fn number(self) -> u8 {
        match self {
            ConfigVersion::V1 => 1,
            ConfigVersion::V2 => 2,
            ConfigVersion::V3 => 3,
            ConfigVersion::V4 => 4,
        }
    }

    /// The plugin whose `registry` table carries `config_path`.
    pub fn registry_plugin(self) -> &'static str {
        match self {
            ConfigVersion::V1 => CRI_V1_PLUGIN,
            ConfigVersion::V2 => CRI_V2_PLUGIN,
            ConfigVersion::V3 | ConfigVersion::V4 => CRI_IMAGES_PLUGIN,
        }
    }

    /// Whether wharf writes this version (version 1 was removed in containerd 2.0).
    pub fn is_generation_target(self) -> bool {
        self != ConfigVersion::V1
    }

    /// Human description of which containerd releases read this schema natively.
    pub fn releases(self) -> &'static str {
        match self {
            ConfigVersion::V1 => "containerd 1.x (deprecated; 2.x migrates it)",
            ConfigVersion::V2 => "containerd 1.6 and 1.7",
            ConfigVersion::V3 => "containerd 2.0, 2.1 and 2.2",
            ConfigVersion::V4 => "containerd 2.3 and later",
        }
    }
}

impl fmt::Display for ConfigVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

impl FromStr for ConfigVersion {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let n: i64 = s
            .trim()
            .parse()
            .map_err(|_| Error::InvalidOption(format!("config version {s:?} is not a number")))?;
        ConfigVersion::from_number(n)
    }
}

/// A containerd release such as `1.7`, `2.0.7` or `v2.1.3`.
///
/// A missing patch number means "any patch of that minor release", so
/// features added in a patch release are treated as absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerdRelease {
    pub major: u32,
    pub minor: u32,
    pub patch: Option<u32>,
}

impl ContainerdRelease {
    pub const fn new(major: u32, minor: u32, patch: Option<u32>) -> Self {
        ContainerdRelease {
            major,
            minor,
            patch,
        }
    }

    fn at_least(self, major: u32, minor: u32, patch: u32) -> bool {
        let own = (self.major, self.minor, self.patch.unwrap_or(0));
        own >= (major, minor, patch)
    }

    /// The newest release whose behaviour wharf has checked (2.4.2 observed).
    pub const NEWEST_KNOWN: ContainerdRelease = ContainerdRelease::new(2, 4, None);

    /// A release from a runtime's own version text (`1.6.20~ds1`,
    /// `2.4.2+unknown`, `v3.0.0`), or the nearest release wharf knows with a
    /// sentence saying so. `None` when the text names no release at all.
    pub fn nearest_known(text: &str) -> Option<(ContainerdRelease, Option<String>)> {
        if let Ok(release) = text.parse::<ContainerdRelease>() {
            return Some(match release.is_newer_than_known() {
                false => (release, None),
                true => (release, Some(unseen(text, Self::NEWEST_KNOWN))),
            });
        }
        let core = text.trim().trim_start_matches('v');
        let major: u32 = core.split(['.', '~', '-', '+']).next()?.parse().ok()?;
        let nearest = if major >= 2 {
            Self::NEWEST_KNOWN
        } else {
            ContainerdRelease::new(1, 6, None)
        };
        Some((nearest, Some(unseen(text, nearest))))
    }

    /// Later than every release wharf has checked.
    pub fn is_newer_than_known(self) -> bool {
        (self.major, self.minor) > (Self::NEWEST_KNOWN.major, Self::NEWEST_KNOWN.minor)
    }

    pub fn is_1x(self) -> bool {
        self.major == 1
    }

    /// The config.toml version this release reads natively.
    pub fn config_version(self) -> ConfigVersion {
        if self.is_1x() {
            ConfigVersion::V2
        } else if self.at_least(2, 3, 0) {
            ConfigVersion::V4
        } else {
            ConfigVersion::V3
        }
    }

    /// `dial_timeout` in hosts.toml: added in v2.0.7 and v2.1.0, never in 1.x
    /// (checked in every tag's `remotes/docker/config/hosts.go`).
    pub fn supports_dial_timeout(self) -> bool {
        match (self.major, self.minor) {
            (2, 0) => self.at_least(2, 0, 7),
            _ => self.at_least(2, 1, 0),
        }
    }

    /// The CRI's `config_path` when config.toml sets none: from v2.2.0
    /// `DefaultImageConfig` (internal/cri/config/config_unix.go) fills it in;
    /// before, there is no default and no hosts.toml is read.
    pub fn default_config_path(self) -> Option<&'static str> {
        self.at_least(2, 2, 0)
            .then_some("/etc/containerd/certs.d:/etc/docker/certs.d")
    }

    /// The release in `containerd --version` output
    /// (`containerd github.com/containerd/containerd 1.6.20~ds1 …`).
    pub fn from_version_output(text: &str) -> Option<ContainerdRelease> {
        text.split_whitespace()
            .filter(|w| {
                w.trim_start_matches('v')
                    .starts_with(|c: char| c.is_ascii_digit())
            })
            .find_map(|w| w.parse().ok())
    }

    /// The CRI pulls through the transfer service unless
    /// `use_local_image_pull = true`: from v2.1.0 (the key and the default
    /// appear in 2.1's `ImageConfig`; 2.0.14's CRI still pulls itself,
    /// 2.4.2's goes through the transfer service, both observed). That
    /// path unpacks only into the snapshotters of the transfer service's
    /// `unpack_config`.
    pub fn cri_pulls_through_transfer_service(self) -> bool {
        self.at_least(2, 1, 0)
    }

    /// The `referrers` capability: added in v2.2.0. Older releases reject
    /// the whole hosts.toml on an unknown capability.
    pub fn supports_referrers(self) -> bool {
        self.at_least(2, 2, 0)
    }

    /// Since v1.7.16 and v2.0.0 an `http://` host with TLS settings is tried
    /// with HTTPS first, then plain HTTP (`docker.NewHTTPFallback`).
    pub fn http_host_tries_tls_first(self) -> bool {
        match self.major {
            1 => self.minor == 7 && self.at_least(1, 7, 16),
            _ => true,
        }
    }
}

impl fmt::Display for ContainerdRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.patch {
            Some(p) => write!(f, "{}.{}.{}", self.major, self.minor, p),
            None => write!(f, "{}.{}", self.major, self.minor),
        }
    }
}

impl FromStr for ContainerdRelease {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidContainerdVersion {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = input.trim().trim_start_matches('v');
        // Debian-style suffixes such as "1.6.20~ds1" carry no extra meaning here.
        let core = trimmed.split(['~', '-', '+']).next().unwrap_or_default();
        let parts: Vec<&str> = core.split('.').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad(
                "expected MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. 1.7 or 2.0.7",
            ));
        }
        let number = |s: &str| s.parse::<u32>().map_err(|_| bad("not a number"));
        let release = ContainerdRelease {
            major: number(parts[0])?,
            minor: number(parts[1])?,
            patch: parts.get(2).map(|p| number(p)).transpose()?,
        };
        check_supported(release).map_err(|reason| bad(&reason))?;
        Ok(release)
    }
}

fn unseen(text: &str, nearest: ContainerdRelease) -> String {
    format!(
        "containerd {text} is a release wharf has never seen: modelled as {nearest}, the nearest it \
         knows; what this release really does may differ"
    )
}

/// hosts.toml exists since 1.5, but wharf only tracks maintained schemas.
fn check_supported(release: ContainerdRelease) -> std::result::Result<(), String> {
    match release.major {
        1 if release.minor >= 6 => Ok(()),
        2 => Ok(()),
        _ => Err("wharf supports containerd 1.6, 1.7 and 2.x".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_config_path_from_2_2() {
        let r = |s: &str| s.parse::<ContainerdRelease>().unwrap();
        assert_eq!(r("1.7").default_config_path(), None);
        assert_eq!(r("2.1.4").default_config_path(), None);
        assert_eq!(
            r("2.2.0").default_config_path(),
            Some("/etc/containerd/certs.d:/etc/docker/certs.d")
        );
    }

    #[test]
    fn release_from_version_output() {
        let debian = "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1\n";
        assert_eq!(
            ContainerdRelease::from_version_output(debian),
            Some(ContainerdRelease::new(1, 6, Some(20)))
        );
        let upstream = "containerd containerd.io v2.2.0 1c4457e00facac03ce1d75f7b6777a7a851e5c41\n";
        assert_eq!(
            ContainerdRelease::from_version_output(upstream),
            Some(ContainerdRelease::new(2, 2, Some(0)))
        );
        assert_eq!(
            ContainerdRelease::from_version_output("command not found"),
            None
        );
    }

    use super::*;

    fn rel(s: &str) -> ContainerdRelease {
        s.parse().unwrap()
    }

    #[test]
    fn dial_timeout_support_follows_the_tags() {
        assert!(!rel("1.7.34").supports_dial_timeout());
        assert!(!rel("2.0").supports_dial_timeout());
        assert!(!rel("2.0.6").supports_dial_timeout());
        assert!(rel("2.0.7").supports_dial_timeout());
        assert!(rel("2.1").supports_dial_timeout());
    }

    #[test]
    fn config_versions_per_release() {
        assert_eq!(rel("1.6.20~ds1").config_version(), ConfigVersion::V2);
        assert_eq!(rel("v2.2.1").config_version(), ConfigVersion::V3);
        assert_eq!(rel("2.3").config_version(), ConfigVersion::V4);
    }

    #[test]
    fn unseen_releases_map_to_the_nearest_known_with_a_warning() {
        let (r, note) = ContainerdRelease::nearest_known("2.4.2+unknown").unwrap();
        assert_eq!((r, note), (ContainerdRelease::new(2, 4, Some(2)), None));
        let (r, note) = ContainerdRelease::nearest_known("3.0.1").unwrap();
        assert_eq!(r, ContainerdRelease::NEWEST_KNOWN);
        assert!(note.unwrap().contains("never seen"));
        let (_, note) = ContainerdRelease::nearest_known("2.9.0").unwrap();
        assert!(note.is_some());
        assert!(ContainerdRelease::nearest_known("nightly").is_none());
    }

    #[test]
    fn rejects_unsupported_releases() {
        assert!("1.5".parse::<ContainerdRelease>().is_err());
        assert!("3.0".parse::<ContainerdRelease>().is_err());
        assert!("two".parse::<ContainerdRelease>().is_err());
    }
}
