//! The containerd config.toml side: where `config_path` goes for each
//! config version, a ready-to-paste snippet, and an in-place patch.
//!
//! Paths come from containerd `docs/hosts.md` and `docs/cri/config.md`:
//! version 2 (containerd 1.6/1.7) uses
//! `[plugins."io.containerd.grpc.v1.cri".registry]`, versions 3 (2.0–2.2)
//! and 4 (2.3+) use `[plugins."io.containerd.cri.v1.images".registry]`.

use toml_edit::{DocumentMut, Item, Table, Value};

use crate::error::{Error, Result};
use crate::hosts::quote;
use crate::source::LineIndex;
use crate::version::{ConfigVersion, CRI_IMAGES_PLUGIN, CRI_V2_PLUGIN};

/// Check a `config_path` value: one or more absolute directories separated
/// by ':' (containerd splits it with `filepath.SplitList` and searches each).
pub fn validate_config_path(config_path: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidConfigPath {
        input: config_path.to_owned(),
        reason: reason.to_owned(),
    };
    if config_path.trim().is_empty() {
        return Err(bad("empty"));
    }
    if config_path.chars().any(char::is_control) {
        return Err(bad("contains control characters"));
    }
    for dir in config_path.split(':') {
        if !dir.starts_with('/') {
            return Err(bad(
                "each directory must be absolute: containerd resolves relative paths against its own working directory",
            ));
        }
    }
    Ok(())
}

/// A minimal config.toml fragment that points the CRI plugin at `config_path`.
pub fn config_snippet(version: ConfigVersion, config_path: &str) -> Result<String> {
    if !version.is_generation_target() {
        return Err(Error::UnsupportedConfigVersion(i64::from(version.number())));
    }
    validate_config_path(config_path)?;
    Ok(format!(
        "# {releases}: registry hosts are read from hosts.toml files under config_path.\n\
         version = {number}\n\
         \n\
         [plugins.{plugin}.registry]\n\
         \x20 config_path = {path}\n",
        releases = version.releases(),
        number = version.number(),
        plugin = quote(version.registry_plugin()),
        path = quote(config_path),
    ))
}

/// How to patch an existing config.toml.
#[derive(Debug, Clone)]
pub struct PatchOptions {
    pub config_path: String,
    /// The version the caller expects. A file that states another version is
    /// refused; a file without `version` and without `[plugins]` gets this one.
    pub version: Option<ConfigVersion>,
}

/// Set `config_path` in `text`, keeping comments, formatting and order.
///
/// Refuses (rather than writing a file containerd would reject or ignore):
/// unparsable TOML, a missing or unsupported `version`, `registry.mirrors` or
/// `registry.configs.*.tls` next to `config_path`, and a registry table under
/// a plugin the file's version does not read.
pub fn patch_config(text: &str, options: &PatchOptions) -> Result<String> {
    validate_config_path(&options.config_path)?;
    let mut doc: DocumentMut = text.parse().map_err(|e| syntax_error(text, &e))?;
    let version = resolve_version(&mut doc, options.version)?;
    refuse_registry_at_other_path(&doc, version)?;
    let registry = registry_table_mut(&mut doc, version)?;
    refuse_legacy_registry_settings(registry, version)?;
    set_string(registry, "config_path", &options.config_path);
    Ok(doc.to_string())
}

fn syntax_error(text: &str, err: &toml_edit::TomlError) -> Error {
    let (line, column) = err
        .span()
        .map(|s| LineIndex::new(text).position(s.start))
        .unwrap_or((1, 1));
    Error::Syntax {
        path: "config.toml".to_owned(),
        line,
        column,
        message: err.message().to_owned(),
    }
}

/// Read the file's `version`, or add one when that is unambiguous.
fn resolve_version(doc: &mut DocumentMut, wanted: Option<ConfigVersion>) -> Result<ConfigVersion> {
    let stated = match doc.get("version") {
        None => None,
        Some(item) => Some(parse_version_item(item)?),
    };
    match (stated, wanted) {
        (Some(ConfigVersion::V1), _) => Err(version_one_refusal("states `version = 1`")),
        (Some(have), Some(want)) if have != want => Err(Error::patch_refused(
            format!("the file is version {have} ({}) but version {want} was requested", have.releases()),
            format!(
                "patch without --version to keep version {have}, or convert the file first \
                 (`containerd config migrate` on containerd 2.x)"
            ),
        )),
        (Some(have), _) => Ok(have),
        (None, _) if doc.contains_key("plugins") => {
            Err(version_one_refusal("has no `version` key but has [plugins] sections"))
        }
        (None, Some(want)) if want.is_generation_target() => {
            doc.insert("version", Item::Value(Value::from(i64::from(want.number()))));
            Ok(want)
        }
        (None, _) => Err(Error::patch_refused(
            "the file has no `version` key",
            "say which version to write (--version 2 for containerd 1.6/1.7, 3 for 2.0–2.2, 4 for 2.3+)",
        )),
    }
}

fn parse_version_item(item: &Item) -> Result<ConfigVersion> {
    let n = item.as_integer().ok_or_else(|| {
        Error::patch_refused(
            "`version` is not an integer",
            "write it as `version = 2` (containerd 1.6/1.7) or `version = 3` (2.0–2.2)",
        )
    })?;
    ConfigVersion::from_number(n).map_err(|_| {
        Error::patch_refused(
            format!("`version = {n}` is not a containerd config version wharf knows"),
            "use 2 (containerd 1.6/1.7), 3 (2.0–2.2) or 4 (2.3+)",
        )
    })
}

/// containerd 1.x reads a file without `version` as version 1, where plugin
/// sections use short names (`[plugins.cri]`) and fully qualified names are
/// ignored; guessing which the author meant could silently break CRI.
fn version_one_refusal(what: &str) -> Error {
    Error::patch_refused(
        format!(
            "the file {what}: containerd 1.x reads that as config version 1 (`[plugins.cri]`), \
             containerd 2.x migrates it"
        ),
        "add `version = 2` at the top after renaming `[plugins.cri...]` sections to \
         `[plugins.\"io.containerd.grpc.v1.cri\"...]`, or run `containerd config migrate` (2.x), then patch again",
    )
}

/// The registry table belongs under exactly one plugin per version; another
/// one would be ignored by containerd and confuse whoever reads the file.
fn refuse_registry_at_other_path(doc: &DocumentMut, version: ConfigVersion) -> Result<()> {
    let other = match version {
        ConfigVersion::V2 => CRI_IMAGES_PLUGIN,
        _ => CRI_V2_PLUGIN,
    };
    let found = doc
        .get("plugins")
        .and_then(|p| p.get(other))
        .and_then(|p| p.get("registry"))
        .is_some();
    if !found {
        return Ok(());
    }
    Err(Error::patch_refused(
        format!(
            "the file (version {version}) has a registry section under plugins.\"{other}\", \
             which version {version} does not read"
        ),
        format!(
            "move its settings to [plugins.\"{}\".registry] (or remove it), then patch again",
            version.registry_plugin()
        ),
    ))
}

/// Find or create `plugins.<id>.registry`, refusing inline tables, which
/// cannot be extended without rewriting the author's formatting.
fn registry_table_mut(doc: &mut DocumentMut, version: ConfigVersion) -> Result<&mut Table> {
    let plugins = child_table(doc.as_table_mut(), "plugins", "plugins")?;
    let plugin_id = version.registry_plugin();
    let plugin = child_table(plugins, plugin_id, &format!("plugins.\"{plugin_id}\""))?;
    let registry = child_table(
        plugin,
        "registry",
        &format!("plugins.\"{plugin_id}\".registry"),
    )?;
    if !registry.is_dotted() {
        registry.set_implicit(false);
    }
    Ok(registry)
}

fn child_table<'a>(parent: &'a mut Table, key: &str, display: &str) -> Result<&'a mut Table> {
    let dotted = parent.is_dotted();
    let item = parent.entry(key).or_insert_with(|| {
        let mut table = Table::new();
        table.set_implicit(true);
        table.set_dotted(dotted);
        Item::Table(table)
    });
    match item {
        Item::Table(table) => Ok(table),
        _ => Err(Error::patch_refused(
            format!("`{display}` is not a [table] (it is an inline table or a value)"),
            format!("rewrite `{display}` as a [table] section, then patch again"),
        )),
    }
}

/// containerd rejects `mirrors` and `configs.<host>.tls` next to
/// `config_path`: in 1.6 the CRI plugin fails to load with "`mirrors` cannot
/// be set when `config_path` is provided" (observed with containerd 1.6.20;
/// same check in 2.x `internal/cri/config`), and containerd keeps running
/// without CRI.
fn refuse_legacy_registry_settings(registry: &Table, version: ConfigVersion) -> Result<()> {
    if has_entries(registry.get("mirrors")) {
        return Err(Error::patch_refused(
            format!(
                "[plugins.\"{}\".registry.mirrors] is set; containerd refuses `mirrors` together \
                 with `config_path` (the CRI plugin fails to load)",
                version.registry_plugin()
            ),
            "move each mirror to <config_path>/<registry>/hosts.toml (`wharf containerd hosts`) \
             and delete the `mirrors` tables, then patch again",
        ));
    }
    if let Some(host) = first_config_with_tls(registry) {
        return Err(Error::patch_refused(
            format!(
                "registry.configs.\"{host}\".tls is set; containerd 1.x refuses it together with \
                 `config_path` and 2.x no longer reads it"
            ),
            "move the TLS settings to `ca`/`client`/`skip_verify` in <config_path>/<registry>/hosts.toml \
             and delete the `tls` tables (credentials under `configs.<host>.auth` may stay)",
        ));
    }
    Ok(())
}

fn has_entries(item: Option<&Item>) -> bool {
    item.and_then(Item::as_table_like)
        .is_some_and(|t| !t.is_empty())
}

fn first_config_with_tls(registry: &Table) -> Option<String> {
    let configs = registry.get("configs")?.as_table_like()?;
    configs
        .iter()
        .find(|(_, cfg)| cfg.get("tls").is_some())
        .map(|(host, _)| host.to_owned())
}

/// Set a string, keeping the surrounding whitespace and comment of an existing value.
fn set_string(table: &mut Table, key: &str, value: &str) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(existing) => {
            let decor = existing.decor().clone();
            *existing = Value::from(value);
            *existing.decor_mut() = decor;
        }
        None => {
            table.insert(key, Item::Value(Value::from(value)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(text: &str, version: Option<ConfigVersion>) -> Result<String> {
        patch_config(
            text,
            &PatchOptions {
                config_path: "/etc/containerd/certs.d".to_owned(),
                version,
            },
        )
    }

    #[test]
    fn snippet_uses_the_images_plugin_for_version_3() {
        let s = config_snippet(ConfigVersion::V3, "/etc/containerd/certs.d").unwrap();
        assert!(s.contains("version = 3\n"));
        assert!(s.contains("[plugins.\"io.containerd.cri.v1.images\".registry]\n"));
        assert!(s.contains("config_path = \"/etc/containerd/certs.d\""));
        assert!(config_snippet(ConfigVersion::V1, "/x").is_err());
        assert!(config_snippet(ConfigVersion::V2, "relative/dir").is_err());
    }

    #[test]
    fn patch_adds_version_to_an_empty_file() {
        let out = patch("", Some(ConfigVersion::V2)).unwrap();
        assert!(out.starts_with("version = 2\n"), "{out}");
        assert!(out.contains("[plugins.\"io.containerd.grpc.v1.cri\".registry]"));
        assert!(patch("", None).is_err());
    }

    #[test]
    fn patch_replaces_an_existing_value_in_place() {
        let text = "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"\" # was empty\n";
        let out = patch(text, None).unwrap();
        assert_eq!(
            out,
            "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/etc/containerd/certs.d\" # was empty\n"
        );
    }

    #[test]
    fn patch_refuses_inline_plugins() {
        let err = patch("version = 2\nplugins = { }\n", None).unwrap_err();
        assert!(err.to_string().contains("inline table"), "{err}");
    }
}
