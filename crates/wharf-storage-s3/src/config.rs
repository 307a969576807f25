//! Where the bucket is and who we are to it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wharf_storage::SettingDuration;

use crate::S3Error;

/// S3 forbids parts smaller than this, except the last one of an upload.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3 forbids parts larger than this.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Parts are cut at this size unless configured otherwise: large enough that
/// request overhead is small, small enough that buffering one part per
/// upload in flight costs little memory.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// How long a presigned blob URL stays valid.
pub const DEFAULT_REDIRECT_EXPIRY: Duration = Duration::from_secs(20 * 60);

/// Everything needed to reach a bucket. Deserialises from the `[storage]`
/// keys of a configuration file (`type = "s3"` taken off by the caller):
/// `bucket`, `endpoint`, `region`, `prefix`, `path_style`,
/// `access_key_id` + `secret_access_key`, `profile`, `redirect`,
/// `redirect_expiry`, `request_timeout`, `part_size`; checked with
/// [`S3Config::validate`].
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "S3Keys")]
pub struct S3Config {
    /// `http(s)://host:port` of the S3 API; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Key prefix inside the bucket, so several registries can share one.
    pub prefix: String,
    /// `http://endpoint/bucket/key` rather than `http://bucket.endpoint/key`.
    pub path_style: bool,
    /// Explicit credentials; `None` reads the environment, then the shared
    /// credentials file.
    pub credentials: Option<Credentials>,
    /// Profile of the shared credentials file (`AWS_PROFILE`, else `default`).
    pub profile: Option<String>,
    /// Answer blob GETs with a redirect to a presigned URL.
    pub redirect: bool,
    pub redirect_expiry: Duration,
    pub part_size: u64,
    /// Per-request timeout towards the store.
    pub request_timeout: Duration,
}

impl S3Config {
    pub fn new(bucket: impl Into<String>) -> S3Config {
        S3Config {
            endpoint: None,
            region: "us-east-1".into(),
            bucket: bucket.into(),
            prefix: String::new(),
            path_style: true,
            credentials: None,
            profile: None,
            redirect: false,
            redirect_expiry: DEFAULT_REDIRECT_EXPIRY,
            part_size: DEFAULT_PART_SIZE,
            request_timeout: Duration::from_secs(60),
        }
    }

    /// Refuse settings S3 would reject later, mid-upload.
    pub fn validate(&self) -> Result<(), S3Error> {
        if self.bucket.is_empty() {
            return Err(S3Error::Config("bucket must not be empty".into()));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(S3Error::Config(format!(
                "part_size {} is outside what S3 accepts ({MIN_PART_SIZE} to {MAX_PART_SIZE} bytes)",
                self.part_size
            )));
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(S3Error::Config(format!(
                    "endpoint {endpoint:?} must start with http:// or https://"
                )));
            }
        }
        if self.prefix.starts_with('/') || self.prefix.contains("//") {
            return Err(S3Error::Config(format!(
                "prefix {:?} must not start with / or contain //",
                self.prefix
            )));
        }
        Ok(())
    }

    /// The endpoint as a human would name it in an error.
    pub fn describe(&self) -> String {
        format!(
            "bucket {:?} at {}",
            self.bucket,
            self.endpoint.as_deref().unwrap_or("AWS S3")
        )
    }
}

/// The `[storage]` keys as written; unknown keys are errors.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Keys {
    bucket: String,
    endpoint: Option<String>,
    region: Option<String>,
    #[serde(default)]
    prefix: String,
    path_style: Option<bool>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    profile: Option<String>,
    #[serde(default)]
    redirect: bool,
    #[serde(alias = "redirect_expiry_secs")]
    redirect_expiry: Option<SettingDuration>,
    #[serde(alias = "request_timeout_secs")]
    request_timeout: Option<SettingDuration>,
    part_size: Option<u64>,
}

impl TryFrom<S3Keys> for S3Config {
    type Error = S3Error;

    fn try_from(keys: S3Keys) -> Result<S3Config, S3Error> {
        let mut config = S3Config::new(keys.bucket);
        config.endpoint = keys.endpoint;
        if let Some(region) = keys.region {
            config.region = region;
        }
        config.prefix = keys.prefix;
        config.path_style = keys.path_style.unwrap_or(true);
        config.credentials = match (keys.access_key_id, keys.secret_access_key) {
            (Some(id), Some(secret)) => Some(Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: None,
            }),
            (None, None) => None,
            _ => {
                return Err(S3Error::Config(
                    "set both access_key_id and secret_access_key, or neither".into(),
                ))
            }
        };
        config.profile = keys.profile;
        config.redirect = keys.redirect;
        if let Some(expiry) = keys.redirect_expiry {
            config.redirect_expiry = expiry.get();
        }
        if let Some(timeout) = keys.request_timeout {
            if timeout.get().is_zero() {
                return Err(S3Error::Config(
                    "request_timeout must be longer than zero".into(),
                ));
            }
            config.request_timeout = timeout.get();
        }
        if let Some(part_size) = keys.part_size {
            config.part_size = part_size;
        }
        config.validate()?;
        Ok(config)
    }
}

/// An access key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, not even in debug logs.
        write!(f, "Credentials({}, secret hidden)", self.access_key_id)
    }
}

impl Credentials {
    /// The usual order: explicit configuration, then `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`), then the profile of
    /// the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
    /// `~/.aws/credentials`).
    pub fn resolve(
        explicit: Option<&Credentials>,
        profile: Option<&str>,
    ) -> Result<Credentials, S3Error> {
        if let Some(c) = explicit {
            return Ok(c.clone());
        }
        if let Some(c) = Credentials::from_env() {
            return Ok(c);
        }
        let profile = profile
            .map(str::to_string)
            .or_else(|| std::env::var("AWS_PROFILE").ok())
            .unwrap_or_else(|| "default".into());
        let file = shared_credentials_file();
        match file.as_deref().map(|f| (f, std::fs::read_to_string(f))) {
            Some((path, Ok(text))) => parse_profile(&text, &profile).ok_or_else(|| {
                S3Error::NoCredentials(format!(
                    "profile [{profile}] in {} has no aws_access_key_id and aws_secret_access_key",
                    path.display()
                ))
            }),
            _ => Err(S3Error::NoCredentials(
                "none in the configuration, in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or in ~/.aws/credentials".into(),
            )),
        }
    }

    fn from_env() -> Option<Credentials> {
        let id = std::env::var("AWS_ACCESS_KEY_ID").ok()?;
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").ok()?;
        Some(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: std::env::var("AWS_SESSION_TOKEN").ok(),
        })
    }
}

fn shared_credentials_file() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("AWS_SHARED_CREDENTIALS_FILE") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".aws/credentials"))
}

/// The keys of `[profile]` in an INI-style shared credentials file.
fn parse_profile(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = section.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = Some(value.trim().to_string());
            match key.trim() {
                "aws_access_key_id" => id = value,
                "aws_secret_access_key" => secret = value,
                "aws_session_token" => token = value,
                _ => {}
            }
        }
    }
    Some(Credentials {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialises_from_the_storage_keys() {
        let config: S3Config = toml::from_str(
            r#"
            bucket = "images"
            endpoint = "http://127.0.0.1:3900"
            region = "garage"
            access_key_id = "GK1"
            secret_access_key = "s3cr3t"
            redirect = true
            redirect_expiry = "15m"
            request_timeout_secs = 30
            part_size = 16777216
            "#,
        )
        .unwrap();
        assert_eq!(config.bucket, "images");
        assert_eq!(config.region, "garage");
        assert!(config.path_style, "path style is the default");
        assert_eq!(config.credentials.unwrap().access_key_id, "GK1");
        assert_eq!(config.redirect_expiry, Duration::from_secs(900));
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert_eq!(config.part_size, 16 << 20);
    }

    #[test]
    fn storage_key_mistakes_are_errors() {
        for (text, wanted) in [
            ("bucket = \"b\"\nbukket = 1", "unknown field"),
            ("endpoint = \"http://x\"", "bucket"),
            ("bucket = \"b\"\naccess_key_id = \"a\"", "neither"),
            ("bucket = \"b\"\npart_size = 1", "part_size"),
            (
                "bucket = \"b\"\nrequest_timeout = \"0s\"",
                "longer than zero",
            ),
            ("bucket = \"b\"\nendpoint = \"127.0.0.1:3900\"", "http://"),
        ] {
            let e = toml::from_str::<S3Config>(text).unwrap_err().to_string();
            assert!(e.contains(wanted), "{text}: {e}");
        }
    }

    #[test]
    fn shared_credentials_profiles_are_read() {
        let text = "[default]\naws_access_key_id = AKDEF\naws_secret_access_key = sdef\n\n# comment\n[ci]\naws_access_key_id=AKCI\naws_secret_access_key=sci\naws_session_token = tok\n";
        let d = parse_profile(text, "default").unwrap();
        assert_eq!(
            (d.access_key_id.as_str(), d.secret_access_key.as_str()),
            ("AKDEF", "sdef")
        );
        let ci = parse_profile(text, "ci").unwrap();
        assert_eq!(ci.access_key_id, "AKCI");
        assert_eq!(ci.session_token.as_deref(), Some("tok"));
        assert!(parse_profile(text, "other").is_none());
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "very-secret".into(),
            session_token: None,
        };
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[test]
    fn part_sizes_s3_would_refuse_are_rejected() {
        let mut c = S3Config::new("b");
        c.part_size = 1024 * 1024;
        assert!(c.validate().is_err());
        c.part_size = MIN_PART_SIZE;
        assert!(c.validate().is_ok());
        c.endpoint = Some("localhost:3900".into());
        assert!(c.validate().is_err());
    }
}
