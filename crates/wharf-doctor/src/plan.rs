//! What containerd on this node would do for a pull, before any network
//! traffic: the config file, the hosts directory, the hosts.toml that
//! applies and the ordered host list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wharf_containerd as wc;
use wharf_oci::Reference;

use crate::error::DoctorError;
use crate::report::{ContainerdSetup, HostsDirSource};
use crate::runtime::Runtime;

/// containerd's default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/containerd/config.toml";

/// The setup, the hosts in order, and notes for the reader.
pub struct Plan {
    pub setup: ContainerdSetup,
    pub hosts: Vec<wc::RegistryHost>,
    pub notes: Vec<String>,
    /// What is wrong in the configuration itself, before any network.
    pub config_problem: Option<ConfigProblem>,
}

/// A configuration layer failure: a setting containerd ignores, a file
/// that differs from what containerd loaded, a file it cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file at fault.
    pub file: PathBuf,
    pub reason: String,
    pub fix: String,
    /// containerd cannot pull at all (it refuses to start, or the CRI plugin
    /// does not load): the pull fails whatever the network does.
    pub blocks: bool,
}

/// The CRI registry settings a pull will use, and where they came from.
struct Effective {
    config_path: Option<String>,
    /// containerd's own default filled `config_path` in.
    defaulted: bool,
    mirrors: BTreeMap<String, Vec<String>>,
    mirrors_line: Option<usize>,
}

/// Read the configuration the way containerd would for `reference`, or
/// take what the running containerd says it loaded.
pub fn plan(
    reference: &Reference,
    config_file: Option<&Path>,
    hosts_dir: Option<&Path>,
    runtime: &Runtime,
) -> Result<Plan, DoctorError> {
    let explicit = config_file.is_some();
    let config_file = config_file.map_or_else(|| PathBuf::from(DEFAULT_CONFIG), Path::to_owned);
    let config = read_config(&config_file, explicit)?;
    let release = runtime.release();
    let model = match (&config.text, release) {
        (Some(text), Some(release)) => match wc::model_registry(text, release) {
            Ok(model) => Some(model),
            Err(reason) if runtime.loaded().is_none() => {
                return Err(DoctorError::Config(format!(
                    "{}: {reason}: containerd refuses to start with this file",
                    config_file.display()
                )))
            }
            Err(_) => None,
        },
        _ => None,
    };
    let (effective, mut problems) = effective(&config, model.as_ref(), runtime, &config_file);
    let (roots, source) = match (hosts_dir, &effective.config_path) {
        (Some(dir), _) => (Some(dir.display().to_string()), HostsDirSource::Flag),
        (None, Some(path)) => (Some(path.clone()), HostsDirSource::ConfigPath),
        (None, None) => (None, HostsDirSource::None),
    };
    let resolution = wc::resolve_registry_hosts(roots.as_deref(), reference.host());
    let legacy = effective
        .mirrors
        .get(reference.host())
        .filter(|_| roots.is_none());
    let hosts = match legacy {
        Some(endpoints) => wc::legacy_mirror_hosts(
            reference.host(),
            endpoints,
            &config_file,
            effective.mirrors_line,
        ),
        None => resolution.hosts.clone(),
    };
    let mut notes = notes(
        reference,
        &config,
        &effective,
        roots.as_deref(),
        source,
        &resolution,
    );
    if let (Some(release), Some(path), true) =
        (release, &effective.config_path, effective.defaulted)
    {
        notes.insert(
            0,
            format!(
                "config.toml sets no config_path; containerd {}.{} uses its default {path:?}",
                release.major, release.minor
            ),
        );
    }
    if let (Some(problem), Some(file)) = (&resolution.problem, &resolution.dir) {
        problems.push(ConfigProblem {
            file: file.join("hosts.toml"),
            reason: format!("the hosts.toml for {} is not used: {problem}", reference.host()),
            fix: format!(
                "correct {} (`wharf containerd lint --hosts-dir {}` names the line) or write it again with \
                 `wharf containerd hosts {} --mirror <URL> --out {}`",
                file.join("hosts.toml").display(),
                roots.as_deref().unwrap_or_default(),
                reference.host(),
                roots.as_deref().unwrap_or_default(),
            ),
            blocks: false,
        });
    }
    let (sandbox_image, sandbox_image_source) = sandbox(runtime, model.as_ref());
    let setup = ContainerdSetup {
        config_file,
        config_found: config.found,
        config_version: config.version.map(|v| v.number()),
        config_path: effective.config_path,
        hosts_dir: roots,
        hosts_dir_source: source,
        namespace_dir: resolution.dir,
        hosts_file: resolution.file,
        hosts_file_problem: resolution.problem,
        runtime: Some(runtime.describe()),
        sandbox_image,
        sandbox_image_source,
        sandbox_image_present: None,
        sandbox_pull_would_succeed: None,
    };
    Ok(Plan {
        setup,
        hosts,
        notes,
        config_problem: problems.into_iter().next(),
    })
}

/// The registry settings in force, and the configuration problems found on
/// the way (most fundamental first).
fn effective(
    config: &ConfigRead,
    model: Option<&wc::RegistryModel>,
    runtime: &Runtime,
    file: &Path,
) -> (Effective, Vec<ConfigProblem>) {
    let mut problems = Vec::new();
    if let Some(why) = runtime.no_cri() {
        problems.push(ConfigProblem {
            file: file.to_owned(),
            reason: format!("containerd answers without its CRI plugin, so the kubelet cannot pull: {why}"),
            fix: format!(
                "remove \"io.containerd.grpc.v1.cri\" from `disabled_plugins` in {} and restart containerd",
                file.display()
            ),
            blocks: true,
        });
    }
    let modelled = match model {
        Some(m) => Effective {
            config_path: m.config_path.clone(),
            defaulted: m.config_path_defaulted,
            mirrors: m.mirrors.clone(),
            mirrors_line: m.mirrors_line,
        },
        // No release known: the file read for its own version.
        None => Effective {
            config_path: config.config_path.clone(),
            defaulted: false,
            mirrors: BTreeMap::new(),
            mirrors_line: None,
        },
    };
    let loaded = runtime.loaded().and_then(|l| l.registry.as_ref());
    let release = runtime
        .release()
        .map_or_else(|| "containerd".to_owned(), |r| format!("containerd {r}"));
    if let Some(m) = model {
        problems.extend(startup_problems(m, runtime.loaded().is_some(), file));
    }
    let Some(loaded) = loaded else {
        if let Some(m) = model {
            problems.extend(ignored_config_path(m, file, &release, "does not read it"));
        }
        return (modelled, problems);
    };
    let asked = Effective {
        config_path: loaded.config_path.clone(),
        defaulted: modelled.defaulted && loaded.config_path == modelled.config_path,
        mirrors: match &loaded.mirrors {
            Some(mirrors) => mirrors.clone(),
            // 2.x does not report mirrors; they apply when no config_path is loaded.
            None if loaded.config_path.is_none() => modelled.mirrors.clone(),
            None => BTreeMap::new(),
        },
        mirrors_line: modelled.mirrors_line,
    };
    if let Some(m) = model {
        let ignored = ignored_config_path(m, file, &release, "loaded none");
        if !ignored.is_empty() && (asked.config_path.is_none() || asked.defaulted) {
            problems.extend(ignored);
        } else if m.config_path != asked.config_path {
            problems.push(differs(m, &asked, file, &release));
        }
    }
    (asked, problems)
}

/// containerd refuses the file, or the CRI plugin does not load with it.
fn startup_problems(m: &wc::RegistryModel, running: bool, file: &Path) -> Vec<ConfigProblem> {
    [m.refuses_to_start.as_ref(), m.cri_disabled.as_ref()]
        .into_iter()
        .flatten()
        .map(|why| ConfigProblem {
            file: file.to_owned(),
            reason: if running {
                format!("{why} (the running containerd loaded an earlier file; it will not pull after a restart)")
            } else {
                why.clone()
            },
            fix: format!(
                "correct {} (`wharf containerd lint --config {}` names the line), then restart containerd",
                file.display(),
                file.display()
            ),
            blocks: !running,
        })
        .collect()
}

/// "config.toml sets config_path under [T] (line N), but containerd R
/// loaded none: …".
fn ignored_config_path(
    m: &wc::RegistryModel,
    file: &Path,
    release: &str,
    verb: &str,
) -> Vec<ConfigProblem> {
    m.ignored
        .iter()
        .filter(|i| i.key == "config_path")
        .map(|i| ConfigProblem {
            file: file.to_owned(),
            reason: format!(
                "config.toml sets config_path under [{}] (line {}), but {release} {verb}: {}",
                i.table, i.line, i.why
            ),
            fix: format!(
                "move config_path to [{}] in {} (or write the file for this release with \
                 `wharf containerd config --containerd-version {}`), then restart containerd",
                i.read_instead,
                file.display(),
                m.release
            ),
            blocks: false,
        })
        .collect()
}

/// The file, read the way this release reads it, says something else than
/// what the running containerd loaded.
fn differs(m: &wc::RegistryModel, asked: &Effective, file: &Path, release: &str) -> ConfigProblem {
    let show = |p: &Option<String>| {
        p.as_ref()
            .map_or_else(|| "none".to_owned(), |p| format!("{p:?}"))
    };
    let line = m
        .config_path_line
        .map(|l| format!(" (line {l})"))
        .unwrap_or_default();
    ConfigProblem {
        file: file.to_owned(),
        reason: format!(
            "config.toml sets config_path = {}{line}, but {release} loaded {}: the file changed since \
             containerd started, or containerd runs with another --config",
            show(&m.config_path),
            show(&asked.config_path)
        ),
        fix: format!(
            "check the file with `wharf containerd lint --config {}`, then restart containerd \
             (`systemctl restart containerd`) so that it loads it",
            file.display()
        ),
        blocks: false,
    }
}

/// The sandbox image the CRI will use, and where that comes from.
fn sandbox(
    runtime: &Runtime,
    model: Option<&wc::RegistryModel>,
) -> (Option<String>, Option<String>) {
    if let Some(image) = runtime.loaded().and_then(|l| l.sandbox_image.clone()) {
        return (
            Some(image),
            Some("reported by the running containerd".to_owned()),
        );
    }
    let Some(m) = model else {
        return (None, None);
    };
    let source = match (m.sandbox_line, runtime.loaded().is_some()) {
        (Some(line), true) => format!(
            "config.toml line {line} (containerd {} does not report it)",
            m.release
        ),
        (Some(line), false) => format!("config.toml line {line}"),
        (None, _) => format!("containerd {}'s default", m.release),
    };
    (Some(m.sandbox_image.clone()), Some(source))
}

struct ConfigRead {
    found: bool,
    text: Option<String>,
    version: Option<wc::ConfigVersion>,
    /// `config_path` read for the file's own version (no release known).
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
            text: Some(String::new()),
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
        text: Some(text),
    })
}

fn notes(
    reference: &Reference,
    config: &ConfigRead,
    effective: &Effective,
    roots: Option<&str>,
    source: HostsDirSource,
    resolution: &wc::HostsResolution,
) -> Vec<String> {
    let mut notes = Vec::new();
    if !config.found && effective.config_path.is_none() {
        notes.push(format!(
            "no {DEFAULT_CONFIG}: containerd runs on built-in defaults, which set no config_path, \
             so the CRI pulls straight from each registry"
        ));
    }
    match (source, &effective.config_path) {
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
    if effective.config_path.is_none()
        && effective.mirrors.is_empty()
        && !config.legacy_mirrors.is_empty()
    {
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

    fn plan_with(text: &str, release: &str) -> Plan {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, text).unwrap();
        let reference: Reference = "registry.k8s.io/pause:3.10".parse().unwrap();
        let runtime = Runtime::Modelled {
            release: Some(release.parse().unwrap()),
            why: "test".to_owned(),
            no_cri: false,
        };
        plan(&reference, Some(&config), None, &runtime).unwrap()
    }

    fn plan_for(release: &str) -> Plan {
        plan_with("version = 3\n", release)
    }

    #[test]
    fn a_section_the_release_ignores_is_the_config_problem() {
        let text = "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
        let p = plan_with(text, "1.6.20");
        assert_eq!(p.setup.config_path, None);
        let problem = p.config_problem.expect("the ignored section");
        assert!(
            problem.reason.starts_with(
                "config.toml sets config_path under [plugins.\"io.containerd.cri.v1.images\".registry] (line 3), \
                 but containerd 1.6.20 does not read it"
            ),
            "{}",
            problem.reason
        );
        assert!(
            problem.fix.contains("io.containerd.grpc.v1.cri"),
            "{}",
            problem.fix
        );
        assert!(!problem.blocks);
        // The same file is right for 2.1.
        assert!(plan_with(text, "2.1").config_problem.is_none());
    }

    #[test]
    fn deprecated_mirrors_become_the_hosts_tried() {
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"registry.k8s.io\"]\n  endpoint = [\"http://127.0.0.1:5000\"]\n";
        let p = plan_with(text, "1.6.20");
        let urls: Vec<String> = p.hosts.iter().map(|h| h.base_url()).collect();
        assert_eq!(
            urls,
            ["http://127.0.0.1:5000/v2", "https://registry.k8s.io/v2"]
        );
        assert!(p.config_problem.is_none());
    }

    #[test]
    fn a_version_the_release_refuses_blocks_the_pull() {
        let p = plan_with("version = 4\n", "2.1");
        let problem = p.config_problem.unwrap();
        assert!(problem.blocks);
        assert!(
            problem.reason.contains("refuses to start"),
            "{}",
            problem.reason
        );
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
