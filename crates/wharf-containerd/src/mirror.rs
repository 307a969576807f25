//! Mirror URLs, host capabilities and durations as containerd parses them
//! in hosts.toml (`parseHostConfig`, containerd 1.6–2.3).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::names::split_host_port;

/// `http` or `https`: the only schemes containerd's resolver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A validated mirror URL: `scheme://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MirrorUrl {
    scheme: Scheme,
    authority: String,
    /// Empty, or starting with '/' and without a trailing '/'.
    path: String,
}

impl MirrorUrl {
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidMirror {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = split_scheme(input).ok_or_else(|| {
            bad("must start with http:// or https:// (containerd assumes https:// otherwise)")
        })?;
        if rest.contains(['?', '#']) {
            return Err(bad(
                "query strings and fragments are not used by containerd",
            ));
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not supported; use the CRI registry auth settings",
            ));
        }
        let (host, _) = split_host_port(authority).map_err(|r| bad(&r))?;
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad("missing or invalid host"));
        }
        Ok(MirrorUrl {
            scheme,
            authority: authority.to_ascii_lowercase(),
            path: clean_path(path),
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// `host[:port]`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// True when the path says more than the standard API root. containerd
    /// appends `/v2` to any path not ending in it unless `override_path` is
    /// set, so only such URLs need `override_path`.
    pub fn has_path_beyond_api_root(&self) -> bool {
        !self.path.is_empty() && self.path != "/v2"
    }
}

impl fmt::Display for MirrorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority,
            self.path
        )
    }
}

impl FromStr for MirrorUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        MirrorUrl::parse(s)
    }
}

fn split_scheme(input: &str) -> Option<(Scheme, &str)> {
    let (scheme, rest) = input.split_once("://")?;
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some((Scheme::Http, rest)),
        "https" => Some((Scheme::Https, rest)),
        _ => None,
    }
}

/// Collapse repeated slashes and drop a trailing one, like Go's `path.Clean`
/// does for the paths containerd uses.
fn clean_path(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        String::new()
    } else {
        format!("/{}", segments.join("/"))
    }
}

/// What a host may be used for (`capabilities` in hosts.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    Pull,
    Resolve,
    Push,
    /// containerd 2.2+ only; older releases reject the whole file.
    Referrers,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Pull => "pull",
            Capability::Resolve => "resolve",
            Capability::Push => "push",
            Capability::Referrers => "referrers",
        }
    }

    /// containerd lower-cases capability names before matching them.
    pub fn parse(s: &str) -> Option<Capability> {
        match s.to_ascii_lowercase().as_str() {
            "pull" => Some(Capability::Pull),
            "resolve" => Some(Capability::Resolve),
            "push" => Some(Capability::Push),
            "referrers" => Some(Capability::Referrers),
            _ => None,
        }
    }
}

/// Validate a Go `time.ParseDuration` string such as `1s`, `500ms` or
/// `1m30s` (containerd parses `dial_timeout` with it and rejects the whole
/// hosts.toml on failure).
pub fn is_go_duration(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body == "0" {
        return true;
    }
    let mut rest = body;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        match split_duration_term(rest) {
            Some(next) => rest = next,
            None => return false,
        }
    }
    true
}

/// Consume one `<number><unit>` term, returning what follows it.
fn split_duration_term(s: &str) -> Option<&str> {
    let number_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number = &s[..number_len];
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let after = &s[number_len..];
    const UNITS: [&str; 7] = ["ns", "us", "µs", "ms", "s", "m", "h"];
    // Longest units first so "ms" is not read as "m" followed by "s".
    let mut units = UNITS;
    units.sort_by_key(|u| std::cmp::Reverse(u.len()));
    units.iter().find_map(|unit| after.strip_prefix(unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises_mirror_urls() {
        let m = MirrorUrl::parse("http://Registry.Home.Arpa:5000/").unwrap();
        assert_eq!(m.to_string(), "http://registry.home.arpa:5000");
        assert!(!m.has_path_beyond_api_root());
        let p = MirrorUrl::parse("https://nexus.example//repository/docker/").unwrap();
        assert_eq!(p.path(), "/repository/docker");
        assert!(p.has_path_beyond_api_root());
        assert!(!MirrorUrl::parse("https://m.example/v2")
            .unwrap()
            .has_path_beyond_api_root());
    }

    #[test]
    fn rejects_bad_mirror_urls() {
        for bad in [
            "registry:5000",
            "ftp://x",
            "https://",
            "https://u:p@h",
            "https://h?x=1",
            "https://h:99999",
        ] {
            assert!(MirrorUrl::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn go_durations() {
        for ok in ["1s", "500ms", "1m30s", "1.5h", "0", "10us", "3µs"] {
            assert!(is_go_duration(ok), "{ok}");
        }
        for bad in ["", "1", "s", "1x", "1.2.3s", "one second", "1 s"] {
            assert!(!is_go_duration(bad), "{bad}");
        }
    }
}
