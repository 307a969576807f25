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
    /// "filesystem" (the default) or "s3".
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub root: Option<PathBuf>,
    // --- type = "s3" ---
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub path_style: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub profile: Option<String>,
    pub redirect: Option<bool>,
    pub redirect_expiry_secs: Option<u64>,
    pub part_size: Option<u64>,
}

/// Where the registry keeps its data.
#[derive(Debug)]
pub enum StorageSettings {
    Filesystem { root: PathBuf },
    S3(Box<wharf_storage_s3::S3Config>),
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
    pub storage: StorageSettings,
    /// Serve (not ready) while object storage does not answer, instead of
    /// exiting.
    pub wait_for_storage: bool,
    pub log_format: LogFormat,
    pub registry: wharf_registry::RegistryConfig,
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
    let storage = storage_settings(args, file.storage)?;
    let defaults = wharf_registry::RegistryConfig::default();
    Ok(ServeSettings {
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
    })
}

fn storage_settings(args: &ServeArgs, section: StorageSection) -> anyhow::Result<StorageSettings> {
    match section.kind.as_deref().unwrap_or("filesystem") {
        "filesystem" => {
            let s3_keys = [
                ("endpoint", section.endpoint.is_some()),
                ("bucket", section.bucket.is_some()),
                ("access_key_id", section.access_key_id.is_some()),
                ("redirect", section.redirect.is_some()),
            ];
            if let Some((key, _)) = s3_keys.iter().find(|(_, set)| *set) {
                anyhow::bail!(
                    "storage key {key:?} only applies to type = \"s3\", but the storage type is \"filesystem\""
                );
            }
            Ok(StorageSettings::Filesystem {
                root: args
                    .root
                    .clone()
                    .or(section.root)
                    .unwrap_or_else(|| PathBuf::from("wharf-data")),
            })
        }
        "s3" => s3_settings(args, section).map(|c| StorageSettings::S3(Box::new(c))),
        other => anyhow::bail!(
            "storage type {other:?} is not supported by this wharf (supported: \"filesystem\", \"s3\")"
        ),
    }
}

fn s3_settings(
    args: &ServeArgs,
    section: StorageSection,
) -> anyhow::Result<wharf_storage_s3::S3Config> {
    anyhow::ensure!(
        args.root.is_none() && section.root.is_none(),
        "`root` applies to filesystem storage; with type = \"s3\" the data lives in the bucket"
    );
    let bucket = section
        .bucket
        .ok_or_else(|| anyhow::anyhow!("[storage] type = \"s3\" needs `bucket`"))?;
    let mut config = wharf_storage_s3::S3Config::new(bucket);
    config.endpoint = section.endpoint;
    if let Some(region) = section.region {
        config.region = region;
    }
    config.prefix = section.prefix.unwrap_or_default();
    config.path_style = section.path_style.unwrap_or(true);
    config.credentials = match (section.access_key_id, section.secret_access_key) {
        (Some(id), Some(secret)) => Some(wharf_storage_s3::Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: None,
        }),
        (None, None) => None,
        _ => anyhow::bail!("set both access_key_id and secret_access_key in [storage], or neither"),
    };
    config.profile = section.profile;
    config.redirect = section.redirect.unwrap_or(false);
    if let Some(secs) = section.redirect_expiry_secs {
        config.redirect_expiry = std::time::Duration::from_secs(secs);
    }
    if let Some(part_size) = section.part_size {
        config.part_size = part_size;
    }
    config.validate()?;
    Ok(config)
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
            wait_for_storage: false,
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

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<FileConfig>("[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let file: FileConfig = toml::from_str("[storage]\ntype = \"tape\"\n").unwrap();
        assert!(merge(&args(), file).is_err());
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
        ];
        for text in bad {
            let file: FileConfig = toml::from_str(text).unwrap();
            assert!(merge(&args(), file).is_err(), "accepted: {text}");
        }
        assert!(toml::from_str::<FileConfig>("[storage]\nbuckett = \"b\"\n").is_err());
    }
}
