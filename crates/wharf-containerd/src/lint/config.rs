//! Rules for containerd's config.toml.

use std::path::Path;

use toml_edit::{Document, Item, TableLike};

use super::support::{did_you_mean, entries, key_span, nearest, Source};
use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::version::{
    ConfigVersion, ContainerdRelease, CRI_IMAGES_PLUGIN, CRI_RUNTIME_PLUGIN, CRI_V1_PLUGIN,
    CRI_V2_PLUGIN,
};

/// What the config lint found, plus the `config_path` for the hosts lint.
pub(crate) struct ConfigFindings {
    pub diagnostics: Vec<Diagnostic>,
    pub config_path: Option<String>,
    /// The sandbox image the file sets (or the release's default), with
    /// where it is set, for the hosts lint.
    pub sandbox: Option<(String, Option<crate::diagnostic::Position>)>,
}

/// Keys the `registry` table has in every supported release
/// (1.6 `pkg/cri/config` and 2.x `internal/cri/config` `Registry`).
const REGISTRY_KEYS: [&str; 5] = ["config_path", "mirrors", "configs", "auths", "headers"];
/// `registry.mirrors.<host>` (`Mirror`).
const MIRROR_KEYS: [&str; 1] = ["endpoint"];
/// `registry.configs.<host>.auth` (`AuthConfig`).
const AUTH_KEYS: [&str; 4] = ["username", "password", "auth", "identitytoken"];
/// What stays in `io.containerd.grpc.v1.cri` in versions 3 and 4 (the
/// server settings; v2.0 `plugins/cri/cri.go` `configMigration`).
const CRI_SERVER_KEYS: [&str; 6] = [
    "disable_tcp_service",
    "stream_server_address",
    "stream_server_port",
    "stream_idle_timeout",
    "enable_tls_streaming",
    "x509_key_pair_streaming",
];
/// Version-2 CRI keys that moved to the image plugin (v2.0
/// `plugins/cri/images/plugin.go` `migrateConfig`).
const CRI_IMAGE_KEYS: [&str; 6] = [
    "registry",
    "image_decryption",
    "max_concurrent_downloads",
    "image_pull_progress_timeout",
    "image_pull_with_sync_fs",
    "stats_collect_period",
];

pub(crate) fn lint_config_text(
    path: &Path,
    text: &str,
    release: Option<ContainerdRelease>,
) -> ConfigFindings {
    let src = Source::new(path, text);
    let mut out = ConfigFindings {
        diagnostics: Vec::new(),
        config_path: None,
        sandbox: None,
    };
    let doc = match Document::parse(text) {
        Ok(doc) => doc,
        Err(err) => {
            out.diagnostics.push(syntax_error(&src, &err));
            return out;
        }
    };
    let version = match read_version(&src, &doc, release) {
        Ok(v) => v,
        Err(diag) => {
            out.diagnostics.push(*diag);
            return out;
        }
    };
    let root = doc.as_table();
    if let Some(d) = release_mismatch(&src, root, version, release) {
        out.diagnostics.push(d);
    }
    let plugins = root.get("plugins");
    out.diagnostics
        .extend(wrong_version_paths(&src, plugins, version, release));
    let registry = plugins
        .and_then(|p| p.get(version.registry_plugin()))
        .and_then(|p| p.get("registry"));
    lint_registry(&src, registry, plugins, version, release, &mut out);
    lint_sandbox(&src, &doc, version, release, &mut out);
    out.diagnostics
        .extend(lint_unpack_platforms(&src, &doc, version, release));
    out
}

/// The transfer service's plugin, which unpacks what the CRI pulls on 2.1+.
const TRANSFER_PLUGIN: &str = "io.containerd.transfer.v1.local";
/// Snapshotters the transfer service unpacks into when `unpack_config` is
/// not set: the platform's default snapshotter (and erofs where loaded).
const DEFAULT_UNPACK_SNAPSHOTTERS: [&str; 2] = ["overlayfs", "erofs"];

/// From 2.1 the CRI pulls through the transfer service, which unpacks only
/// into the snapshotters its `unpack_config` names: an image snapshotter
/// outside that list fails every CRI pull with "unable to initialize
/// unpacker: no unpack platforms defined" (observed on 2.4.2 with
/// `snapshotter = "native"`), though `ctr` and 2.0 pull fine.
fn lint_unpack_platforms(
    src: &Source<'_>,
    doc: &Document<&str>,
    version: ConfigVersion,
    release: Option<ContainerdRelease>,
) -> Option<Diagnostic> {
    let release = release.filter(|r| r.cri_pulls_through_transfer_service())?;
    let plugins = doc.get("plugins");
    let images = plugins
        .and_then(|p| p.get(CRI_IMAGES_PLUGIN))
        .and_then(Item::as_table_like);
    let setting = |key: &str| images.and_then(|t| t.get(key));
    if setting("use_local_image_pull").and_then(Item::as_bool) == Some(true) {
        return None;
    }
    let snapshotter = setting("snapshotter")
        .and_then(Item::as_str)
        .unwrap_or("overlayfs");
    let transfer = plugins
        .and_then(|p| p.get(TRANSFER_PLUGIN))
        .and_then(Item::as_table_like);
    let unpack = transfer.and_then(|t| t.get("unpack_config"));
    let listed: Vec<&str> = match unpack {
        Some(list) => unpack_snapshotters(list),
        None => DEFAULT_UNPACK_SNAPSHOTTERS.to_vec(),
    };
    if listed.contains(&snapshotter) {
        return None;
    }
    // A version-2 file's `containerd.snapshotter` is migrated to the
    // runtime, not to the image service (2.0.14 and 2.4.2 `config dump`).
    let migrated = (version < ConfigVersion::V3)
        .then(|| {
            plugins
                .and_then(|p| p.get(CRI_V2_PLUGIN))
                .and_then(|p| p.get("containerd"))
                .and_then(|c| c.get("snapshotter"))
                .and_then(Item::as_str)
        })
        .flatten()
        .filter(|v2| *v2 != snapshotter && setting("snapshotter").is_none());
    let span = match (unpack, transfer) {
        (Some(_), Some(t)) => key_span(t, "unpack_config"),
        _ => images.and_then(|t| key_span(t, "snapshotter")),
    };
    let mut message = format!(
        "the CRI unpacks into the {snapshotter:?} snapshotter, but the transfer service containerd {release} \
         pulls through unpacks only into {}",
        listed.join(", ")
    );
    if let Some(v2) = migrated {
        message.push_str(&format!(
            " (this version-2 file sets `snapshotter = {v2:?}` under `{CRI_V2_PLUGIN}`, which 2.x does not carry over to \
             the image service)"
        ));
    }
    Some(
        src.diag(Code::UnpackPlatformMissing, Severity::Error, span, message)
            .containerd_will(
                "fail every kubelet (CRI) pull with \"unable to initialize unpacker: no unpack platforms defined\", \
                 while `ctr images pull` still works",
            )
            .fix(format!(
                "add `[[plugins.\"{TRANSFER_PLUGIN}\".unpack_config]]` with `platform = \"linux/<arch>\"`, \
                 `snapshotter = \"{snapshotter}\"` and `differ = \"walking\"` (or set `snapshotter` in \
                 `[plugins.\"{CRI_IMAGES_PLUGIN}\"]` to one listed, or `use_local_image_pull = true` there)"
            )),
    )
}

/// The snapshotters an `unpack_config` array of tables names.
fn unpack_snapshotters(list: &Item) -> Vec<&str> {
    fn from_table(t: &dyn TableLike) -> Option<&str> {
        t.get("snapshotter").and_then(Item::as_str)
    }
    match list {
        Item::ArrayOfTables(tables) => tables.iter().filter_map(|t| from_table(t)).collect(),
        Item::Value(toml_edit::Value::Array(values)) => values
            .iter()
            .filter_map(|v| v.as_inline_table())
            .filter_map(|t| from_table(t))
            .collect(),
        _ => Vec::new(),
    }
}

/// The sandbox (pause) image: kubeadm's images are fully qualified, and a
/// short name is pulled from docker.io, which has no pause image for
/// Kubernetes and which an air-gapped node cannot reach.
fn lint_sandbox(
    src: &Source<'_>,
    doc: &Document<&str>,
    version: ConfigVersion,
    release: Option<ContainerdRelease>,
    out: &mut ConfigFindings,
) {
    let has_v2_registry = doc
        .get("plugins")
        .and_then(|p| p.get(CRI_V2_PLUGIN))
        .and_then(|p| p.get("registry"))
        .is_some();
    let path = crate::model::sandbox_key(i64::from(version.number()), release, has_v2_registry);
    let (last, parents) = path.split_last().expect("a key path");
    let mut table = Some(doc.as_item());
    for key in parents {
        table = table.and_then(|t| t.get(*key));
    }
    let table = table.and_then(Item::as_table_like);
    let set = table.and_then(|t| t.get(last)).and_then(Item::as_str);
    let Some(image) = set
        .map(str::to_owned)
        .or_else(|| release.map(|r| crate::model::default_sandbox_image(r).to_owned()))
    else {
        return;
    };
    let span = table.and_then(|t| key_span(t, last));
    out.sandbox = Some((image.clone(), src.position(span.clone())));
    if set.is_some() && !crate::model::is_fully_qualified(&image) {
        out.diagnostics.push(
            src.diag(
                Code::SandboxImageNotQualified,
                Severity::Warning,
                span,
                format!("the sandbox image {image:?} names no registry"),
            )
            .containerd_will(format!(
                "pull it as docker.io/{}{image} for every pod sandbox; kubeadm pre-pulls registry.k8s.io/pause, \
                 so the two disagree and an air-gapped node cannot start pods",
                if image.contains('/') { "" } else { "library/" }
            ))
            .fix("write the full name kubeadm uses (`kubeadm config images list | grep pause`), e.g. \"registry.k8s.io/pause:3.10\""),
        );
    }
}

fn syntax_error(src: &Source<'_>, err: &toml_edit::TomlError) -> Diagnostic {
    src.diag(
        Code::InvalidToml,
        Severity::Error,
        err.span(),
        format!("not valid TOML: {}", err.message().trim()),
    )
    .containerd_will(
        "refuse to start: containerd 1.6/1.7 exit with \"failed to load TOML\", 2.x with \
         \"failed to unmarshal TOML at row R column C\"",
    )
    .fix("correct the TOML at this position (a quick check: `python3 -c 'import tomllib,sys; tomllib.load(open(sys.argv[1],\"rb\"))' FILE`)")
}

/// Read `version`; a value containerd cannot use stops further checks.
fn read_version(
    src: &Source<'_>,
    doc: &Document<&str>,
    release: Option<ContainerdRelease>,
) -> Result<ConfigVersion, Box<Diagnostic>> {
    let Some(item) = doc.get("version") else {
        return Ok(ConfigVersion::V1);
    };
    let span = key_span(doc.as_table(), "version");
    let number = item.as_integer();
    match number.map(ConfigVersion::from_number) {
        Some(Ok(v)) => Ok(v),
        _ => Err(Box::new(
            src.diag(
                Code::UnsupportedVersion,
                Severity::Error,
                span,
                format!(
                    "`version = {}` is not a containerd config version",
                    item.as_value().map(|v| v.to_string()).unwrap_or_default().trim()
                ),
            )
            .containerd_will(match release {
                Some(r) if !r.is_1x() => format!(
                    "refuse to start (\"expected containerd config version equal to or less than `{}`\")",
                    r.config_version()
                ),
                _ => "refuse to start if the value is not an integer; containerd 2.x also refuses \
                      versions above the newest it knows (3 for 2.0–2.2, 4 for 2.3+)"
                    .to_owned(),
            })
            .fix("use `version = 2` for containerd 1.6/1.7, `version = 3` for 2.0–2.2, `version = 4` for 2.3+"),
        )),
    }
}

/// A known target release that cannot read this file's version.
fn release_mismatch(
    src: &Source<'_>,
    root: &toml_edit::Table,
    version: ConfigVersion,
    release: Option<ContainerdRelease>,
) -> Option<Diagnostic> {
    let release = release?;
    let native = release.config_version();
    if version == ConfigVersion::V1 || version <= native {
        return None;
    }
    let will = if release.is_1x() {
        format!(
            "containerd {release} has no version {version}: it looks plugins up by their version-2 IDs \
             and silently ignores [plugins.\"{CRI_IMAGES_PLUGIN}\"], so no mirror is used"
        )
    } else {
        format!(
            "refuse to start: \"expected containerd config version equal to or less than `{native}`\""
        )
    };
    Some(
        src.diag(
            Code::UnsupportedVersion,
            Severity::Error,
            key_span(root, "version"),
            format!("version {version} is for {}, but the target is containerd {release}", version.releases()),
        )
        .containerd_will(will)
        .fix(format!(
            "write a version-{native} file for containerd {release} (`wharf containerd config --version {native}`)"
        )),
    )
}

/// Plugin sections the file's version does not read.
fn wrong_version_paths(
    src: &Source<'_>,
    plugins: Option<&Item>,
    version: ConfigVersion,
    release: Option<ContainerdRelease>,
) -> Vec<Diagnostic> {
    let Some(plugins_table) = plugins.and_then(Item::as_table_like) else {
        return Vec::new();
    };
    match version {
        ConfigVersion::V1 => v1_full_ids(src, plugins_table, release),
        ConfigVersion::V2 => v2_with_v3_ids(src, plugins_table, release),
        ConfigVersion::V3 | ConfigVersion::V4 => v3_with_v2_keys(src, plugins_table, version),
    }
}

/// No `version`: containerd 1.x decodes plugin configs by short ID (1.6
/// `services/server/config` `Decode`: `if c.GetVersion() == 1 { id = p.ID }`).
fn v1_full_ids(
    src: &Source<'_>,
    plugins: &dyn TableLike,
    release: Option<ContainerdRelease>,
) -> Vec<Diagnostic> {
    let on_2x = release.is_some_and(|r| !r.is_1x());
    [CRI_V2_PLUGIN, CRI_IMAGES_PLUGIN, CRI_RUNTIME_PLUGIN]
        .into_iter()
        .filter(|id| plugins.contains_key(id))
        .map(|id| {
            src.diag(
                Code::WrongVersionPath,
                if on_2x { Severity::Warning } else { Severity::Error },
                key_span(plugins, id),
                format!(
                    "[plugins.\"{id}\"] uses a fully qualified plugin ID, but the file has no `version` line, \
                     which means version 1 (short IDs such as [plugins.{CRI_V1_PLUGIN}])"
                ),
            )
            .containerd_will(
                "containerd 1.6/1.7 read this file as version 1 and silently ignore this section (no \
                 warning); containerd 2.x migrates version 1 on every start and logs \"Configuration \
                 migrated from version 1\"",
            )
            .fix("add `version = 2` (containerd 1.6/1.7) or `version = 3` (2.0–2.2) as the first line")
        })
        .collect()
}

/// Version 2 with version-3 plugin IDs: containerd 1.x has no such plugins.
fn v2_with_v3_ids(
    src: &Source<'_>,
    plugins: &dyn TableLike,
    release: Option<ContainerdRelease>,
) -> Vec<Diagnostic> {
    let on_2x = release.is_some_and(|r| !r.is_1x());
    [CRI_IMAGES_PLUGIN, CRI_RUNTIME_PLUGIN]
        .into_iter()
        .filter(|id| plugins.contains_key(id))
        .map(|id| {
            src.diag(
                Code::WrongVersionPath,
                if on_2x { Severity::Warning } else { Severity::Error },
                key_span(plugins, id),
                format!("[plugins.\"{id}\"] is a version-3 plugin, but this file is version 2"),
            )
            .containerd_will(
                "containerd 1.6/1.7 have no such plugin and silently drop the whole section: no \
                 warning, and `containerd config dump` shows the setting gone (observed with 1.6.20); \
                 containerd 2.x migrates version-2 files and would read it",
            )
            .fix(format!(
                "for containerd 1.6/1.7 move these settings under [plugins.\"{CRI_V2_PLUGIN}\"] \
                 (e.g. [plugins.\"{CRI_V2_PLUGIN}\".registry]); for containerd 2.x set `version = 3`"
            ))
        })
        .collect()
}

/// Version 3/4 with version-2 CRI keys: the grpc CRI plugin now only holds
/// server settings and warns about the rest.
fn v3_with_v2_keys(
    src: &Source<'_>,
    plugins: &dyn TableLike,
    version: ConfigVersion,
) -> Vec<Diagnostic> {
    let Some(cri) = plugins.get(CRI_V2_PLUGIN).and_then(Item::as_table_like) else {
        return Vec::new();
    };
    cri.iter()
        .filter(|(key, _)| !CRI_SERVER_KEYS.contains(key))
        .map(|(key, _)| {
            src.diag(
                Code::WrongVersionPath,
                Severity::Error,
                key_span(cri, key),
                format!(
                    "[plugins.\"{CRI_V2_PLUGIN}\".{key}] is a version-2 path; in version {version} \
                     it lives at {}",
                    new_home(key)
                ),
            )
            .containerd_will(moved_key_consequence(key, version))
            .fix(format!("move it to {}", new_home(key)))
        })
        .collect()
}

/// Where a version-2 CRI key lives in versions 3 and 4.
fn new_home(key: &str) -> String {
    if key == "sandbox_image" {
        format!("[plugins.\"{CRI_IMAGES_PLUGIN}\".pinned_images] as `sandbox = ...`")
    } else if CRI_IMAGE_KEYS.contains(&key) {
        format!("[plugins.\"{CRI_IMAGES_PLUGIN}\".{key}]")
    } else {
        format!("[plugins.\"{CRI_RUNTIME_PLUGIN}\".{key}]")
    }
}

fn moved_key_consequence(key: &str, version: ConfigVersion) -> String {
    let ignored = format!(
        "log \"Ignoring unknown key in TOML for plugin\" (plugin={CRI_V2_PLUGIN} key={key}) and not apply it{}",
        if key == "registry" { ": no mirror is used" } else { "" }
    );
    match version {
        ConfigVersion::V3 => format!(
            "containerd 2.0–2.2 {ignored}; containerd 2.3+ migrates version-3 files on start and \
             happens to move it (\"Configuration migrated from version 3\")"
        ),
        _ => format!("containerd 2.3+ {ignored}"),
    }
}

/// The `registry` table of the file's own version.
fn lint_registry(
    src: &Source<'_>,
    registry: Option<&Item>,
    plugins: Option<&Item>,
    version: ConfigVersion,
    release: Option<ContainerdRelease>,
    out: &mut ConfigFindings,
) {
    let Some(table) = registry.and_then(Item::as_table_like) else {
        // A registry table under the other version's plugin was already
        // reported (WH002) with the move that fixes both problems.
        if !has_misplaced_registry(plugins, version) {
            out.diagnostics
                .push(config_path_missing(src, plugins, version, false));
        }
        return;
    };
    out.diagnostics
        .extend(unknown_registry_keys(src, table, version, release));
    let config_path = read_config_path(src, table, version, out);
    let has_mirrors = table
        .get("mirrors")
        .and_then(Item::as_table_like)
        .is_some_and(|m| !m.is_empty());
    match config_path {
        None => out
            .diagnostics
            .push(config_path_missing(src, plugins, version, has_mirrors)),
        Some(path) => {
            out.diagnostics
                .extend(legacy_next_to_config_path(src, table, version));
            out.diagnostics.extend(missing_dirs(src, table, &path));
            out.diagnostics.push(ctr_note(src, table, &path));
            out.config_path = Some(path);
        }
    }
}

fn has_misplaced_registry(plugins: Option<&Item>, version: ConfigVersion) -> bool {
    let own = version.registry_plugin();
    [CRI_V2_PLUGIN, CRI_IMAGES_PLUGIN]
        .into_iter()
        .filter(|id| *id != own)
        .any(|id| {
            plugins
                .and_then(|p| p.get(id))
                .and_then(|p| p.get("registry"))
                .is_some()
        })
}

fn unknown_registry_keys(
    src: &Source<'_>,
    registry: &dyn TableLike,
    version: ConfigVersion,
    release: Option<ContainerdRelease>,
) -> Vec<Diagnostic> {
    let mut found: Vec<Diagnostic> = Vec::new();
    let mut report = |table: &dyn TableLike, key: &str, known: &[&str], path: &str| {
        let suggestion = nearest(key, known);
        found.push(unknown_key(
            src, table, key, path, suggestion, version, release,
        ));
    };
    let plugin = version.registry_plugin();
    for (key, _) in registry.iter().filter(|(k, _)| !REGISTRY_KEYS.contains(k)) {
        report(
            registry,
            key,
            &REGISTRY_KEYS,
            &format!("plugins.\"{plugin}\".registry"),
        );
    }
    for (host, mirror) in registry.get("mirrors").map(entries).unwrap_or_default() {
        for (key, _) in entries(mirror)
            .into_iter()
            .filter(|(k, _)| !MIRROR_KEYS.contains(k))
        {
            if let Some(t) = mirror.as_table_like() {
                report(
                    t,
                    key,
                    &MIRROR_KEYS,
                    &format!("registry.mirrors.\"{host}\""),
                );
            }
        }
    }
    for (host, cfg) in registry.get("configs").map(entries).unwrap_or_default() {
        for (key, _) in entries(cfg)
            .into_iter()
            .filter(|(k, _)| !config_keys(version).contains(k))
        {
            if let Some(t) = cfg.as_table_like() {
                report(
                    t,
                    key,
                    config_keys(version),
                    &format!("registry.configs.\"{host}\""),
                );
            }
        }
        let auth = cfg.get("auth");
        for (key, _) in auth
            .map(entries)
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !AUTH_KEYS.contains(k))
        {
            if let Some(t) = auth.and_then(Item::as_table_like) {
                report(
                    t,
                    key,
                    &AUTH_KEYS,
                    &format!("registry.configs.\"{host}\".auth"),
                );
            }
        }
    }
    found
}

/// `configs.<host>.tls` exists only in containerd 1.x (`RegistryConfig`).
fn config_keys(version: ConfigVersion) -> &'static [&'static str] {
    match version {
        ConfigVersion::V1 | ConfigVersion::V2 => &["auth", "tls"],
        ConfigVersion::V3 | ConfigVersion::V4 => &["auth"],
    }
}

fn unknown_key(
    src: &Source<'_>,
    table: &dyn TableLike,
    key: &str,
    path: &str,
    suggestion: Option<&str>,
    version: ConfigVersion,
    release: Option<ContainerdRelease>,
) -> Diagnostic {
    let will = match (version, release) {
        (_, Some(r)) if r.is_1x() => "ignore it silently (containerd 1.x does not report unknown keys)".to_owned(),
        (ConfigVersion::V1 | ConfigVersion::V2, None) => {
            "ignore it: containerd 1.6/1.7 silently, 2.x with \"Ignoring unknown key in TOML for plugin\"".to_owned()
        }
        _ => "log \"Ignoring unknown key in TOML for plugin\" and ignore it".to_owned(),
    };
    let fix = match suggestion {
        Some(s) => format!("rename `{key}` to `{s}`"),
        None => format!("remove `{key}`; known keys here: see containerd docs/cri/config.md"),
    };
    src.diag(
        Code::UnknownKey,
        Severity::Warning,
        key_span(table, key),
        format!(
            "unknown key `{key}` in [{path}]{}",
            did_you_mean(suggestion)
        ),
    )
    .containerd_will(will)
    .fix(fix)
}

/// The `config_path` string, or `None` when absent or empty.
fn read_config_path(
    src: &Source<'_>,
    registry: &dyn TableLike,
    version: ConfigVersion,
    out: &mut ConfigFindings,
) -> Option<String> {
    let item = registry.get("config_path")?;
    match item.as_str() {
        Some("") => None,
        Some(path) => Some(path.to_owned()),
        None => {
            out.diagnostics.push(
                src.diag(
                    Code::InvalidValue,
                    Severity::Error,
                    key_span(registry, "config_path"),
                    "`config_path` must be a string",
                )
                .containerd_will(format!(
                    "fail to decode the [plugins.\"{}\"] section: the CRI plugin does not load",
                    version.registry_plugin()
                ))
                .fix("write it as `config_path = \"/etc/containerd/certs.d\"`"),
            );
            None
        }
    }
}

fn config_path_missing(
    src: &Source<'_>,
    plugins: Option<&Item>,
    version: ConfigVersion,
    has_mirrors: bool,
) -> Diagnostic {
    let plugin = version.registry_plugin();
    let span = plugins
        .and_then(Item::as_table_like)
        .and_then(|p| key_span(p, plugin));
    let message = if has_mirrors {
        "mirrors are configured with the deprecated `registry.mirrors`, not with `config_path`"
    } else {
        "no `config_path`: containerd is not pointed at any hosts.toml directory"
    };
    src.diag(Code::ConfigPathMissing, Severity::Warning, span, message)
        .containerd_will(
            // The default is in code from containerd v2.2.0
            // (internal/cri/config/config_unix.go, DefaultImageConfig); 2.0 and
            // 2.1 only print it in `containerd config default`.
            "containerd 1.6 to 2.1 read no hosts.toml at all and pull straight from each \
             upstream (or use `registry.mirrors`, deprecated); containerd 2.2 and later default \
             to /etc/containerd/certs.d:/etc/docker/certs.d",
        )
        .fix(format!(
            "set `config_path = \"/etc/containerd/certs.d\"` under [plugins.\"{plugin}\".registry] \
             (`wharf containerd config --patch`) and write hosts.toml files (`wharf containerd hosts`)"
        ))
}

/// `mirrors` and `configs.<host>.tls` conflict with `config_path`.
fn legacy_next_to_config_path(
    src: &Source<'_>,
    registry: &dyn TableLike,
    version: ConfigVersion,
) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    if registry
        .get("mirrors")
        .and_then(Item::as_table_like)
        .is_some_and(|m| !m.is_empty())
    {
        found.push(mirrors_conflict(src, registry));
    }
    for (host, cfg) in registry.get("configs").map(entries).unwrap_or_default() {
        if let Some(t) = cfg.as_table_like().filter(|t| t.contains_key("tls")) {
            found.push(tls_conflict(src, t, host, version));
        }
    }
    found
}

fn mirrors_conflict(src: &Source<'_>, registry: &dyn TableLike) -> Diagnostic {
    src.diag(
        Code::MirrorsWithConfigPath,
        Severity::Error,
        key_span(registry, "mirrors"),
        "`registry.mirrors` is set together with `config_path`",
    )
    .containerd_will(
        "fail to load the CRI plugin (\"failed to load plugin io.containerd.grpc.v1.cri\" \
         error=\"invalid plugin config: `mirrors` cannot be set when `config_path` is provided\", \
         observed with 1.6.20; 2.x does the same for its image plugin) and keep running without \
         CRI, so the kubelet cannot pull or start anything",
    )
    .fix("move each mirror into <config_path>/<registry>/hosts.toml (`wharf containerd hosts`) and delete the `mirrors` tables")
}

fn tls_conflict(
    src: &Source<'_>,
    config: &dyn TableLike,
    host: &str,
    version: ConfigVersion,
) -> Diagnostic {
    let (severity, will) = match version {
        ConfigVersion::V1 | ConfigVersion::V2 => (
            Severity::Error,
            "fail to load the CRI plugin (\"`configs.tls` cannot be set when `config_path` is provided\")",
        ),
        _ => (
            Severity::Warning,
            "log \"Ignoring unknown key in TOML for plugin\": containerd 2.x has no `configs.tls`, so these TLS settings are not used",
        ),
    };
    src.diag(
        Code::ConfigsTlsWithConfigPath,
        severity,
        key_span(config, "tls"),
        format!("`registry.configs.\"{host}\".tls` is set together with `config_path`"),
    )
    .containerd_will(will)
    .fix(format!(
        "move these settings to `ca`, `client` and `skip_verify` in <config_path>/{host}/hosts.toml \
         and delete the `tls` table (`auth` may stay)"
    ))
}

/// Each directory of a ':'-separated `config_path` should exist; none existing is an error.
fn missing_dirs(src: &Source<'_>, registry: &dyn TableLike, config_path: &str) -> Vec<Diagnostic> {
    let dirs: Vec<&str> = config_path.split(':').filter(|d| !d.is_empty()).collect();
    let missing: Vec<&str> = dirs
        .iter()
        .copied()
        .filter(|d| !Path::new(d).is_dir())
        .collect();
    let all_missing = missing.len() == dirs.len();
    missing
        .into_iter()
        .map(|dir| {
            src.diag(
                Code::ConfigPathNotFound,
                if all_missing { Severity::Error } else { Severity::Warning },
                key_span(registry, "config_path"),
                format!("`config_path` names {dir}, which is not an existing directory"),
            )
            .containerd_will(if all_missing {
                "find no host directory for any registry and pull straight from each upstream (no error is logged)"
            } else {
                "skip this directory and use the others"
            })
            .fix(format!(
                "create it with one <registry>/hosts.toml per upstream (`wharf containerd hosts --out {dir} ...`) or correct the path"
            ))
        })
        .collect()
}

/// `ctr` reads hosts.toml only with `--hosts-dir`.
fn ctr_note(src: &Source<'_>, registry: &dyn TableLike, config_path: &str) -> Diagnostic {
    let first = config_path.split(':').next().unwrap_or(config_path);
    src.diag(
        Code::CtrIgnoresConfigPath,
        Severity::Info,
        key_span(registry, "config_path"),
        "`config_path` is read by the CRI plugin (kubelet, crictl) only",
    )
    .containerd_will(format!(
        "use these mirrors for kubelet and crictl pulls; `ctr image pull` ignores config_path and goes to the upstream unless given `--hosts-dir {first}`"
    ))
    .fix(format!(
        "test with `crictl pull IMAGE`, or `ctr -n k8s.io image pull --hosts-dir {first} IMAGE`"
    ))
}
