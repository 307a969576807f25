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
    Ok(ServeSettings {
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
            auth: None,
        },
    })
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
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<FileConfig>("[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let file: FileConfig = toml::from_str("[storage]\ntype = \"tape\"\n").unwrap();
        assert!(merge(&args(), file).is_err());
    }
}
