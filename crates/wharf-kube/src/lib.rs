//! Every container image a set of Kubernetes manifests uses, with the file
//! and line it appears on, and the naming traps among them.
//!
//! Architecture invariant: no network, no writes. Input is text; output is
//! data ([`ImageUse`], [`Finding`]) that the binary renders.
//!
//! Any mapping key `image` with a string value counts, so Pods, Deployments,
//! StatefulSets, DaemonSets, Jobs, CronJobs, init and ephemeral containers
//! and custom resources are all covered without knowing their schemas. Helm
//! values style (`image: {registry, repository, tag}`) is understood too.

mod scan;

pub use scan::{scan_text, ImageUse, ParseFailure, ScanResult};

use std::collections::BTreeSet;

use wharf_oci::Reference;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One lint finding about one image use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub image: String,
    pub message: String,
    pub fix: String,
}

/// Fully-qualified, sorted, unique references of every image that parses;
/// uses that do not parse are returned as findings.
pub fn references(uses: &[ImageUse]) -> (BTreeSet<String>, Vec<Finding>) {
    let mut refs = BTreeSet::new();
    let mut bad = Vec::new();
    for u in uses {
        match u.image.parse::<Reference>() {
            Ok(r) => {
                refs.insert(r.to_string());
            }
            Err(e) => bad.push(finding(
                u,
                "WK000",
                Severity::Error,
                e.to_string(),
                "write a valid image reference".into(),
            )),
        }
    }
    (refs, bad)
}

fn finding(
    u: &ImageUse,
    code: &'static str,
    severity: Severity,
    message: String,
    fix: String,
) -> Finding {
    Finding {
        code,
        severity,
        file: u.file.clone(),
        line: u.line,
        image: u.image.clone(),
        message,
        fix,
    }
}

/// A tag that names a moving target: `latest`, a word without a digit
/// (`stable`, `main`), or a version without its patch level (`3`, `v1.2`).
pub fn is_mutable_tag(tag: &str) -> bool {
    if tag == "latest" || !tag.bytes().any(|b| b.is_ascii_digit()) {
        return true;
    }
    let version = tag.strip_prefix('v').unwrap_or(tag);
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() < 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn first_component_is_host(image: &str) -> bool {
    match image.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

/// The naming traps of the bootstrap field report: a bare name (which host
/// will the kubelet dial?), `latest` or no tag, and a mutable tag with
/// `imagePullPolicy: IfNotPresent` (a side-loaded image stays frozen).
pub fn lint(uses: &[ImageUse]) -> Vec<Finding> {
    let mut out = Vec::new();
    for u in uses {
        let Ok(r) = u.image.parse::<Reference>() else {
            continue; // reported by `references`
        };
        if !first_component_is_host(&u.image) {
            out.push(finding(
                u,
                "WK001",
                Severity::Warning,
                format!("{:?} names no registry; the kubelet will pull {r}", u.image),
                format!("write the fully-qualified name {r} so the name in containerd, in the chart and on the wire are one string"),
            ));
        }
        let tag = r.tag().map(|t| t.as_str().to_string());
        if r.digest().is_none() {
            match tag.as_deref() {
                None | Some("latest") => out.push(finding(
                    u,
                    "WK002",
                    Severity::Warning,
                    format!("{:?} has no tag or uses `latest`", u.image),
                    "pin an immutable tag (v0.4.2) or a digest".into(),
                )),
                Some(t) if is_mutable_tag(t) && u.pull_policy.as_deref() == Some("IfNotPresent") => out.push(finding(
                    u,
                    "WK003",
                    Severity::Warning,
                    format!("mutable tag {t:?} with imagePullPolicy: IfNotPresent: a node that already has the image never pulls a newer one"),
                    "use an immutable tag (or a digest) so a new release is a new name".into(),
                )),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutable_tags() {
        for t in ["latest", "stable", "main", "3", "v1.2", "1.21"] {
            assert!(is_mutable_tag(t), "{t}");
        }
        for t in ["v0.4.2", "1.11.3", "3.21.0-alpine", "v1.31.2"] {
            assert!(!is_mutable_tag(t), "{t}");
        }
    }
}

/// What a bundle or registry holds, for [`lint_held`]: fully-qualified
/// names (`host/repo:tag` and `host/repo@digest`).
#[derive(Debug, Default, Clone)]
pub struct Held {
    /// Where the names come from, for messages (`bundle site.tar`).
    pub source: String,
    pub names: BTreeSet<String>,
}

impl Held {
    pub fn holds(&self, r: &Reference) -> bool {
        self.names.contains(&r.to_string())
    }

    /// The closest name held: the same repository with another tag, else
    /// the same path under another host.
    pub fn closest(&self, r: &Reference) -> Option<String> {
        let repo = format!("{}/{}", r.host(), r.repository());
        let same_repo = self.names.iter().find(|n| {
            n.strip_prefix(&repo)
                .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('@'))
        });
        if let Some(n) = same_repo {
            return Some(n.clone());
        }
        let path = format!("/{}", r.repository());
        let target = r.tag().map(|t| format!(":{t}"));
        let under_other_host = |n: &&String| {
            n.split_once('/').is_some_and(|(_, rest)| {
                let rest = format!("/{rest}");
                rest.starts_with(&path) && rest[path.len()..].starts_with([':', '@'])
            })
        };
        self.names
            .iter()
            .filter(under_other_host)
            .find(|n| target.as_ref().is_some_and(|t| n.ends_with(t.as_str())))
            .or_else(|| self.names.iter().find(under_other_host))
            .cloned()
    }
}

/// References that `held` does not hold (WK010), each with the closest
/// name it does hold.
pub fn lint_held(uses: &[ImageUse], held: &Held) -> Vec<Finding> {
    let mut out = Vec::new();
    for u in uses {
        let Ok(r) = u.image.parse::<Reference>() else {
            continue; // reported by `references`
        };
        if held.holds(&r) {
            continue;
        }
        let fix = match held.closest(&r) {
            Some(n) => format!("{} holds {n}: use that name, or add {r}", held.source),
            None => format!("add {r} to {}", held.source),
        };
        out.push(finding(
            u,
            "WK010",
            Severity::Error,
            format!(
                "{r} is not in {}; a node would not find it there",
                held.source
            ),
            fix,
        ));
    }
    out
}

#[cfg(test)]
mod held_tests {
    use super::*;

    fn uses(images: &[&str]) -> Vec<ImageUse> {
        images
            .iter()
            .enumerate()
            .map(|(i, image)| ImageUse {
                image: image.to_string(),
                file: "app.yaml".into(),
                line: i + 1,
                pull_policy: None,
            })
            .collect()
    }

    #[test]
    fn names_what_is_missing_and_the_closest_held() {
        let held = Held {
            source: "bundle site.tar".into(),
            names: [
                "registry.k8s.io/pause:3.10",
                "registry.example.com/team/app:v1",
                "mirror.local/team/tool:v2",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        };
        let found = lint_held(
            &uses(&[
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io/pause:3.9",
                "quay.io/team/tool:v2",
                "docker.io/library/busybox:1.36",
            ]),
            &held,
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.iter().all(|f| f.code == "WK010"));
        assert_eq!(found[0].line, 2);
        assert!(
            found[0].fix.contains("registry.k8s.io/pause:3.10"),
            "{}",
            found[0].fix
        );
        assert!(
            found[1].fix.contains("mirror.local/team/tool:v2"),
            "{}",
            found[1].fix
        );
        assert_eq!(
            found[2].fix,
            "add docker.io/library/busybox:1.36 to bundle site.tar"
        );
    }
}
