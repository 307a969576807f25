//! Rules for the layout of a hosts directory (`config_path`): which
//! directories containerd will ever look at, and whether each has a
//! hosts.toml it can read.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{hosts_file, unreadable, Linter};
use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::names::{classify_dir_name, DirName, Namespace};
use crate::source::read_text_file;

const HOSTS_TOML: &str = "hosts.toml";

pub(crate) fn lint_dir(dir: &Path, linter: &Linter) -> Vec<Diagnostic> {
    if !dir.is_dir() {
        return vec![dir_missing(dir)];
    }
    let entries = match sorted_entries(dir) {
        Ok(entries) => entries,
        Err(e) => return vec![unreadable(dir, &e.to_string(), "hosts directory")],
    };
    let mut found = Vec::new();
    let mut namespaces: HashMap<Namespace, Vec<(String, bool)>> = HashMap::new();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() {
            found.extend(lint_namespace_dir(&path, &name, linter, &mut namespaces));
        } else if name == HOSTS_TOML {
            found.push(hosts_toml_at_root(&path));
        }
    }
    found.extend(shadowed_dirs(dir, &namespaces));
    found
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    paths.sort();
    Ok(paths)
}

fn dir_missing(dir: &Path) -> Diagnostic {
    let what = if dir.exists() {
        "is not a directory"
    } else {
        "does not exist"
    };
    Diagnostic::new(
        Code::ConfigPathNotFound,
        Severity::Error,
        dir,
        format!("the hosts directory {what}"),
    )
    .containerd_will("find no host configuration and pull straight from each upstream")
    .fix(format!(
        "create it with `wharf containerd hosts --out {} ...`, or point config_path at the right directory",
        dir.display()
    ))
}

fn hosts_toml_at_root(path: &Path) -> Diagnostic {
    Diagnostic::new(
        Code::HostsTomlAtRoot,
        Severity::Error,
        path,
        "hosts.toml directly in the hosts directory is never read",
    )
    .containerd_will("look only in <dir>/<registry>/hosts.toml and <dir>/_default/hosts.toml, so this file changes nothing")
    .fix("move it to <dir>/<registry>/hosts.toml for one registry, or to <dir>/_default/hosts.toml for all of them")
}

fn lint_namespace_dir(
    path: &Path,
    name: &str,
    linter: &Linter,
    namespaces: &mut HashMap<Namespace, Vec<(String, bool)>>,
) -> Vec<Diagnostic> {
    match classify_dir_name(name) {
        DirName::NeverMatches { reason, suggestion } => {
            return vec![unmatchable(path, name, &reason, suggestion.as_deref())];
        }
        DirName::Plain(ns) => namespaces
            .entry(ns)
            .or_default()
            .push((name.to_owned(), false)),
        DirName::Underscored(ns) => namespaces
            .entry(ns)
            .or_default()
            .push((name.to_owned(), true)),
        DirName::Default => {}
    }
    lint_hosts_toml_in(path, name, linter)
}

fn unmatchable(path: &Path, name: &str, reason: &str, suggestion: Option<&str>) -> Diagnostic {
    let fix = match suggestion {
        Some(s) => format!("rename the directory to `{s}`"),
        None => "name the directory after the registry host only: `registry.k8s.io`, `host:5000` (or `host_5000_`), or `_default`".to_owned(),
    };
    Diagnostic::new(
        Code::UnmatchableHostDir,
        Severity::Error,
        path,
        format!("directory `{name}` will never match a registry: {reason}"),
    )
    .containerd_will("never look inside it; pulls for the intended registry ignore its hosts.toml")
    .fix(fix)
}

fn lint_hosts_toml_in(dir: &Path, name: &str, linter: &Linter) -> Vec<Diagnostic> {
    let file = dir.join(HOSTS_TOML);
    if !file.exists() {
        return vec![hosts_toml_missing(dir, name)];
    }
    match read_text_file(&file) {
        Ok(text) if text.is_empty() => vec![hosts_toml_empty(&file, name)],
        Ok(text) => hosts_file::lint_hosts_text(&file, name, &text, linter),
        Err(e) => vec![unreadable(&file, &e.to_string(), "hosts.toml")],
    }
}

fn hosts_toml_missing(dir: &Path, name: &str) -> Diagnostic {
    let lookalike = lookalike_file(dir);
    let message = match &lookalike {
        Some(other) => format!("`{name}` has no hosts.toml, but has `{other}`"),
        None => format!("`{name}` has no hosts.toml"),
    };
    let fix = match &lookalike {
        Some(other) => format!("rename `{other}` to hosts.toml (in {})", dir.display()),
        None => format!(
            "write {}/hosts.toml (`wharf containerd hosts`)",
            dir.display()
        ),
    };
    Diagnostic::new(Code::HostsTomlMissing, Severity::Error, dir, message)
        .containerd_will(format!(
            "use only Docker-style certificate files (*.crt, *.cert, *.key) from this directory and pull straight from the {} upstream",
            name
        ))
        .fix(fix)
}

fn hosts_toml_empty(file: &Path, name: &str) -> Diagnostic {
    Diagnostic::new(
        Code::HostsTomlMissing,
        Severity::Error,
        file,
        "hosts.toml is empty",
    )
    .containerd_will(format!(
        "treat an empty hosts.toml like a missing one and pull straight from the {name} upstream"
    ))
    .fix("write the mirror configuration into it (`wharf containerd hosts`)")
}

/// A file that was probably meant to be hosts.toml (`host.toml`,
/// `hosts.yaml`, `hosts.toml.txt`, or `v2/hosts.toml` one level down).
fn lookalike_file(dir: &Path) -> Option<String> {
    let entries = sorted_entries(dir).ok()?;
    entries.iter().find_map(|p| {
        let name = p.file_name()?.to_string_lossy().into_owned();
        let lower = name.to_ascii_lowercase();
        if p.is_dir() && p.join(HOSTS_TOML).is_file() {
            return Some(format!("{name}/hosts.toml"));
        }
        let looks_like = lower.starts_with("host") || lower.ends_with(".toml");
        (p.is_file() && looks_like).then_some(name)
    })
}

/// Both `host_5000_` and `host:5000` exist: containerd only reads the first.
fn shadowed_dirs(
    dir: &Path,
    namespaces: &HashMap<Namespace, Vec<(String, bool)>>,
) -> Vec<Diagnostic> {
    let mut found: Vec<Diagnostic> = namespaces
        .iter()
        .filter(|(_, names)| names.len() > 1)
        .filter_map(|(ns, names)| {
            let winner = names.iter().find(|(_, underscored)| *underscored)?;
            let loser = names.iter().find(|(_, underscored)| !*underscored)?;
            Some(
                Diagnostic::new(
                    Code::DuplicateHost,
                    Severity::Warning,
                    &dir.join(&loser.0),
                    format!("`{}` and `{}` both configure {ns}", winner.0, loser.0),
                )
                .containerd_will(format!(
                    "read only `{}` (it is tried first) and never this one",
                    winner.0
                ))
                .fix(format!(
                    "merge the two and keep one directory (wharf writes `{}`)",
                    ns.dir_name()
                )),
            )
        })
        .collect();
    found.sort_by(|a, b| a.file.cmp(&b.file));
    found
}
