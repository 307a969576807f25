//! `[storage]`: where the registry keeps its data, and the one way `serve`,
//! `gc` and `fsck` open it, so every command that works on a filesystem
//! root works on a bucket too.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use wharf_storage::Store;
use wharf_storage_s3::{S3Backend, S3Config, S3Error};

use crate::exit::Hint;

/// `[storage]` as written: `type` picks the variant (`"filesystem"` when
/// absent), the other keys are that variant's.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    Filesystem(FilesystemConfig),
    /// The S3 crate's own settings, deserialised straight from the keys.
    S3(Box<S3Config>),
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig::Filesystem(FilesystemConfig::default())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    pub root: Option<PathBuf>,
}

/// Keys that only mean something for a bucket, named when they appear in a
/// filesystem `[storage]` (the usual mistake: a forgotten `type = "s3"`).
const S3_ONLY_KEYS: [&str; 6] = [
    "bucket",
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "redirect",
];

impl<'de> Deserialize<'de> for StorageConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StorageConfig, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let kind = match table.remove("type") {
            None => "filesystem".to_string(),
            Some(toml::Value::String(kind)) => kind,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "type = {other} is not a storage type (\"filesystem\" or \"s3\")"
                )))
            }
        };
        match kind.as_str() {
            "filesystem" => {
                if let Some(key) = S3_ONLY_KEYS.iter().find(|k| table.contains_key(**k)) {
                    return Err(D::Error::custom(format!(
                        "storage key {key:?} only applies to type = \"s3\", but the storage type is \"filesystem\""
                    )));
                }
                toml::Value::Table(table)
                    .try_into()
                    .map(StorageConfig::Filesystem)
                    .map_err(D::Error::custom)
            }
            "s3" => {
                if table.contains_key("root") {
                    return Err(D::Error::custom(
                        "`root` applies to filesystem storage; with type = \"s3\" the data lives in the bucket",
                    ));
                }
                toml::Value::Table(table)
                    .try_into()
                    .map(|c| StorageConfig::S3(Box::new(c)))
                    .map_err(D::Error::custom)
            }
            other => Err(D::Error::custom(format!(
                "storage type {other:?} is not supported by this wharf (supported: \"filesystem\", \"s3\")"
            ))),
        }
    }
}

/// Where the data is, after `--root` had its say.
#[derive(Debug, Clone)]
pub enum StorageSettings {
    Filesystem { root: PathBuf },
    S3(Box<S3Config>),
}

impl StorageConfig {
    /// `--root` (`cli_root`) wins over a filesystem `root`; it makes no
    /// sense with a bucket.
    pub fn resolve(self, cli_root: Option<PathBuf>) -> anyhow::Result<StorageSettings> {
        match self {
            StorageConfig::Filesystem(fs) => Ok(StorageSettings::Filesystem {
                root: cli_root
                    .or(fs.root)
                    .unwrap_or_else(|| PathBuf::from("wharf-data")),
            }),
            StorageConfig::S3(s3) => {
                anyhow::ensure!(
                    cli_root.is_none(),
                    "--root applies to filesystem storage; the configuration's [storage] is type = \"s3\", where the data lives in the bucket"
                );
                Ok(StorageSettings::S3(s3))
            }
        }
    }
}

/// How a command shares the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `serve`: creates a filesystem root that does not exist yet; checks
    /// the bucket first, or with `wait` serves not-ready until it answers.
    Serve { wait: bool },
    /// `gc` and `fsck`: next to servers that may be writing right now (their
    /// files in flight are not ours to delete); the root must exist.
    Beside,
}

impl StorageSettings {
    /// Where the data is, for logs and reports.
    pub fn describe(&self) -> String {
        match self {
            StorageSettings::Filesystem { root } => root.display().to_string(),
            StorageSettings::S3(s3) => format!("s3: {}", s3.describe()),
        }
    }

    /// The store over these settings.
    pub async fn open(&self, access: Access) -> anyhow::Result<Store> {
        match self {
            StorageSettings::Filesystem { root } => open_fs(root, access),
            StorageSettings::S3(s3) => {
                let wait = matches!(access, Access::Serve { wait: true });
                let backend = open_s3((**s3).clone(), wait).await?;
                Ok(Store::new(backend))
            }
        }
    }
}

fn open_fs(root: &std::path::Path, access: Access) -> anyhow::Result<Store> {
    match access {
        Access::Serve { .. } => Store::open_fs(root)
            .with_context(|| format!("cannot open storage at {}", root.display()))
            .context(Hint(
                "check that the directory given to --root is writable by this user".into(),
            )),
        Access::Beside => {
            if !root.join(wharf_storage::layout::VERSION_KEY).exists() {
                return Err(anyhow::anyhow!(
                    "{} is not a wharf storage root (no {} file)",
                    root.display(),
                    wharf_storage::layout::VERSION_KEY
                )
                .context(Hint(
                    "give the directory `wharf serve --root` uses, or --config with the server's [storage] (a directory or an S3 bucket)".into(),
                )));
            }
            Store::open_fs_shared(root)
                .with_context(|| format!("cannot open storage at {}", root.display()))
        }
    }
}

/// Check the bucket before using it: wrong credentials, a missing bucket or
/// a server that does not answer stop the command with the reason, unless
/// `wait` asks to serve anyway. Then `/readyz` reports not ready (the
/// layout marker cannot be read) and the check is retried in the
/// background until it passes.
async fn open_s3(config: S3Config, wait: bool) -> anyhow::Result<Arc<S3Backend>> {
    let what = config.describe();
    let backend = Arc::new(S3Backend::new(config).map_err(|e| s3_failure(&what, e))?);
    match backend.check().await {
        Ok(()) => Ok(backend),
        Err(e) if wait => {
            tracing::warn!(error = %e, hint = e.hint(), "object storage is not usable yet; serving as not ready and retrying");
            tokio::spawn(retry_check(backend.clone()));
            Ok(backend)
        }
        Err(e) => Err(s3_failure(&what, e)),
    }
}

fn s3_failure(what: &str, e: S3Error) -> anyhow::Error {
    let hint = e.hint().to_string();
    anyhow::Error::new(e)
        .context(format!("cannot use object storage ({what})"))
        .context(Hint(hint))
}

async fn retry_check(backend: Arc<S3Backend>) {
    let mut wait = Duration::from_secs(1);
    loop {
        tokio::time::sleep(wait).await;
        match backend.check().await {
            Ok(()) => {
                tracing::info!("object storage answers; ready");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, hint = e.hint(), "object storage still not usable")
            }
        }
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        storage: StorageConfig,
    }

    fn storage(text: &str) -> Result<StorageConfig, String> {
        toml::from_str::<File>(text)
            .map(|f| f.storage)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn filesystem_is_the_default_and_root_can_be_overridden() {
        let s = storage("").unwrap().resolve(None).unwrap();
        assert!(
            matches!(s, StorageSettings::Filesystem { root } if root == std::path::Path::new("wharf-data"))
        );
        let s = storage("[storage]\nroot = \"/srv\"\n").unwrap();
        let s = s.resolve(Some("/data".into())).unwrap();
        assert!(
            matches!(s, StorageSettings::Filesystem { root } if root == std::path::Path::new("/data"))
        );
    }

    #[test]
    fn s3_keys_go_straight_into_the_s3_config() {
        let s = storage("[storage]\ntype = \"s3\"\nbucket = \"reg\"\nprefix = \"prod\"\n").unwrap();
        let StorageConfig::S3(c) = &s else {
            panic!("expected s3")
        };
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("reg", "prod"));
        assert!(
            s.resolve(Some("/data".into())).is_err(),
            "--root with a bucket"
        );
    }

    #[test]
    fn mistakes_name_the_key() {
        for (text, wanted) in [
            (
                "[storage]\nbucket = \"b\"\n",
                "only applies to type = \"s3\"",
            ),
            ("[storage]\ntype = \"tape\"\n", "tape"),
            (
                "[storage]\ntype = \"s3\"\nbucket = \"b\"\nroot = \"/srv\"\n",
                "root",
            ),
            ("[storage]\nrooot = \"/srv\"\n", "rooot"),
            ("[storage]\ntype = \"s3\"\n", "bucket"),
        ] {
            let e = storage(text).unwrap_err();
            assert!(e.contains(wanted), "{text}: {e}");
        }
    }

    #[tokio::test]
    async fn gc_and_fsck_refuse_a_directory_that_is_not_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = StorageSettings::Filesystem {
            root: dir.path().to_path_buf(),
        };
        let e = s.open(Access::Beside).await.err().unwrap();
        assert!(
            format!("{e:#}").contains("not a wharf storage root"),
            "{e:#}"
        );
        s.open(Access::Serve { wait: false }).await.unwrap();
        s.open(Access::Beside).await.unwrap();
    }
}
