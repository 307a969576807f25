//! What one containerd release takes from a config.toml for the CRI's
//! pulls: which plugin's `registry` table it reads, the `config_path` and
//! deprecated `mirrors` that result, the sandbox image, and every registry
//! setting in the file that this release does not read.
//!
//! Each rule names the release it was read from or observed with:
//! - 1.6/1.7 decode plugin tables by their full ID for any `version` ≥ 2
//!   (1.6 `services/server/config` `Decode`), so a `version = 3` file is read
//!   with version-2 IDs: `io.containerd.grpc.v1.cri` is used and
//!   `io.containerd.cri.v1.images` ignored (observed with 1.6.20 over the CRI).
//!   Without `version` they decode short IDs (`[plugins.cri]`).
//! - 2.x migrates version 1 and 2 files on every start (2.0
//!   `cmd/containerd/server/config/config.go`, `v1Migrate`/`v2Migrate`): the
//!   CRI `registry` and `sandbox_image` move to `io.containerd.cri.v1.images`
//!   (`registry`, `pinned_images.sandbox`). A version-3 file is read as is;
//!   a version it does not know (above 3 for 2.0–2.2, above 4 for 2.3+) stops
//!   containerd at start-up ("expected containerd config version equal to
//!   or less than").
//! - `mirrors` together with `config_path` fails the CRI plugin's validation
//!   (1.6 `pkg/cri/config` `ValidatePluginConfig`: "`mirrors` cannot be set
//!   when `config_path` is provided"); `mirrors` alone are used (deprecated).
//! - From 2.2.0 an unset `config_path` defaults to
//!   `/etc/containerd/certs.d:/etc/docker/certs.d` (2.2 `DefaultImageConfig`).

use std::collections::BTreeMap;

use toml_edit::{Document, Item, TableLike};

use crate::source::LineIndex;
use crate::version::{
    ConfigVersion, ContainerdRelease, CRI_IMAGES_PLUGIN, CRI_V1_PLUGIN, CRI_V2_PLUGIN,
};

/// A setting in the file that the release does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredSetting {
    /// The table as written, e.g. `plugins."io.containerd.cri.v1.images".registry`.
    pub table: String,
    pub key: String,
    pub line: usize,
    /// The table this release reads instead.
    pub read_instead: String,
    /// Why, with the release.
    pub why: String,
}

/// What the release loads from the file for the CRI's pulls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryModel {
    pub release: ContainerdRelease,
    /// The file's `version` (1 when absent).
    pub file_version: i64,
    /// Set when containerd refuses to start with this file.
    pub refuses_to_start: Option<String>,
    /// The CRI's `config_path`, as loaded.
    pub config_path: Option<String>,
    /// Where the file sets it (None when defaulted or unset).
    pub config_path_line: Option<usize>,
    /// The release's default filled it in.
    pub config_path_defaulted: bool,
    /// Deprecated `registry.mirrors` the CRI uses: registry → endpoints.
    pub mirrors: BTreeMap<String, Vec<String>>,
    pub mirrors_line: Option<usize>,
    /// `mirrors` next to `config_path`: the CRI plugin does not load at all.
    pub cri_disabled: Option<String>,
    /// The sandbox image and where it is set (None: the release's default).
    pub sandbox_image: String,
    pub sandbox_line: Option<usize>,
    pub ignored: Vec<IgnoredSetting>,
}

/// The sandbox image a release uses when the file sets none (each
/// release's `DefaultConfig`/`DefaultImageConfig`; 2.4.2 observed).
pub fn default_sandbox_image(release: ContainerdRelease) -> &'static str {
    match (release.major, release.minor) {
        (1, 6) => "registry.k8s.io/pause:3.6",
        (1, _) => "registry.k8s.io/pause:3.8",
        (2, 0 | 1) => "registry.k8s.io/pause:3.10",
        (2, 2 | 3) => "registry.k8s.io/pause:3.10.1",
        _ => "registry.k8s.io/pause:3.10.2",
    }
}

/// Model `text` for `release`. `Err` when it is not TOML (containerd
/// refuses to start).
pub fn model_registry(text: &str, release: ContainerdRelease) -> Result<RegistryModel, String> {
    let doc =
        Document::parse(text).map_err(|e| format!("not valid TOML: {}", e.message().trim()))?;
    let lines = LineIndex::new(text);
    let reader = Reader {
        doc: &doc,
        lines: &lines,
    };
    let file_version = match doc.get("version") {
        None => 1,
        Some(item) => item
            .as_integer()
            .ok_or_else(|| "`version` is not an integer".to_owned())?,
    };
    let mut model = RegistryModel {
        release,
        file_version,
        refuses_to_start: refusal(file_version, release),
        config_path: None,
        config_path_line: None,
        config_path_defaulted: false,
        mirrors: BTreeMap::new(),
        mirrors_line: None,
        cri_disabled: None,
        sandbox_image: default_sandbox_image(release).to_owned(),
        sandbox_line: None,
        ignored: Vec::new(),
    };
    let has_v2_registry = reader
        .item(&["plugins", CRI_V2_PLUGIN, "registry"])
        .is_some();
    let read = reads(file_version, release, has_v2_registry);
    let registry_table = format!("plugins.\"{}\".registry", read.registry_plugin);
    for (plugin, why) in ignored_plugins(file_version, release, read.registry_plugin) {
        for key in ["config_path", "mirrors", "configs"] {
            if let Some(line) = reader.line_of(&["plugins", plugin, "registry", key]) {
                model.ignored.push(IgnoredSetting {
                    table: format!("plugins.\"{plugin}\".registry"),
                    key: key.to_owned(),
                    line,
                    read_instead: registry_table.clone(),
                    why: why.clone(),
                });
            }
        }
    }
    let registry = ["plugins", read.registry_plugin, "registry"];
    if let Some(path) = reader.string(&[&registry[..], &["config_path"]].concat()) {
        if !path.is_empty() {
            model.config_path = Some(path);
            model.config_path_line = reader.line_of(&[&registry[..], &["config_path"]].concat());
        }
    }
    model.mirrors = reader.mirrors(&registry);
    model.mirrors_line = reader.line_of(&[&registry[..], &["mirrors"]].concat());
    if model.config_path.is_some() && !model.mirrors.is_empty() {
        model.cri_disabled = Some(format!(
            "[{registry_table}] sets both `mirrors` and `config_path`: the CRI plugin fails to load \
             (\"`mirrors` cannot be set when `config_path` is provided\") and nothing is pulled"
        ));
    }
    if model.config_path.is_none() && model.mirrors.is_empty() {
        if let Some(default) = release.default_config_path() {
            model.config_path = Some(default.to_owned());
            model.config_path_defaulted = true;
        }
    }
    if let Some(line) = reader.line_of(&read.sandbox) {
        if let Some(image) = reader.string(&read.sandbox) {
            model.sandbox_image = image;
            model.sandbox_line = Some(line);
        }
    }
    Ok(model)
}

/// The key path of the sandbox image a release reads from a file of
/// `version` (`None`: the release is unknown, read the file's own version).
pub(crate) fn sandbox_key(
    version: i64,
    release: Option<ContainerdRelease>,
    has_v2_registry: bool,
) -> Vec<&'static str> {
    match release {
        Some(release) => reads(version, release, has_v2_registry).sandbox,
        None if version <= 1 => vec!["plugins", CRI_V1_PLUGIN, "sandbox_image"],
        None if version == 2 => vec!["plugins", CRI_V2_PLUGIN, "sandbox_image"],
        None => vec!["plugins", CRI_IMAGES_PLUGIN, "pinned_images", "sandbox"],
    }
}

/// Whether an image reference names its registry (`registry.k8s.io/pause`)
/// rather than leaving it to the docker.io default (`pause`).
pub fn is_fully_qualified(image: &str) -> bool {
    image.split_once('/').is_some_and(|(first, _)| {
        first.contains('.') || first.contains(':') || first == "localhost"
    })
}

struct Reads {
    registry_plugin: &'static str,
    sandbox: Vec<&'static str>,
}

/// Whether 2.x migrates the file's CRI sections on start: versions 1 and 2
/// always, version 3 from 2.3 (observed with 2.4.2: "Configuration migrated
/// from version 3", and a version-2 `registry` table is read).
fn migrates_cri(version: i64, release: ContainerdRelease) -> bool {
    !release.is_1x()
        && (version <= 2 || (version == 3 && release.config_version() == ConfigVersion::V4))
}

/// The tables a release reads for a file of `version`.
/// `has_v2_registry`: the file has `[plugins."io.containerd.grpc.v1.cri".registry]`.
fn reads(version: i64, release: ContainerdRelease, has_v2_registry: bool) -> Reads {
    let v2_sandbox = |plugin| vec!["plugins", plugin, "sandbox_image"];
    let images = Reads {
        registry_plugin: CRI_IMAGES_PLUGIN,
        sandbox: vec!["plugins", CRI_IMAGES_PLUGIN, "pinned_images", "sandbox"],
    };
    if version <= 1 {
        // Short IDs; 2.x migrates them like a version-2 file.
        return Reads {
            registry_plugin: CRI_V1_PLUGIN,
            sandbox: v2_sandbox(CRI_V1_PLUGIN),
        };
    }
    let v2 = Reads {
        registry_plugin: CRI_V2_PLUGIN,
        sandbox: v2_sandbox(CRI_V2_PLUGIN),
    };
    if release.is_1x() || (migrates_cri(version, release) && has_v2_registry) {
        v2
    } else {
        images
    }
}

/// Plugins with a `registry` table this release does not read, and why.
fn ignored_plugins(
    version: i64,
    release: ContainerdRelease,
    read: &'static str,
) -> Vec<(&'static str, String)> {
    let why = |plugin: &str| -> String {
        match (release.is_1x(), plugin) {
            (true, CRI_IMAGES_PLUGIN) => format!(
                "containerd {release} has no plugin {CRI_IMAGES_PLUGIN} (it came with 2.0) and reads \
                 plugins by their version-2 IDs whatever `version` says"
            ),
            (true, _) if version <= 1 => format!(
                "the file has no `version` (version 1): containerd {release} reads short plugin IDs \
                 ([plugins.{CRI_V1_PLUGIN}]) and ignores [plugins.\"{plugin}\"]"
            ),
            (true, _) => format!(
                "containerd {release} reads version ≥ 2 files by full plugin IDs; [plugins.{plugin}] is a \
                 version-1 short ID"
            ),
            (false, CRI_V2_PLUGIN) => format!(
                "in a version-{version} file containerd {release} reads the registry from \
                 {CRI_IMAGES_PLUGIN}; {CRI_V2_PLUGIN} keeps only server settings and ignores the rest \
                 (\"Ignoring unknown key in TOML\")"
            ),
            (false, _) => format!(
                "containerd {release} reads only [plugins.\"{read}\".registry] from a version-{version} file"
            ),
        }
    };
    [CRI_V1_PLUGIN, CRI_V2_PLUGIN, CRI_IMAGES_PLUGIN]
        .into_iter()
        .filter(|p| *p != read)
        // What 2.x migrates is merged into the images plugin, which it reads too.
        .filter(|p| !(migrates_cri(version, release) && *p == CRI_IMAGES_PLUGIN))
        .map(|p| (p, why(p)))
        .collect()
}

/// containerd 2.x stops on a version newer than it knows; 1.x does not
/// check (1.6.20 starts with `version = 3`).
fn refusal(version: i64, release: ContainerdRelease) -> Option<String> {
    let native = i64::from(release.config_version().number());
    (!release.is_1x() && version > native).then(|| {
        format!(
            "containerd {release} refuses to start: \"expected containerd config version equal to or \
             less than `{native}`, got `{version}`\""
        )
    })
}

struct Reader<'a> {
    doc: &'a Document<&'a str>,
    lines: &'a LineIndex<'a>,
}

impl Reader<'_> {
    fn item(&self, path: &[&str]) -> Option<&Item> {
        let mut item = self.doc.as_item();
        for key in path {
            item = item.get(*key)?;
        }
        Some(item)
    }

    fn string(&self, path: &[&str]) -> Option<String> {
        self.item(path)?.as_str().map(str::to_owned)
    }

    /// 1-based line of the last key of `path`.
    fn line_of(&self, path: &[&str]) -> Option<usize> {
        let (last, parents) = path.split_last()?;
        let parent = self.item(parents)?.as_table_like()?;
        parent.get(last)?;
        let span = parent
            .key(last)
            .and_then(|k| k.span())
            .or_else(|| parent.get(last).and_then(Item::span))?;
        Some(self.lines.position(span.start).0)
    }

    fn mirrors(&self, registry: &[&str]) -> BTreeMap<String, Vec<String>> {
        let path = [registry, &["mirrors"]].concat();
        let Some(table) = self.item(&path).and_then(Item::as_table_like) else {
            return BTreeMap::new();
        };
        table
            .iter()
            .map(|(host, entry)| (host.to_owned(), endpoints(entry)))
            .collect()
    }
}

fn endpoints(entry: &Item) -> Vec<String> {
    entry
        .as_table_like()
        .and_then(|t: &dyn TableLike| t.get("endpoint"))
        .and_then(Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(text: &str, release: &str) -> RegistryModel {
        model_registry(text, release.parse().unwrap()).unwrap()
    }

    const V3_V3_PATHS: &str = "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
    const V3_V2_PATHS: &str = "version = 3\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
    const V2: &str = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";

    #[test]
    fn containerd_1_6_ignores_the_images_plugin_of_a_version_3_file() {
        let m = model(V3_V3_PATHS, "1.6.20");
        assert_eq!(m.config_path, None);
        assert_eq!(m.refuses_to_start, None);
        assert_eq!(m.ignored.len(), 1);
        assert_eq!(m.ignored[0].line, 3);
        assert_eq!(
            m.ignored[0].read_instead,
            "plugins.\"io.containerd.grpc.v1.cri\".registry"
        );
    }

    #[test]
    fn containerd_1_6_reads_version_2_paths_in_a_version_3_file() {
        let m = model(V3_V2_PATHS, "1.6.20");
        assert_eq!(m.config_path.as_deref(), Some("/etc/containerd/certs.d"));
        assert!(m.ignored.is_empty());
    }

    #[test]
    fn containerd_2_ignores_version_2_paths_in_a_version_3_file() {
        let m = model(V3_V2_PATHS, "2.1");
        assert_eq!(m.config_path, None);
        assert_eq!(
            m.ignored[0].table,
            "plugins.\"io.containerd.grpc.v1.cri\".registry"
        );
        // 2.2 fills in its default instead.
        let m = model(V3_V2_PATHS, "2.2.0");
        assert!(m.config_path_defaulted);
    }

    #[test]
    fn containerd_2_3_migrates_version_2_paths_in_a_version_3_file() {
        let m = model(V3_V2_PATHS, "2.4.2");
        assert_eq!(m.config_path.as_deref(), Some("/etc/containerd/certs.d"));
        assert!(m.ignored.is_empty(), "{:?}", m.ignored);
    }

    #[test]
    fn containerd_2_migrates_a_version_2_file() {
        let m = model(V2, "2.0.5");
        assert_eq!(m.config_path.as_deref(), Some("/etc/containerd/certs.d"));
        assert_eq!(m.sandbox_image, "registry.k8s.io/pause:3.9");
        assert_eq!(m.sandbox_line, Some(3));
        assert!(m.ignored.is_empty());
    }

    #[test]
    fn unknown_versions_stop_2x_but_not_1x() {
        let text = "version = 4\n";
        assert!(model(text, "2.1").refuses_to_start.is_some());
        assert!(model(text, "2.3").refuses_to_start.is_none());
        assert!(model(text, "1.7").refuses_to_start.is_none());
    }

    #[test]
    fn deprecated_mirrors_are_used_without_config_path() {
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"http://127.0.0.1:5000\"]\n";
        let m = model(text, "1.6.20");
        assert_eq!(m.mirrors["docker.io"], ["http://127.0.0.1:5000"]);
        assert_eq!(m.config_path, None);
        assert_eq!(m.cri_disabled, None);
        // No default config_path either, since mirrors are set.
        assert_eq!(model(text, "2.2").config_path, None);
    }

    #[test]
    fn release_defaults_for_the_sandbox_image() {
        assert_eq!(
            model("version = 2\n", "1.6.20").sandbox_image,
            "registry.k8s.io/pause:3.6"
        );
        assert_eq!(
            model("version = 3\n", "2.4.2").sandbox_image,
            "registry.k8s.io/pause:3.10.2"
        );
    }
}
