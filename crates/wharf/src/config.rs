//! `wharf.toml`: the same settings as the flags. Unknown keys are errors,
//! never silently ignored — the mistake wharf exists to prevent elsewhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::cli::{Hint, LogFormat, ServeArgs};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub registry: RegistrySection,
    #[serde(default)]
    pub gc: GcSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub log_format: Option<LogFormat>,
    /// HTTPS: PEM certificate chain and private key (both or neither).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Only "filesystem" for now.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub root: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    pub max_manifest_bytes: Option<usize>,
    pub sparse_indexes: Option<bool>,
    pub delete_enabled: Option<bool>,
}

/// `[gc]`: garbage collection for `wharf gc` and `wharf serve`'s schedule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcSection {
    /// `wharf serve` collects this often ("24h"); unset: never.
    pub schedule: Option<String>,
    pub grace: Option<String>,
    pub settle: Option<String>,
    pub upload_max_age: Option<String>,
    #[serde(default)]
    pub retention: Vec<RetentionSection>,
}

/// One `[[gc.retention]]` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    pub repos: String,
    pub keep_last: Option<usize>,
    #[serde(default)]
    pub keep_tags: Vec<String>,
    pub min_age: Option<String>,
    pub max_age: Option<String>,
}

impl GcSection {
    /// The collection's options (not a dry run).
    pub fn options(&self) -> anyhow::Result<wharf_storage::GcOptions> {
        let defaults = wharf_storage::GcOptions::default();
        let duration = |key: &str, value: &Option<String>, default: Duration| match value {
            Some(text) => parse_duration(text).with_context(|| format!("[gc] {key}")),
            None => Ok(default),
        };
        let mut retention = Vec::new();
        for (i, rule) in self.retention.iter().enumerate() {
            retention.push(rule.to_rule().with_context(|| {
                format!(
                    "[[gc.retention]] number {} (repos = {:?})",
                    i + 1,
                    rule.repos
                )
            })?);
        }
        Ok(wharf_storage::GcOptions {
            grace: duration("grace", &self.grace, defaults.grace)?,
            settle: duration("settle", &self.settle, defaults.settle)?,
            upload_max_age: duration(
                "upload_max_age",
                &self.upload_max_age,
                defaults.upload_max_age,
            )?,
            retention,
            dry_run: false,
        })
    }

    /// The interval of `wharf serve`'s collections, if scheduled.
    pub fn schedule(&self) -> anyhow::Result<Option<Duration>> {
        let Some(text) = &self.schedule else {
            return Ok(None);
        };
        let every = parse_duration(text).context("[gc] schedule")?;
        anyhow::ensure!(!every.is_zero(), "[gc] schedule must be longer than zero");
        Ok(Some(every))
    }
}

impl RetentionSection {
    fn to_rule(&self) -> anyhow::Result<wharf_storage::RetentionRule> {
        let mut rule = wharf_storage::RetentionRule::new(&self.repos)?;
        rule.keep_last = self.keep_last;
        for tag in &self.keep_tags {
            rule.keep_tags.push(wharf_storage::Glob::new(tag)?);
        }
        rule.min_age = self
            .min_age
            .as_deref()
            .map(parse_duration)
            .transpose()
            .context("min_age")?;
        rule.max_age = self
            .max_age
            .as_deref()
            .map(parse_duration)
            .transpose()
            .context("max_age")?;
        Ok(rule)
    }
}

/// `"90s"`, `"30m"`, `"24h"`, `"30d"`, `"1h30m"`, `"500ms"`; a bare `"0"`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let bad = || {
        anyhow::anyhow!(
            "{text:?} is not a duration: use a number and a unit, e.g. \"30s\", \"15m\", \"24h\", \"30d\""
        )
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let after = &rest[digits..];
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let unit = match &after[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(bad()),
        };
        let number = u32::try_from(number).map_err(|_| bad())?;
        total += unit.checked_mul(number).ok_or_else(bad)?;
        rest = &after[unit_len..];
    }
    Ok(total)
}

/// Settings after merging file and flags.
#[derive(Debug)]
pub struct ServeSettings {
    pub listen: String,
    pub root: PathBuf,
    pub log_format: LogFormat,
    pub registry: wharf_registry::RegistryConfig,
    /// Collect garbage this often, with these options; `None`: never.
    pub gc: Option<(Duration, wharf_storage::GcOptions)>,
    /// Serve HTTPS with these files; plain HTTP when absent.
    pub tls: Option<TlsFiles>,
}

/// The certificate chain and key `wharf serve` answers HTTPS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    toml::from_str(&text)
        .with_context(|| format!("configuration file {} is not valid", path.display()))
        .context(Hint(
            "fix the key named above; `wharf serve --help` lists every setting".into(),
        ))
}

pub fn merge(args: &ServeArgs, file: FileConfig) -> anyhow::Result<ServeSettings> {
    if let Some(kind) = file.storage.kind.as_deref() {
        anyhow::ensure!(
            kind == "filesystem",
            "storage type {kind:?} is not supported by this wharf (supported: \"filesystem\")"
        );
    }
    let defaults = wharf_registry::RegistryConfig::default();
    let gc_options = file
        .gc
        .options()
        .context("invalid garbage collection settings")?;
    let gc = file.gc.schedule()?.map(|every| (every, gc_options));
    let tls = tls_files(
        args.tls_cert.clone().or(file.server.tls_cert),
        args.tls_key.clone().or(file.server.tls_key),
    )?;
    Ok(ServeSettings {
        tls,
        listen: args
            .listen
            .clone()
            .or(file.server.listen)
            .unwrap_or_else(|| "127.0.0.1:5000".into()),
        root: args
            .root
            .clone()
            .or(file.storage.root)
            .unwrap_or_else(|| PathBuf::from("wharf-data")),
        log_format: args
            .log_format
            .or(file.server.log_format)
            .unwrap_or(LogFormat::Text),
        registry: wharf_registry::RegistryConfig {
            max_manifest_bytes: args
                .max_manifest_bytes
                .or(file.registry.max_manifest_bytes)
                .unwrap_or(defaults.max_manifest_bytes),
            sparse_indexes: args.sparse_indexes
                || file
                    .registry
                    .sparse_indexes
                    .unwrap_or(defaults.sparse_indexes),
            delete_enabled: file
                .registry
                .delete_enabled
                .unwrap_or(defaults.delete_enabled),
        },
        gc,
    })
}

/// Both files or neither: half a TLS setup is a mistake, not plain HTTP.
fn tls_files(cert: Option<PathBuf>, key: Option<PathBuf>) -> anyhow::Result<Option<TlsFiles>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => Err(anyhow::anyhow!(
            "HTTPS needs both a certificate and its key; only one was given"
        )
        .context(Hint(
            "give both --tls-cert and --tls-key (or tls_cert and tls_key under [server]); \
             `wharf ca issue` writes a matching pair"
                .into(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            listen: None,
            root: None,
            config: None,
            log_format: None,
            max_manifest_bytes: None,
            sparse_indexes: false,
            tls_cert: None,
            tls_key: None,
        }
    }

    #[test]
    fn flags_override_the_file() {
        let file: FileConfig = toml::from_str(
            "[server]\nlisten = \"0.0.0.0:6000\"\n[storage]\nroot = \"/srv\"\n[registry]\nsparse_indexes = true\n",
        )
        .unwrap();
        let mut a = args();
        a.listen = Some("127.0.0.1:7000".into());
        let s = merge(&a, file).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7000");
        assert_eq!(s.root, PathBuf::from("/srv"));
        assert!(s.registry.sparse_indexes);
    }

    #[test]
    fn defaults() {
        let s = merge(&args(), FileConfig::default()).unwrap();
        assert_eq!(s.listen, "127.0.0.1:5000");
        assert_eq!(s.root, PathBuf::from("wharf-data"));
        assert_eq!(s.registry.max_manifest_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "24", "h", "3 weeks", "1y", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn gc_section() {
        let file: FileConfig = toml::from_str(
            r#"
[gc]
schedule = "24h"
settle = "1s"
[[gc.retention]]
repos = "registry.k8s.io/**"
keep_last = 3
keep_tags = ["v*", "stable"]
min_age = "2h"
max_age = "30d"
"#,
        )
        .unwrap();
        let options = file.gc.options().unwrap();
        assert_eq!(options.settle, Duration::from_secs(1));
        assert_eq!(options.grace, Duration::from_secs(86_400));
        let rule = &options.retention[0];
        assert!(rule.repos.matches("registry.k8s.io/pause"));
        assert_eq!(rule.keep_last, Some(3));
        assert!(rule.keep_tags[0].matches("v1.2"));
        assert_eq!(rule.max_age, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(
            file.gc.schedule().unwrap(),
            Some(Duration::from_secs(86_400))
        );

        let err = toml::from_str::<FileConfig>("[[gc.retention]]\nrepos = \"a\"\nkeep = 1\n")
            .unwrap_err();
        assert!(err.to_string().contains("keep"), "{err}");
        let file: FileConfig =
            toml::from_str("[[gc.retention]]\nrepos = \"a\"\nmin_age = \"soon\"\n").unwrap();
        let err = format!("{:#}", file.gc.options().unwrap_err());
        assert!(err.contains("min_age") && err.contains("soon"), "{err}");
    }

    #[test]
    fn tls_files_come_from_the_file_or_flags_and_must_be_paired() {
        let file: FileConfig = toml::from_str(
            "[server]\ntls_cert = \"/etc/wharf/r.crt\"\ntls_key = \"/etc/wharf/r.key\"\n",
        )
        .unwrap();
        let s = merge(&args(), file).unwrap();
        let tls = s.tls.expect("TLS from the file");
        assert_eq!(tls.cert, PathBuf::from("/etc/wharf/r.crt"));
        assert_eq!(tls.key, PathBuf::from("/etc/wharf/r.key"));
        assert!(merge(&args(), FileConfig::default()).unwrap().tls.is_none());

        let half: FileConfig = toml::from_str("[server]\ntls_cert = \"r.crt\"\n").unwrap();
        let err = merge(&args(), half).unwrap_err();
        assert!(err.downcast_ref::<Hint>().is_some(), "{err:#}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<FileConfig>("[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let file: FileConfig = toml::from_str("[storage]\ntype = \"tape\"\n").unwrap();
        assert!(merge(&args(), file).is_err());
    }
}
