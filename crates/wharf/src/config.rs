//! `wharf.toml`: the same settings as the flags. Unknown keys are errors,
//! never silently ignored — the mistake wharf exists to prevent elsewhere.

use std::path::{Path, PathBuf};

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
    pub cache: CacheSection,
    /// Upstream registries served as a pull-through cache.
    #[serde(default)]
    pub upstream: Vec<UpstreamSection>,
}

/// Settings shared by every `[[upstream]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Default for upstreams that set none ("10m").
    pub tag_ttl: Option<String>,
    pub connect_timeout: Option<String>,
    /// Longest silence from an upstream before its request is given up.
    pub read_timeout: Option<String>,
    /// Tries of one upstream request, the first included.
    pub attempts: Option<u32>,
    /// Extra CA certificates (PEM) trusted for upstreams.
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub host: String,
    pub endpoint: Option<String>,
    pub credentials: Option<CredentialsSection>,
    pub tag_ttl: Option<String>,
    #[serde(default)]
    pub allow_push: bool,
}

/// The password is never written in the file: it is read from a variable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSection {
    pub username: String,
    pub password_env: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub log_format: Option<LogFormat>,
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

/// Settings after merging file and flags.
#[derive(Debug)]
pub struct ServeSettings {
    pub listen: String,
    pub root: PathBuf,
    pub log_format: LogFormat,
    pub registry: wharf_registry::RegistryConfig,
    /// Present when at least one `[[upstream]]` is configured.
    pub cache: Option<wharf_cache::CacheConfig>,
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
    let root = args
        .root
        .clone()
        .or(file.storage.root.clone())
        .unwrap_or_else(|| PathBuf::from("wharf-data"));
    let max_manifest_bytes = args
        .max_manifest_bytes
        .or(file.registry.max_manifest_bytes)
        .unwrap_or(defaults.max_manifest_bytes);
    let cache = cache_config(&file, &root, max_manifest_bytes, &|name| {
        std::env::var(name).ok()
    })?;
    Ok(ServeSettings {
        listen: args
            .listen
            .clone()
            .or(file.server.listen)
            .unwrap_or_else(|| "127.0.0.1:5000".into()),
        root,
        log_format: args
            .log_format
            .or(file.server.log_format)
            .unwrap_or(LogFormat::Text),
        registry: wharf_registry::RegistryConfig {
            max_manifest_bytes,
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
        cache,
    })
}

fn duration(key: &str, value: Option<&str>) -> anyhow::Result<Option<std::time::Duration>> {
    value
        .map(|v| wharf_cache::parse_duration(v).map_err(|e| anyhow::anyhow!("{key}: {e}")))
        .transpose()
}

/// The pull-through cache's settings, or `None` without upstreams.
/// `var` reads environment variables (passwords are named, never written).
fn cache_config(
    file: &FileConfig,
    root: &Path,
    max_manifest_bytes: usize,
    var: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<wharf_cache::CacheConfig>> {
    if file.upstream.is_empty() {
        return Ok(None);
    }
    let section = &file.cache;
    let default_ttl = duration("cache.tag_ttl", section.tag_ttl.as_deref())?
        .unwrap_or(wharf_cache::config::DEFAULT_TAG_TTL);
    let mut upstreams = Vec::new();
    for u in &file.upstream {
        let mut upstream = wharf_cache::UpstreamConfig::new(&u.host);
        upstream.tag_ttl =
            duration("upstream.tag_ttl", u.tag_ttl.as_deref())?.unwrap_or(default_ttl);
        upstream.allow_push = u.allow_push;
        upstream.endpoint = u
            .endpoint
            .as_deref()
            .map(wharf_cache::Endpoint::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("upstream {}: {e}", u.host))?;
        if let Some(c) = &u.credentials {
            let password = var(&c.password_env).with_context(|| {
                format!(
                    "upstream {}: the environment variable {} (credentials.password_env) is not set",
                    u.host, c.password_env
                )
            })?;
            upstream.credential = Some(wharf_client::Credential::basic(&c.username, password));
        }
        upstreams.push(upstream);
    }
    // Under the storage's tmp/, which it empties at start-up.
    let mut config = wharf_cache::CacheConfig::new(
        upstreams,
        root.join(wharf_storage::layout::TMP).join("cache"),
    );
    config.max_manifest_bytes = max_manifest_bytes;
    config.ca_files = section.ca_files.clone();
    if let Some(t) = duration("cache.connect_timeout", section.connect_timeout.as_deref())? {
        config.connect_timeout = t;
    }
    if let Some(t) = duration("cache.read_timeout", section.read_timeout.as_deref())? {
        config.read_timeout = t;
    }
    if let Some(n) = section.attempts {
        anyhow::ensure!(n >= 1, "cache.attempts must be at least 1");
        config.retry.max_attempts = n;
    }
    Ok(Some(config))
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
    fn upstreams() {
        let file: FileConfig = toml::from_str(
            r#"
[cache]
tag_ttl = "5m"
read_timeout = "2s"
[[upstream]]
host = "registry.k8s.io"
[[upstream]]
host = "docker.io"
endpoint = "https://registry-1.docker.io"
credentials = { username = "me", password_env = "HUB_TOKEN" }
tag_ttl = "10m"
allow_push = true
"#,
        )
        .unwrap();
        let var = |name: &str| (name == "HUB_TOKEN").then(|| "secret".to_string());
        let c = cache_config(&file, Path::new("/srv"), 100, &var)
            .unwrap()
            .unwrap();
        assert_eq!(c.upstreams.len(), 2);
        assert_eq!(c.upstreams[0].tag_ttl.as_secs(), 300);
        assert!(!c.upstreams[0].allow_push);
        assert_eq!(c.upstreams[1].tag_ttl.as_secs(), 600);
        assert!(c.upstreams[1].allow_push);
        assert_eq!(
            c.upstreams[1].endpoint.as_ref().unwrap().authority,
            "registry-1.docker.io"
        );
        assert_eq!(
            c.upstreams[1].credential.as_ref().unwrap().username(),
            Some("me")
        );
        assert_eq!(c.read_timeout.as_secs(), 2);
        assert_eq!(c.spool_dir, PathBuf::from("/srv/tmp/cache"));
        let missing = cache_config(&file, Path::new("/srv"), 100, &|_| None).unwrap_err();
        assert!(missing.to_string().contains("HUB_TOKEN"), "{missing}");
        let unknown =
            toml::from_str::<FileConfig>("[[upstream]]\nhost = \"x.io\"\npassword = \"p\"\n");
        assert!(unknown.unwrap_err().to_string().contains("password"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<FileConfig>("[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let file: FileConfig = toml::from_str("[storage]\ntype = \"tape\"\n").unwrap();
        assert!(merge(&args(), file).is_err());
    }
}
