//! `wharf.toml`: the same settings as `wharf serve`'s flags. Unknown keys
//! are errors, never silently ignored — the mistake wharf exists to prevent
//! elsewhere. Every length of time is a [`SettingDuration`]. Loading and
//! merging only read: files a setting names (the token signing key) are
//! created when the server starts ([`AuthSettings::layer`]), not here.

mod storage;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use wharf_auth::{AccessPolicy, AccessRule, TokenKey, TokenService, UserStore};
use wharf_registry::auth::AuthLayer;
use wharf_storage::SettingDuration;

use crate::exit::Hint;
use crate::logging::LogFormat;

pub use storage::{Access, StorageConfig, StorageSettings};

/// The flags of `wharf serve` that set what a `wharf.toml` key sets; a flag
/// given wins over the file.
#[derive(Debug, Default, clap::Args)]
pub struct ServeFlags {
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Storage root directory [default: ./wharf-data].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Log format on stderr [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Largest manifest accepted, in bytes [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub max_manifest_bytes: Option<usize>,
    /// Accept image indexes whose child manifests are absent (single-platform mirrors keep the upstream index digest).
    #[arg(long)]
    pub sparse_indexes: bool,
    /// Serve HTTPS with this PEM certificate chain (server certificate first); reloaded when it changes.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; reloaded when it changes.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// With object storage: start even when the bucket does not answer yet, report not ready on /readyz, and keep retrying (instead of exiting).
    #[arg(long)]
    pub wait_for_storage: bool,
    /// A name this registry is known by (host[:port]); `?ns=` of it serves the plain path. Repeatable; the TLS certificate's names count too.
    #[arg(long = "registry-name", value_name = "HOST[:PORT]")]
    pub registry_names: Vec<String>,
    /// At start-up, store this binary's own image under REF (e.g. registry.home.arpa:5000/wharf/wharf:0.2.0), as `wharf save --self REF` builds it.
    #[arg(long, value_name = "REF")]
    pub publish_self: Option<String>,
}

/// Every section and key of `wharf.toml`, shown under `wharf serve --help`,
/// where a configuration error's hint sends the user. Keep it in step with
/// the structs below (a test compares it with the keys they accept).
pub const SECTIONS_HELP: &str = "\
Configuration file (--config FILE, TOML; every key is optional, an unknown key is an error):
  [server]          listen, log_format, tls_cert, tls_key, publish_self, max_connections,
                    max_uploads, header_read_timeout, idle_timeout, tls_handshake_timeout,
                    body_timeout, body_min_rate
  [storage]         type = \"filesystem\": root
                    type = \"s3\": endpoint, region, bucket, prefix, path_style, access_key_id,
                    secret_access_key, profile, redirect, redirect_expiry, request_timeout,
                    part_size (redirect_expiry_secs, request_timeout_secs: older spellings)
  [registry]        max_manifest_bytes, sparse_indexes, delete_enabled, names
  [gc]              schedule, grace, settle, upload_max_age
  [[gc.retention]]  repos, keep_last, keep_tags, min_age, max_age
  [auth]            mode (\"basic\" or \"token\"), htpasswd, realm, service, issuer, token_key,
                    token_ttl
  [[access]]        repos, users, actions
  [cache]           tag_ttl, connect_timeout, read_timeout, attempts, ca_files, max_age
  [[upstream]]      host, endpoint, credentials = { username, password_env }, tag_ttl, allow_push

README.md shows each section with its defaults and meaning (\"Running the registry\" and the
sections after it).";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub registry: RegistrySection,
    #[serde(default)]
    pub gc: GcSection,
    pub auth: Option<AuthSection>,
    /// `[[access]]` rules; they need an `[auth]` section.
    #[serde(default)]
    pub access: Vec<AccessSection>,
    #[serde(default)]
    pub cache: CacheSection,
    /// Upstream registries served as a pull-through cache.
    #[serde(default)]
    pub upstream: Vec<UpstreamSection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Basic,
    Token,
}

/// Settings shared by every `[[upstream]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Default for upstreams that set none ("10m").
    pub tag_ttl: Option<SettingDuration>,
    pub connect_timeout: Option<SettingDuration>,
    /// Longest silence from an upstream before its request is given up.
    pub read_timeout: Option<SettingDuration>,
    /// Tries of one upstream request, the first included.
    pub attempts: Option<u32>,
    /// Extra CA certificates (PEM) trusted for upstreams.
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
    /// Cached images not pulled for this long are removed by garbage
    /// collection ("30d"); unset: cached images stay.
    pub max_age: Option<SettingDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub mode: AuthMode,
    /// htpasswd file of bcrypt entries.
    pub htpasswd: PathBuf,
    /// basic: the realm name; token: the token endpoint's URL as clients
    /// reach it (default `http://<Host>/auth/token`).
    pub realm: Option<String>,
    /// token: the audience of tokens (`service` in the challenge).
    pub service: Option<String>,
    /// token: the issuer of tokens.
    pub issuer: Option<String>,
    /// token: the ES256 signing key (PKCS#8 PEM); generated when missing.
    pub token_key: Option<PathBuf>,
    /// token: how long a token is valid, e.g. "5m", "300s", "1h".
    pub token_ttl: Option<SettingDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    pub repos: String,
    pub users: Vec<String>,
    pub actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub host: String,
    pub endpoint: Option<String>,
    pub credentials: Option<CredentialsSection>,
    pub tag_ttl: Option<SettingDuration>,
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
    /// HTTPS: PEM certificate chain and private key (both or neither).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Store this binary's own image under this reference at start-up.
    pub publish_self: Option<String>,
    // Resource bounds (`wharf_registry::Limits`; defaults there).
    pub max_connections: Option<usize>,
    pub max_uploads: Option<usize>,
    pub header_read_timeout: Option<SettingDuration>,
    pub idle_timeout: Option<SettingDuration>,
    pub tls_handshake_timeout: Option<SettingDuration>,
    pub body_timeout: Option<SettingDuration>,
    /// Bytes per second a request body must average over `body_timeout`.
    pub body_min_rate: Option<u64>,
}

impl ServerSection {
    /// The server's resource bounds: defaults, overridden by what is set.
    /// Counts and timeouts must be above zero: a zero would refuse every
    /// client or cut every request off at once.
    pub fn limits(&self) -> anyhow::Result<wharf_registry::Limits> {
        let defaults = wharf_registry::Limits::default();
        let count = |key: &str, value: Option<usize>, default: usize| {
            let n = value.unwrap_or(default);
            anyhow::ensure!(n > 0, "[server] {key} must be at least 1");
            Ok(n)
        };
        let duration = |key: &str, value: &Option<SettingDuration>, default: Duration| {
            let d = value.map_or(default, SettingDuration::get);
            anyhow::ensure!(!d.is_zero(), "[server] {key} must be longer than zero");
            Ok(d)
        };
        Ok(wharf_registry::Limits {
            max_connections: count(
                "max_connections",
                self.max_connections,
                defaults.max_connections,
            )?,
            max_uploads: count("max_uploads", self.max_uploads, defaults.max_uploads)?,
            header_read_timeout: duration(
                "header_read_timeout",
                &self.header_read_timeout,
                defaults.header_read_timeout,
            )?,
            idle_timeout: duration("idle_timeout", &self.idle_timeout, defaults.idle_timeout)?,
            tls_handshake_timeout: duration(
                "tls_handshake_timeout",
                &self.tls_handshake_timeout,
                defaults.tls_handshake_timeout,
            )?,
            body_timeout: duration("body_timeout", &self.body_timeout, defaults.body_timeout)?,
            body_min_rate: self.body_min_rate.unwrap_or(defaults.body_min_rate),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    pub max_manifest_bytes: Option<usize>,
    pub sparse_indexes: Option<bool>,
    pub delete_enabled: Option<bool>,
    /// The names this registry is known by (`host[:port]`).
    pub names: Option<Vec<String>>,
}

/// `[gc]`: garbage collection for `wharf gc` and `wharf serve`'s schedule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcSection {
    /// `wharf serve` collects this often ("24h"); unset: never.
    pub schedule: Option<SettingDuration>,
    pub grace: Option<SettingDuration>,
    pub settle: Option<SettingDuration>,
    pub upload_max_age: Option<SettingDuration>,
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
    pub min_age: Option<SettingDuration>,
    pub max_age: Option<SettingDuration>,
}

impl GcSection {
    /// The collection's options (not a dry run).
    pub fn options(&self) -> anyhow::Result<wharf_storage::GcOptions> {
        let defaults = wharf_storage::GcOptions::default();
        let duration = |value: Option<SettingDuration>, default: Duration| {
            value.map_or(default, SettingDuration::get)
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
            grace: duration(self.grace, defaults.grace),
            settle: duration(self.settle, defaults.settle),
            upload_max_age: duration(self.upload_max_age, defaults.upload_max_age),
            retention,
            dry_run: false,
        })
    }

    /// The interval of `wharf serve`'s collections, if scheduled.
    pub fn schedule(&self) -> anyhow::Result<Option<Duration>> {
        let Some(every) = self.schedule.map(SettingDuration::get) else {
            return Ok(None);
        };
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
        rule.min_age = self.min_age.map(SettingDuration::get);
        rule.max_age = self.max_age.map(SettingDuration::get);
        Ok(rule)
    }
}

/// Settings after merging file and flags.
#[derive(Debug)]
pub struct ServeSettings {
    pub listen: String,
    pub storage: StorageSettings,
    /// Serve (not ready) while object storage does not answer, instead of
    /// exiting.
    pub wait_for_storage: bool,
    pub log_format: LogFormat,
    pub registry: wharf_registry::RegistryConfig,
    /// Collect garbage this often, with these options; `None`: never.
    pub gc: Option<(Duration, wharf_storage::GcOptions)>,
    /// Serve HTTPS with these files; plain HTTP when absent.
    pub tls: Option<TlsFiles>,
    /// Present when at least one `[[upstream]]` is configured.
    pub cache: Option<wharf_cache::CacheConfig>,
    /// This binary's own image, stored under this name at start-up.
    pub publish_self: Option<wharf_oci::Reference>,
    /// `[auth]`, checked; `registry.auth` is built from it at start-up.
    pub auth: Option<AuthSettings>,
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
            "fix the setting shown above; `wharf serve --help` lists every section and key of wharf.toml"
                .into(),
        ))
}

pub fn merge(args: &ServeFlags, file: FileConfig) -> anyhow::Result<ServeSettings> {
    let storage = file.storage.clone().resolve(args.root.clone())?;
    let defaults = wharf_registry::RegistryConfig::default();
    let gc_options = gc_options(&file).context("invalid garbage collection settings")?;
    let gc = file.gc.schedule()?.map(|every| (every, gc_options));
    let tls = tls_files(
        args.tls_cert.clone().or(file.server.tls_cert.clone()),
        args.tls_key.clone().or(file.server.tls_key.clone()),
    )?;
    let auth = auth_settings(file.auth.as_ref(), &file.access)?;
    let limits = file.server.limits().context(Hint(
        "counts are whole numbers above zero, timeouts durations such as \"30s\" or \"2m\"".into(),
    ))?;
    let max_manifest_bytes = args
        .max_manifest_bytes
        .or(file.registry.max_manifest_bytes)
        .unwrap_or(defaults.max_manifest_bytes);
    let cache = cache_config(&file, max_manifest_bytes, &|name| std::env::var(name).ok())?;
    if cache.is_some() && matches!(storage, StorageSettings::S3(_)) {
        // The cache streams a download to its requesters from the storage
        // upload as it grows; an unfinished S3 multipart upload cannot be read.
        return Err(anyhow::anyhow!(
            "the pull-through cache ([[upstream]]) needs filesystem storage; this configuration uses type = \"s3\""
        )
        .context(Hint(
            "run the caching wharf on a filesystem root (it may sit next to replicas on S3), or fill the S3 registry with `wharf sync` instead".into(),
        )));
    }
    let publish_self = args
        .publish_self
        .clone()
        .or(file.server.publish_self.clone())
        .map(|name| crate::self_image::image_name(Some(&name)))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--publish-self (or [server] publish_self): {e}"))
        .context(Hint(crate::self_image::NAME_HINT.into()))?;
    // The name the registry publishes itself under is one of its names.
    let names: Vec<String> = args
        .registry_names
        .iter()
        .chain(file.registry.names.iter().flatten())
        .cloned()
        .chain(publish_self.iter().map(|r| r.host().to_string()))
        .collect();
    Ok(ServeSettings {
        auth,
        publish_self,
        tls,
        listen: args
            .listen
            .clone()
            .or(file.server.listen)
            .unwrap_or_else(|| "127.0.0.1:5000".into()),
        storage,
        wait_for_storage: args.wait_for_storage,
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
            auth: None,
            names,
            limits,
        },
        gc,
        cache,
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

const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);

/// `[auth]` and `[[access]]`, checked: the rules parse, the htpasswd file
/// loads, the keys fit the mode. Nothing is written.
pub struct AuthSettings {
    mode: AuthMode,
    users: Arc<UserStore>,
    policy: AccessPolicy,
    realm: Option<String>,
    service: String,
    issuer: String,
    token_key: Option<PathBuf>,
    token_ttl: Duration,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("mode", &self.mode)
            .field("rules", &self.policy.rules().len())
            .finish_non_exhaustive()
    }
}

/// `[auth]` and `[[access]]` checked; `None` without an `[auth]` section.
pub fn auth_settings(
    auth: Option<&AuthSection>,
    access: &[AccessSection],
) -> anyhow::Result<Option<AuthSettings>> {
    let Some(auth) = auth else {
        anyhow::ensure!(
            access.is_empty(),
            "[[access]] rules are set but there is no [auth] section, so they would not apply"
        );
        return Ok(None);
    };
    let rules = access
        .iter()
        .enumerate()
        .map(|(i, a)| {
            AccessRule::new(&a.repos, &a.users, &a.actions)
                .with_context(|| format!("[[access]] rule {} is not valid", i + 1))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let users = UserStore::open(&auth.htpasswd)
        .context("cannot load the htpasswd file named by [auth] htpasswd")
        .context(Hint(
            "create or update it with `wharf auth htpasswd FILE USER` (bcrypt entries only)".into(),
        ))?;
    match auth.mode {
        AuthMode::Basic => {
            let token_only = [
                ("service", auth.service.is_some()),
                ("issuer", auth.issuer.is_some()),
                ("token_key", auth.token_key.is_some()),
                ("token_ttl", auth.token_ttl.is_some()),
            ];
            if let Some((key, _)) = token_only.iter().find(|(_, set)| *set) {
                anyhow::bail!("[auth] {key} only applies to mode = \"token\"");
            }
        }
        AuthMode::Token => {
            if auth.token_key.is_none() {
                return Err(anyhow::anyhow!("[auth] mode = \"token\" needs token_key").context(Hint(
                    "set token_key to a path such as /var/lib/wharf/token-key.pem; the key is generated there on first start".into(),
                )));
            }
            if auth.token_ttl.is_some_and(|t| t.get().is_zero()) {
                anyhow::bail!("[auth] token_ttl must be longer than zero");
            }
        }
    }
    Ok(Some(AuthSettings {
        mode: auth.mode,
        users: Arc::new(users),
        policy: AccessPolicy::new(rules),
        realm: auth.realm.clone(),
        service: auth.service.clone().unwrap_or_else(|| "wharf".into()),
        issuer: auth.issuer.clone().unwrap_or_else(|| "wharf".into()),
        token_key: auth.token_key.clone(),
        token_ttl: auth
            .token_ttl
            .map_or(DEFAULT_TOKEN_TTL, SettingDuration::get),
    }))
}

impl AuthSettings {
    /// The registry's auth layer. With tokens, the signing key is loaded,
    /// or generated and written on first start.
    pub fn layer(self) -> anyhow::Result<Arc<AuthLayer>> {
        let layer = match (self.mode, &self.token_key) {
            (AuthMode::Token, Some(key_path)) => {
                let key = TokenKey::load_or_generate(key_path)
                    .context("cannot load or create the token signing key")?;
                let tokens = TokenService::new(key, &self.issuer, &self.service, self.token_ttl);
                AuthLayer::token(self.users, self.policy, tokens, self.realm)
            }
            _ => AuthLayer::basic(
                self.users,
                self.policy,
                self.realm.as_deref().unwrap_or("wharf"),
            ),
        };
        Ok(Arc::new(layer))
    }
}

/// Garbage collection as `[gc]` and `[cache] max_age` ask: the latter adds,
/// after the `[[gc.retention]]` rules (the first match wins, so an explicit
/// rule for an upstream's repositories overrides it), one rule per upstream
/// that removes cached images not pulled for `max_age`. The cache records
/// each pull in the manifest's revision time, which `max_age` goes by.
pub fn gc_options(file: &FileConfig) -> anyhow::Result<wharf_storage::GcOptions> {
    let mut options = file.gc.options()?;
    let Some(max_age) = file.cache.max_age.map(SettingDuration::get) else {
        return Ok(options);
    };
    for u in &file.upstream {
        let prefix = wharf_oci::name::host_component(&u.host)
            .map_err(|e| anyhow::anyhow!("upstream {}: {e}", u.host))?;
        let mut rule = wharf_storage::RetentionRule::new(&format!("{prefix}/**"))
            .map_err(|e| anyhow::anyhow!("upstream {}: {e}", u.host))?;
        rule.max_age = Some(max_age);
        options.retention.push(rule);
    }
    Ok(options)
}

/// The pull-through cache's settings, or `None` without upstreams.
/// `var` reads environment variables (passwords are named, never written).
fn cache_config(
    file: &FileConfig,
    max_manifest_bytes: usize,
    var: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<wharf_cache::CacheConfig>> {
    if file.upstream.is_empty() {
        return Ok(None);
    }
    let section = &file.cache;
    let default_ttl = section
        .tag_ttl
        .map_or(wharf_cache::config::DEFAULT_TAG_TTL, SettingDuration::get);
    let mut upstreams = Vec::new();
    for u in &file.upstream {
        let mut upstream = wharf_cache::UpstreamConfig::new(&u.host);
        upstream.tag_ttl = u.tag_ttl.map_or(default_ttl, SettingDuration::get);
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
    let mut config = wharf_cache::CacheConfig::new(upstreams);
    config.max_manifest_bytes = max_manifest_bytes;
    config.ca_files = section.ca_files.clone();
    if let Some(t) = section.connect_timeout {
        config.connect_timeout = t.get();
    }
    if let Some(t) = section.read_timeout {
        config.read_timeout = t.get();
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

    fn args() -> ServeFlags {
        ServeFlags::default()
    }

    #[test]
    fn registry_names_come_from_flags_the_file_and_the_self_name() {
        let file: FileConfig = toml::from_str(
            "[server]\npublish_self = \"registry.home.arpa:5000/wharf/wharf:0.2.0\"\n[registry]\nnames = [\"10.0.0.5:5000\"]\n",
        )
        .unwrap();
        let mut a = args();
        a.registry_names = vec!["wharf.lan".into()];
        let s = merge(&a, file).unwrap();
        assert_eq!(
            s.registry.names,
            ["wharf.lan", "10.0.0.5:5000", "registry.home.arpa:5000"]
        );
        assert_eq!(
            s.publish_self.unwrap().to_string(),
            "registry.home.arpa:5000/wharf/wharf:0.2.0"
        );
        let mut latest = args();
        latest.publish_self = Some("registry.home.arpa:5000/wharf/wharf:latest".into());
        let err = format!("{:#}", merge(&latest, FileConfig::default()).unwrap_err());
        assert!(err.contains("latest"), "{err}");
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
        assert!(
            matches!(s.storage, StorageSettings::Filesystem { root } if root == Path::new("/srv"))
        );
        assert!(s.registry.sparse_indexes);
    }

    #[test]
    fn defaults() {
        let s = merge(&args(), FileConfig::default()).unwrap();
        assert_eq!(s.listen, "127.0.0.1:5000");
        assert!(
            matches!(s.storage, StorageSettings::Filesystem { root } if root == Path::new("wharf-data"))
        );
        assert_eq!(s.registry.max_manifest_bytes, 4 * 1024 * 1024);
    }

    fn htpasswd_file(dir: &Path) -> PathBuf {
        let path = dir.join("htpasswd");
        let hash = wharf_auth::htpasswd::hash_password("pw", 4).unwrap();
        std::fs::write(&path, format!("alice:{hash}\n")).unwrap();
        path
    }

    #[test]
    fn auth_sections_build_a_layer() {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = htpasswd_file(dir.path());
        let key = dir.path().join("token.pem");
        let text = format!(
            "[auth]\nmode = \"token\"\nhtpasswd = {htpasswd:?}\ntoken_key = {key:?}\ntoken_ttl = \"5m\"\nservice = \"reg\"\n\n\
             [[access]]\nrepos = \"docker.io/**\"\nusers = [\"alice\"]\nactions = [\"pull\", \"push\"]\n\n\
             [[access]]\nrepos = \"public/**\"\nusers = [\"anonymous\"]\nactions = [\"pull\"]\n"
        );
        let file: FileConfig = toml::from_str(&text).unwrap();
        let s = merge(&args(), file).unwrap();
        assert!(!key.exists(), "loading the settings writes nothing");
        let layer = s.auth.expect("auth configured").layer().unwrap();
        assert_eq!(layer.policy().rules().len(), 2);
        assert!(layer.policy().anonymous_pull_anywhere());
        assert!(key.exists(), "the token key is generated on first start");
    }

    #[test]
    fn auth_mistakes_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = htpasswd_file(dir.path());
        let bad = |text: String| {
            let file: FileConfig = match toml::from_str(&text) {
                Ok(f) => f,
                Err(e) => return e.to_string(),
            };
            format!("{:#}", merge(&args(), file).unwrap_err())
        };
        let err = bad(format!(
            "[auth]\nmode = \"basic\"\nhtpasswd = {htpasswd:?}\nrelam = \"x\"\n"
        ));
        assert!(err.contains("relam"), "{err}");
        let err = bad(format!(
            "[auth]\nmode = \"token\"\nhtpasswd = {htpasswd:?}\n"
        ));
        assert!(err.contains("token_key"), "{err}");
        let err = bad(format!(
            "[auth]\nmode = \"basic\"\nhtpasswd = {htpasswd:?}\ntoken_ttl = \"5m\"\n"
        ));
        assert!(err.contains("token_ttl"), "{err}");
        let err = bad("[[access]]\nrepos = \"a\"\nusers = [\"u\"]\nactions = [\"pull\"]\n".into());
        assert!(err.contains("[auth]"), "{err}");
        let err = bad(format!(
            "[auth]\nmode = \"basic\"\nhtpasswd = {htpasswd:?}\n[[access]]\nrepos = \"a\"\nusers = [\"u\"]\nactions = [\"write\"]\n"
        ));
        assert!(err.contains("rule 1") && err.contains("write"), "{err}");
        let err = bad("[auth]\nmode = \"basic\"\nhtpasswd = \"/nonexistent/htpasswd\"\n".into());
        assert!(err.contains("/nonexistent/htpasswd"), "{err}");
        let err = bad(format!(
            "[auth]\nmode = \"ldap\"\nhtpasswd = {htpasswd:?}\n"
        ));
        assert!(err.contains("ldap"), "{err}");
    }

    #[test]
    fn every_duration_key_reads_the_same_grammar() {
        let file: FileConfig = toml::from_str(
            "[cache]\ntag_ttl = \"1h30m\"\n[gc]\ngrace = \"1h30m\"\n[server]\nidle_timeout = \"1h30m\"\n[[upstream]]\nhost = \"registry.k8s.io\"\n",
        )
        .unwrap();
        let s = merge(&args(), file).unwrap();
        let ninety_minutes = Duration::from_secs(5_400);
        assert_eq!(s.cache.unwrap().upstreams[0].tag_ttl, ninety_minutes);
        assert_eq!(s.registry.limits.idle_timeout, ninety_minutes);
        let file: FileConfig = toml::from_str("[gc]\ngrace = \"1h30m\"\n").unwrap();
        assert_eq!(gc_options(&file).unwrap().grace, ninety_minutes);

        let dir = tempfile::tempdir().unwrap();
        let htpasswd = htpasswd_file(dir.path());
        let key = dir.path().join("k.pem");
        let file: FileConfig = toml::from_str(&format!(
            "[auth]\nmode = \"token\"\nhtpasswd = {htpasswd:?}\ntoken_key = {key:?}\ntoken_ttl = \"1d\"\n"
        ))
        .unwrap();
        assert_eq!(
            merge(&args(), file).unwrap().auth.unwrap().token_ttl,
            Duration::from_secs(86_400)
        );
        let err = toml::from_str::<FileConfig>("[cache]\ntag_ttl = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("tag_ttl"), "{err}");
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
        let err =
            toml::from_str::<FileConfig>("[[gc.retention]]\nrepos = \"a\"\nmin_age = \"soon\"\n")
                .unwrap_err()
                .to_string();
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
    fn cache_max_age_adds_a_rule_per_upstream_after_explicit_ones() {
        let file: FileConfig = toml::from_str(
            r#"
[cache]
max_age = "30d"
[[upstream]]
host = "registry.k8s.io"
[[upstream]]
host = "localhost:5001"
[[gc.retention]]
repos = "registry.k8s.io/pause"
keep_last = 1
"#,
        )
        .unwrap();
        let options = gc_options(&file).unwrap();
        let rules: Vec<_> = options.retention.iter().map(|r| r.repos.as_str()).collect();
        assert_eq!(
            rules,
            [
                "registry.k8s.io/pause",
                "registry.k8s.io/**",
                "localhost_5001/**"
            ]
        );
        assert_eq!(
            options.retention[1].max_age,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(options.retention[0].max_age, None);
        let bad = toml::from_str::<FileConfig>("[cache]\nmax_age = \"soon\"\n").unwrap_err();
        assert!(bad.to_string().contains("max_age"), "{bad}");
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
        let c = cache_config(&file, 100, &var).unwrap().unwrap();
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
        let missing = cache_config(&file, 100, &|_| None).unwrap_err();
        assert!(missing.to_string().contains("HUB_TOKEN"), "{missing}");
        let unknown =
            toml::from_str::<FileConfig>("[[upstream]]\nhost = \"x.io\"\npassword = \"p\"\n");
        assert!(unknown.unwrap_err().to_string().contains("password"));
    }

    #[test]
    fn server_limits_come_from_the_file() {
        let file: FileConfig = toml::from_str(
            "[server]\nmax_connections = 100\nmax_uploads = 7\nheader_read_timeout = \"5s\"\nidle_timeout = \"2m\"\ntls_handshake_timeout = \"3s\"\nbody_timeout = \"20s\"\nbody_min_rate = 0\n",
        )
        .unwrap();
        let limits = merge(&args(), file).unwrap().registry.limits;
        assert_eq!(
            limits,
            wharf_registry::Limits {
                max_connections: 100,
                max_uploads: 7,
                header_read_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(120),
                tls_handshake_timeout: Duration::from_secs(3),
                body_timeout: Duration::from_secs(20),
                body_min_rate: 0,
            }
        );
        let defaults = merge(&args(), FileConfig::default()).unwrap();
        assert_eq!(defaults.registry.limits, wharf_registry::Limits::default());
    }

    #[test]
    fn server_limit_mistakes_are_errors() {
        for text in [
            "[server]\nmax_connections = 0\n",
            "[server]\nmax_uploads = 0\n",
            "[server]\nidle_timeout = \"0\"\n",
        ] {
            let file: FileConfig = toml::from_str(text).unwrap();
            let err = merge(&args(), file).unwrap_err();
            assert!(format!("{err:#}").contains("[server]"), "{text}: {err:#}");
        }
        assert!(toml::from_str::<FileConfig>("[server]\nmax_conections = 5\n").is_err());
        assert!(toml::from_str::<FileConfig>("[server]\nbody_timeout = \"soon\"\n").is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<FileConfig>("[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        assert!(toml::from_str::<FileConfig>("[storage]\ntype = \"tape\"\n").is_err());
    }

    #[test]
    fn s3_storage_is_configured_from_the_file() {
        let file: FileConfig = toml::from_str(
            "[storage]\ntype = \"s3\"\nendpoint = \"http://127.0.0.1:3900\"\nregion = \"garage\"\nbucket = \"reg\"\nprefix = \"prod\"\naccess_key_id = \"GK1\"\nsecret_access_key = \"s\"\nredirect = true\npart_size = 16777216\n",
        )
        .unwrap();
        let s = merge(&args(), file).unwrap();
        let StorageSettings::S3(c) = s.storage else {
            panic!("expected S3 storage");
        };
        assert_eq!(c.bucket, "reg");
        assert_eq!(c.region, "garage");
        assert_eq!(c.prefix, "prod");
        assert!(c.path_style && c.redirect);
        assert_eq!(c.part_size, 16 * 1024 * 1024);
        assert_eq!(c.credentials.unwrap().access_key_id, "GK1");
    }

    #[test]
    fn s3_mistakes_are_errors() {
        let bad = [
            "[storage]\ntype = \"s3\"\n",
            "[storage]\ntype = \"s3\"\nbucket = \"b\"\naccess_key_id = \"only-half\"\n",
            "[storage]\ntype = \"s3\"\nbucket = \"b\"\npart_size = 1024\n",
            "[storage]\ntype = \"s3\"\nbucket = \"b\"\nroot = \"/srv\"\n",
            "[storage]\nbucket = \"b\"\n",
            "[storage]\ntype = \"s3\"\nbucket = \"b\"\nrequest_timeout_secs = 0\n",
            // The cache follows uploads as they grow, which S3 cannot.
            "[storage]\ntype = \"s3\"\nbucket = \"b\"\n[[upstream]]\nhost = \"registry.k8s.io\"\n",
        ];
        for text in bad {
            let refused = match toml::from_str::<FileConfig>(text) {
                Ok(file) => merge(&args(), file).is_err(),
                Err(_) => true,
            };
            assert!(refused, "accepted: {text}");
        }
        assert!(toml::from_str::<FileConfig>("[storage]\nbuckett = \"b\"\n").is_err());
    }
}
