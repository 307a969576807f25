//! What containerd on this node would do for a pull, before any network
//! traffic: the config file, the hosts directory, the hosts.toml that
//! applies and the ordered host list.

use std::path::{Path, PathBuf};

use wharf_containerd as wc;
use wharf_oci::Reference;

use crate::error::DoctorError;
use crate::report::{ContainerdSetup, HostsDirSource};

/// containerd's default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/containerd/config.toml";

/// The setup, the hosts in order, and notes for the reader.
pub struct Plan {
    pub setup: ContainerdSetup,
    pub hosts: Vec<wc::RegistryHost>,
    pub notes: Vec<String>,
}

/// Read the configuration the way containerd would for `reference`.
pub fn plan(
    reference: &Reference,
    config_file: Option<&Path>,
    hosts_dir: Option<&Path>,
    release: Option<wc::ContainerdRelease>,
) -> Result<Plan, DoctorError> {
    let explicit = config_file.is_some();
    let config_file = config_file.map_or_else(|| PathBuf::from(DEFAULT_CONFIG), Path::to_owned);
    let mut config = read_config(&config_file, explicit)?;
    let defaulted = apply_release_default(&mut config, release);
    let (roots, source) = match (hosts_dir, &config.config_path) {
        (Some(dir), _) => (Some(dir.display().to_string()), HostsDirSource::Flag),
        (None, Some(path)) => (Some(path.clone()), HostsDirSource::ConfigPath),
        (None, None) => (None, HostsDirSource::None),
    };
    let resolution = wc::resolve_registry_hosts(roots.as_deref(), reference.host());
    let mut notes = notes(reference, &config, roots.as_deref(), source, &resolution);
    if let (Some(release), Some(path)) =
        (defaulted.then_some(release).flatten(), &config.config_path)
    {
        notes.insert(
            0,
            format!(
                "config.toml sets no config_path; containerd {}.{} uses its default {path:?}",
                release.major, release.minor
            ),
        );
    }
    let setup = ContainerdSetup {
        config_file,
        config_found: config.found,
        config_version: config.version.map(|v| v.number()),
        config_path: config.config_path,
        hosts_dir: roots,
        hosts_dir_source: source,
        namespace_dir: resolution.dir,
        hosts_file: resolution.file,
        hosts_file_problem: resolution.problem,
    };
    Ok(Plan {
        setup,
        hosts: resolution.hosts,
        notes,
    })
}

/// containerd 2.2 and later fill in a `config_path` the file leaves unset.
/// Returns whether the default was applied.
fn apply_release_default(config: &mut ConfigRead, release: Option<wc::ContainerdRelease>) -> bool {
    match (
        release.and_then(|r| r.default_config_path()),
        &config.config_path,
    ) {
        (Some(default), None) if config.legacy_mirrors.is_empty() => {
            config.config_path = Some(default.to_owned());
            true
        }
        _ => false,
    }
}

struct ConfigRead {
    found: bool,
    version: Option<wc::ConfigVersion>,
    config_path: Option<String>,
    /// Registries with deprecated `registry.mirrors` entries.
    legacy_mirrors: Vec<String>,
}

/// A missing default file is normal (containerd runs on built-in
/// defaults); a missing file named on the command line is a mistake.
fn read_config(file: &Path, explicit: bool) -> Result<ConfigRead, DoctorError> {
    if !file.exists() && !explicit {
        return Ok(ConfigRead {
            found: false,
            version: None,
            config_path: None,
            legacy_mirrors: Vec::new(),
        });
    }
    let text = wc::read_text_file(file).map_err(|e| DoctorError::Config(e.to_string()))?;
    Ok(ConfigRead {
        found: true,
        version: wc::config_version_of(&text),
        config_path: wc::config_path_of(&text),
        legacy_mirrors: wc::legacy_mirrors_of(&text),
    })
}

fn notes(
    reference: &Reference,
    config: &ConfigRead,
    roots: Option<&str>,
    source: HostsDirSource,
    resolution: &wc::HostsResolution,
) -> Vec<String> {
    let mut notes = Vec::new();
    if !config.found && config.config_path.is_none() {
        notes.push(format!(
            "no {DEFAULT_CONFIG}: containerd runs on built-in defaults, which set no config_path, \
             so the CRI pulls straight from each registry"
        ));
    }
    match (source, &config.config_path) {
        (HostsDirSource::ConfigPath, Some(path)) => notes.push(format!(
            "`ctr` does not read the CRI's config_path: `ctr image pull` goes straight to the registry \
             unless given `--hosts-dir {path}` (the kubelet and crictl do use config_path)"
        )),
        (HostsDirSource::Flag, Some(path)) if Some(path.as_str()) != roots => notes.push(format!(
            "--hosts-dir shows what `ctr --hosts-dir` does; the CRI (kubelet, crictl) reads config_path = {path:?} instead"
        )),
        (HostsDirSource::Flag, None) => notes.push(
            "--hosts-dir shows what `ctr --hosts-dir` does; the CRI (kubelet, crictl) has no config_path and \
             ignores this directory"
                .to_owned(),
        ),
        _ => {}
    }
    if config.config_path.is_none() && !config.legacy_mirrors.is_empty() {
        notes.push(format!(
            "config.toml sets the deprecated registry.mirrors (for {}) and no config_path: the CRI sends \
             pulls to those endpoints, which this check does not model; move them to hosts.toml \
             (`wharf containerd hosts`) and set config_path",
            config.legacy_mirrors.join(", ")
        ));
    }
    if let (Some(roots), None) = (roots, &resolution.dir) {
        notes.push(format!(
            "no directory for {host} (nor _default) under {roots}: containerd pulls straight from {host}",
            host = reference.host()
        ));
    }
    if let Some(problem) = &resolution.problem {
        notes.push(format!(
            "the hosts.toml is not used ({problem}); containerd falls back to the registry itself"
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_for(release: &str) -> Plan {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "version = 3\n").unwrap();
        let reference: Reference = "registry.k8s.io/pause:3.10".parse().unwrap();
        plan(
            &reference,
            Some(&config),
            None,
            Some(release.parse().unwrap()),
        )
        .unwrap()
    }

    #[test]
    fn containerd_2_2_defaults_config_path() {
        let p = plan_for("2.2.0");
        assert_eq!(
            p.setup.config_path.as_deref(),
            Some("/etc/containerd/certs.d:/etc/docker/certs.d")
        );
        assert!(matches!(
            p.setup.hosts_dir_source,
            HostsDirSource::ConfigPath
        ));
        assert!(p.notes[0].contains("uses its default"), "{:?}", p.notes);
    }

    #[test]
    fn containerd_2_1_has_no_default() {
        let p = plan_for("2.1.3");
        assert_eq!(p.setup.config_path, None);
        assert!(matches!(p.setup.hosts_dir_source, HostsDirSource::None));
    }
}
