//! What a running containerd says it loaded, from the answers of three
//! calls: the CRI's `Version` and verbose `Status`, and containerd's plugin
//! introspection.
//!
//! Where each release puts it (observed with 1.6.20 and 2.4.2):
//! - containerd 1.6/1.7: `Status` `info["config"]` is the CRI plugin's whole
//!   config as JSON: `registry.configPath`, `registry.mirrors`,
//!   `registry.configs`, `sandboxImage`.
//! - containerd 2.x: `info["config"]` holds only the runtime half; the image
//!   plugin (`io.containerd.cri.v1.images`) exports `RegistryConfigPath`
//!   through introspection, and deprecation warnings (such as the use of
//!   `registry.mirrors`) come as the message of the
//!   `ContainerdHasNoDeprecationWarnings` condition. The sandbox image is
//!   not reported.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::client::CriClient;
use crate::error::CriError;
use crate::proto;

/// The plugin type of containerd 2.x's CRI image service.
pub const CRI_IMAGES_PLUGIN_TYPE: &str = "io.containerd.cri.v1";
/// What containerd 2.x's image plugin exports its hosts directory as.
pub const REGISTRY_CONFIG_PATH_EXPORT: &str = "RegistryConfigPath";

/// The runtime's own account of its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// `containerd` for containerd.
    pub runtime_name: String,
    /// As reported, e.g. `1.6.20~ds1` or `2.4.2+unknown`.
    pub runtime_version: String,
    /// The CRI registry settings in force, when the runtime reports them.
    pub registry: Option<LoadedRegistry>,
    /// The sandbox (pause) image, when the runtime reports it (1.x only).
    pub sandbox_image: Option<String>,
    /// Deprecation warnings the runtime raised: (id, message).
    pub deprecations: Vec<(String, String)>,
    /// Which answer the registry settings came from.
    pub registry_source: &'static str,
}

/// The CRI's registry settings as loaded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadedRegistry {
    /// `config_path`; `None` when empty.
    pub config_path: Option<String>,
    /// Deprecated `registry.mirrors`: registry → endpoints. `None` when the
    /// runtime does not report them (2.x).
    pub mirrors: Option<BTreeMap<String, Vec<String>>>,
    /// Registries with a deprecated `registry.configs` entry (1.x only).
    pub configs: Vec<String>,
}

impl Loaded {
    /// Whether the runtime warned that it uses deprecated `registry.mirrors`
    /// (containerd 2.x id `io.containerd.deprecation/cri-registry-mirrors`).
    pub fn warns_of_mirrors(&self) -> bool {
        self.deprecations
            .iter()
            .any(|(id, _)| id.ends_with("cri-registry-mirrors"))
    }
}

/// Ask the runtime on `socket`; every call is bounded by `timeout`.
pub async fn ask(socket: &Path, timeout: Duration) -> Result<Loaded, CriError> {
    let client = CriClient::connect(socket, timeout).await?;
    let version = client.version().await?;
    let status = client.status().await?;
    // Introspection is containerd's own service: another runtime lacks it,
    // which only means its registry settings stay unknown.
    let plugins = match client.plugins(&[]).await {
        Ok(plugins) => plugins,
        Err(CriError::Unimplemented { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    from_answers(socket, &version, &status, &plugins)
}

/// Build the view from the three answers.
pub fn from_answers(
    socket: &Path,
    version: &proto::VersionResponse,
    status: &proto::StatusResponse,
    plugins: &[proto::Plugin],
) -> Result<Loaded, CriError> {
    let config = match status.info.get("config") {
        Some(text) => {
            Some(
                serde_json::from_str::<CriConfig>(text).map_err(|e| CriError::Unexpected {
                    socket: socket.to_owned(),
                    what: "Status".to_owned(),
                    reason: format!("info[\"config\"] is not the CRI config JSON: {e}"),
                })?,
            )
        }
        None => None,
    };
    let exported = plugins
        .iter()
        .find(|p| p.r#type == CRI_IMAGES_PLUGIN_TYPE && p.id == "images")
        .and_then(|p| p.exports.get(REGISTRY_CONFIG_PATH_EXPORT));
    let from_status = config.as_ref().and_then(|c| c.registry.clone());
    let (registry, registry_source) = match (from_status, exported) {
        (Some(r), _) => (
            Some(LoadedRegistry {
                config_path: non_empty(r.config_path),
                mirrors: Some(
                    r.mirrors
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(host, m)| (host, m.endpoint.unwrap_or_default()))
                        .collect(),
                ),
                configs: r.configs.unwrap_or_default().into_keys().collect(),
            }),
            "CRI Status (verbose): info[\"config\"].registry",
        ),
        (None, Some(path)) => (
            Some(LoadedRegistry {
                config_path: non_empty(Some(path.clone())),
                mirrors: None,
                configs: Vec::new(),
            }),
            "introspection: io.containerd.cri.v1.images exports RegistryConfigPath",
        ),
        (None, None) => (None, "not reported"),
    };
    Ok(Loaded {
        runtime_name: version.runtime_name.clone(),
        runtime_version: version.runtime_version.clone(),
        registry,
        sandbox_image: config.and_then(|c| non_empty(c.sandbox_image)),
        deprecations: deprecations(status),
        registry_source,
    })
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// containerd 2.x lists its deprecation warnings as a JSON object in the
/// message of this condition.
fn deprecations(status: &proto::StatusResponse) -> Vec<(String, String)> {
    let conditions = status.status.iter().flat_map(|s| &s.conditions);
    conditions
        .filter(|c| c.r#type == "ContainerdHasNoDeprecationWarnings" && !c.status)
        .filter_map(|c| serde_json::from_str::<BTreeMap<String, String>>(&c.message).ok())
        .flatten()
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CriConfig {
    registry: Option<RegistryJson>,
    sandbox_image: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct RegistryJson {
    config_path: Option<String>,
    mirrors: Option<BTreeMap<String, MirrorJson>>,
    configs: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Deserialize, Clone)]
struct MirrorJson {
    endpoint: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(v: &str) -> proto::VersionResponse {
        proto::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "containerd".into(),
            runtime_version: v.into(),
            runtime_api_version: "v1".into(),
        }
    }

    fn status(
        info: &[(&str, &str)],
        conditions: Vec<proto::RuntimeCondition>,
    ) -> proto::StatusResponse {
        proto::StatusResponse {
            status: Some(proto::RuntimeStatus { conditions }),
            info: info
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    #[test]
    fn containerd_1_reports_its_registry_and_sandbox_in_status() {
        let config = r#"{"registry":{"configPath":"","mirrors":{"docker.io":{"endpoint":["http://127.0.0.1:5000"]}},"configs":null,"auths":null,"headers":null},"sandboxImage":"registry.k8s.io/pause:3.6"}"#;
        let loaded = from_answers(
            Path::new("/s"),
            &version("1.6.20~ds1"),
            &status(&[("config", config)], vec![]),
            &[],
        )
        .unwrap();
        let registry = loaded.registry.unwrap();
        assert_eq!(registry.config_path, None);
        assert_eq!(
            registry.mirrors.unwrap()["docker.io"],
            ["http://127.0.0.1:5000"]
        );
        assert_eq!(
            loaded.sandbox_image.as_deref(),
            Some("registry.k8s.io/pause:3.6")
        );
    }

    #[test]
    fn containerd_2_reports_config_path_through_introspection() {
        let plugin = proto::Plugin {
            r#type: CRI_IMAGES_PLUGIN_TYPE.into(),
            id: "images".into(),
            exports: [(
                REGISTRY_CONFIG_PATH_EXPORT.to_owned(),
                "/etc/containerd/certs.d".to_owned(),
            )]
            .into(),
        };
        let warning = proto::RuntimeCondition {
            r#type: "ContainerdHasNoDeprecationWarnings".into(),
            status: false,
            reason: "ContainerdHasDeprecationWarnings".into(),
            message: r#"{"io.containerd.deprecation/cri-registry-mirrors":"use config_path"}"#
                .into(),
        };
        let loaded = from_answers(
            Path::new("/s"),
            &version("2.4.2"),
            &status(&[("config", r#"{"containerd":{}}"#)], vec![warning]),
            &[plugin],
        )
        .unwrap();
        let registry = loaded.registry.clone().unwrap();
        assert_eq!(
            registry.config_path.as_deref(),
            Some("/etc/containerd/certs.d")
        );
        assert_eq!(registry.mirrors, None);
        assert!(loaded.warns_of_mirrors());
        assert_eq!(loaded.sandbox_image, None);
    }

    #[test]
    fn garbage_config_is_an_error_not_an_empty_view() {
        let err = from_answers(
            Path::new("/s"),
            &version("1.6.20"),
            &status(&[("config", "not json")], vec![]),
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, CriError::Unexpected { .. }), "{err}");
    }
}
