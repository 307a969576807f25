//! The one way a configuration file spells a length of time, for every key
//! of `wharf.toml` (`[gc] grace`, `[cache] tag_ttl`, `[auth] token_ttl`,
//! `[server] idle_timeout`, `[storage] request_timeout`, …): a number and a
//! unit, units joined (`"90s"`, `"15m"`, `"1h30m"`, `"1h 30m"`, `"30d"`,
//! `"500ms"`), or a bare number of seconds (`"45"`, `45`). It lives here,
//! beside the storage settings, because the S3 store's settings deserialise
//! straight into their own struct and use it too.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration as configuration files write it. Deserialises from a string
/// or a whole number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SettingDuration(pub Duration);

impl SettingDuration {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl From<SettingDuration> for Duration {
    fn from(d: SettingDuration) -> Duration {
        d.0
    }
}

/// Why a text is not a duration, with what would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError(String);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a duration: use a number and a unit, e.g. \"30s\", \"15m\", \"1h30m\", \"30d\"",
            self.0
        )
    }
}

impl std::error::Error for DurationError {}

impl FromStr for SettingDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<SettingDuration, DurationError> {
        let trimmed = text.trim();
        if let Ok(seconds) = trimmed.parse::<u64>() {
            return Ok(SettingDuration(Duration::from_secs(seconds)));
        }
        // Months and years have no fixed length: refuse them rather than
        // guess (humantime reads "1M" as 30.44 days and "1m" as a minute).
        let has_calendar_unit = trimmed.contains('M') || trimmed.contains('y');
        match humantime::parse_duration(trimmed) {
            Ok(d) if !has_calendar_unit && !trimmed.is_empty() => Ok(SettingDuration(d)),
            _ => Err(DurationError(text.to_string())),
        }
    }
}

impl fmt::Display for SettingDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for SettingDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SettingDuration, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SettingDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"15m\", \"1h30m\" or \"30d\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SettingDuration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SettingDuration, E> {
                Ok(SettingDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SettingDuration, E> {
                u64::try_from(v)
                    .map(|s| SettingDuration(Duration::from_secs(s)))
                    .map_err(|_| E::custom(format!("{v} is not a duration: it is negative")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> u64 {
        text.parse::<SettingDuration>().unwrap().get().as_secs()
    }

    #[test]
    fn every_spelling_the_keys_used_to_accept() {
        assert_eq!(secs("90s"), 90);
        assert_eq!(secs("15m"), 900);
        assert_eq!(secs("24h"), 86_400);
        assert_eq!(secs("30d"), 30 * 86_400);
        assert_eq!(secs("1h30m"), 5_400);
        assert_eq!(secs("1h 30m"), 5_400);
        assert_eq!(secs("1d"), 86_400);
        assert_eq!(secs("45"), 45);
        assert_eq!(secs("0"), 0);
        let ms: SettingDuration = "500ms".parse().unwrap();
        assert_eq!(ms.get(), Duration::from_millis(500));
    }

    #[test]
    fn mistakes_are_refused_with_an_example() {
        for bad in ["", "ten minutes", "10x", "1M", "2y", "-5s"] {
            let e = bad.parse::<SettingDuration>().unwrap_err();
            assert!(e.to_string().contains("\"15m\""), "{bad}: {e}");
        }
    }

    #[test]
    fn deserialises_from_strings_and_seconds() {
        #[derive(serde::Deserialize)]
        struct S {
            a: SettingDuration,
            b: SettingDuration,
        }
        let s: S = serde_json::from_str(r#"{"a": "1h30m", "b": 60}"#).unwrap();
        assert_eq!(s.a.get().as_secs(), 5_400);
        assert_eq!(s.b.get().as_secs(), 60);
        assert!(serde_json::from_str::<S>(r#"{"a": "soon", "b": 1}"#).is_err());
    }
}
