//! What to copy: a list of references (one a line, the output of
//! `kubeadm config images list` as is) or a TOML sync file with tag
//! filters. Bad entries become failed reports; they never stop the others.

use std::collections::HashSet;

use regex::Regex;
use serde::Deserialize;
use wharf_client::Client;
use wharf_oci::{Reference, Target};

use crate::copy::ImageJob;
use crate::destination::DestinationMap;
use crate::error::{Result, TransferError};
use crate::platform::PlatformSpec;
use crate::report::ImageReport;

/// Which tags of a repository an entry asks for.
#[derive(Debug, Clone, Default)]
pub enum TagSelection {
    /// The reference's own tag or digest.
    #[default]
    Given,
    /// Every tag the source lists.
    All,
    /// Tags picked from the source's list.
    Filter(TagFilter),
}

/// A tag is taken when it is named in `tags`, or when it passes every
/// filter given (`regex` and `semver`).
#[derive(Debug, Clone, Default)]
pub struct TagFilter {
    pub tags: Vec<String>,
    pub regex: Option<Regex>,
    pub semver: Option<semver::VersionReq>,
}

impl TagFilter {
    pub fn matches(&self, tag: &str) -> bool {
        if self.tags.iter().any(|t| t == tag) {
            return true;
        }
        if self.regex.is_none() && self.semver.is_none() {
            return false;
        }
        let regex_ok = self.regex.as_ref().is_none_or(|r| r.is_match(tag));
        let semver_ok = self.semver.as_ref().is_none_or(|req| {
            semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag))
                .is_ok_and(|v| req.matches(&v))
        });
        regex_ok && semver_ok
    }

    fn selects_by_listing(&self) -> bool {
        self.regex.is_some() || self.semver.is_some()
    }
}

/// One entry of the input, before tags are listed.
#[derive(Debug, Clone)]
pub struct Request {
    /// What the user wrote.
    pub written: String,
    pub source: Reference,
    pub tags: TagSelection,
    pub platforms: Option<Vec<PlatformSpec>>,
}

/// The parsed input: what to copy, what could not be read, what to say.
#[derive(Debug, Default)]
pub struct Input {
    pub requests: Vec<Request>,
    pub failures: Vec<ImageReport>,
    pub notes: Vec<String>,
}

impl Input {
    /// Parse `written` as a reference, noting normalisation; a bad one
    /// becomes a failure.
    fn push_reference(
        &mut self,
        written: &str,
        tags: TagSelection,
        platforms: Option<Vec<PlatformSpec>>,
    ) {
        match Reference::parse_normalized(written) {
            Ok((source, changed)) => {
                if changed {
                    self.notes.push(format!("{written}: read as {source}"));
                }
                self.requests.push(Request {
                    written: written.to_string(),
                    source,
                    tags,
                    platforms,
                });
            }
            Err(e) => self.failures.push(ImageReport::failed(
                written,
                "invalid",
                format!("not an image reference: {e}"),
            )),
        }
    }
}

/// A list: one reference a line, `#` comments, blank lines ignored.
pub fn parse_list(text: &str) -> Input {
    let mut input = Input::default();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if !line.is_empty() {
            input.push_reference(line, TagSelection::Given, None);
        }
    }
    input
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncFile {
    #[serde(default)]
    platforms: Option<Vec<String>>,
    #[serde(default)]
    images: Vec<ImageEntry>,
    #[serde(default)]
    repos: Vec<RepoEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageEntry {
    #[serde(alias = "ref", alias = "reference")]
    image: String,
    #[serde(default)]
    platforms: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepoEntry {
    #[serde(alias = "repository")]
    repo: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    tag_regex: Option<String>,
    #[serde(default)]
    semver: Option<String>,
    #[serde(default)]
    platforms: Option<Vec<String>>,
}

/// A TOML sync file:
///
/// ```toml
/// platforms = ["linux/amd64"]            # default for every entry
/// [[images]]
/// image = "registry.k8s.io/pause:3.10"
/// [[repos]]
/// repo = "registry.k8s.io/coredns/coredns"
/// tags = ["v1.11.3"]                     # these, plus tags passing the filters
/// tag_regex = "^v1\\.11\\."
/// semver = ">=1.10, <2"
/// platforms = ["linux/amd64", "linux/arm64"]
/// ```
///
/// A file that is not valid TOML is an error; a bad entry is a failure.
pub fn parse_sync_file(text: &str) -> Result<Input> {
    let file: SyncFile = toml::from_str(text)
        .map_err(|e| TransferError::Invalid(format!("sync file: {}", e.message())))?;
    let mut input = Input::default();
    let default_platforms = file.platforms.clone();
    for entry in &file.images {
        let platforms = entry.platforms.clone().or(default_platforms.clone());
        match parse_platforms(platforms) {
            Ok(p) => input.push_reference(&entry.image, TagSelection::Given, p),
            Err(e) => input
                .failures
                .push(ImageReport::failed(&entry.image, "invalid", e)),
        }
    }
    for entry in &file.repos {
        let platforms = entry.platforms.clone().or(default_platforms.clone());
        match repo_filter(entry).and_then(|f| Ok((f, parse_platforms(platforms)?))) {
            Ok((filter, p)) => input.push_reference(&entry.repo, filter, p),
            Err(e) => input
                .failures
                .push(ImageReport::failed(&entry.repo, "invalid", e)),
        }
    }
    Ok(input)
}

fn parse_platforms(
    list: Option<Vec<String>>,
) -> std::result::Result<Option<Vec<PlatformSpec>>, String> {
    list.map(|l| {
        l.iter()
            .map(|p| p.parse::<PlatformSpec>().map_err(|e| e.to_string()))
            .collect()
    })
    .transpose()
}

fn repo_filter(entry: &RepoEntry) -> std::result::Result<TagSelection, String> {
    let regex = entry
        .tag_regex
        .as_deref()
        .map(Regex::new)
        .transpose()
        .map_err(|e| format!("tag_regex: {e}"))?;
    let semver = entry
        .semver
        .as_deref()
        .map(semver::VersionReq::parse)
        .transpose()
        .map_err(|e| format!("semver {:?}: {e}", entry.semver.as_deref().unwrap_or("")))?;
    if entry.tags.is_empty() && regex.is_none() && semver.is_none() {
        return Ok(TagSelection::All);
    }
    Ok(TagSelection::Filter(TagFilter {
        tags: entry.tags.clone(),
        regex,
        semver,
    }))
}

/// Jobs for every request: tags listed and filtered at the source where
/// asked, destinations mapped, duplicates dropped (with a note). Requests
/// whose tags cannot be listed become failures.
pub async fn plan_jobs(
    src: &Client,
    input: Input,
    map: &DestinationMap,
    all_tags: bool,
) -> (Vec<ImageJob>, Vec<ImageReport>, Vec<String>) {
    let Input {
        requests,
        mut failures,
        mut notes,
    } = input;
    let mut jobs = Vec::new();
    let mut seen = HashSet::new();
    for request in requests {
        let sources = match sources_of(src, &request, all_tags).await {
            Ok(s) => s,
            Err(e) => {
                failures.push(ImageReport::failed(
                    &request.written,
                    e.cause(),
                    e.to_string(),
                ));
                continue;
            }
        };
        for source in sources {
            if !seen.insert(source.clone()) {
                notes.push(format!("{source}: listed more than once; copied once"));
                continue;
            }
            if let Some(note) = map.plain_path_note(&source) {
                notes.push(format!("{source}: {note}"));
            }
            match map.map(&source) {
                Ok(destination) => jobs.push(ImageJob {
                    source,
                    destination,
                    platforms: request.platforms.clone(),
                }),
                Err(e) => failures.push(ImageReport::failed(
                    source.to_string(),
                    e.cause(),
                    e.to_string(),
                )),
            }
        }
    }
    (jobs, failures, notes)
}

/// The references a request stands for.
async fn sources_of(src: &Client, request: &Request, all_tags: bool) -> Result<Vec<Reference>> {
    let filter = match &request.tags {
        TagSelection::Given if !all_tags => return Ok(vec![request.source.clone()]),
        TagSelection::Filter(f) if !f.selects_by_listing() => {
            return Ok(f
                .tags
                .iter()
                .filter_map(|t| tagged(&request.source, t))
                .collect())
        }
        TagSelection::Given | TagSelection::All => None,
        TagSelection::Filter(f) => Some(f),
    };
    let source = &request.source;
    let mut tags = src.tags_list(source.host(), source.repository()).await?;
    tags.sort();
    let picked: Vec<Reference> = tags
        .iter()
        .filter(|t| filter.is_none_or(|f| f.matches(t)))
        .filter_map(|t| tagged(source, t))
        .collect();
    if picked.is_empty() {
        return Err(TransferError::Invalid(format!(
            "no tag of {}/{} matches",
            source.host(),
            source.repository()
        )));
    }
    Ok(picked)
}

fn tagged(source: &Reference, tag: &str) -> Option<Reference> {
    let tag = tag.parse().ok()?;
    Some(Reference::new(
        source.host(),
        source.repository().clone(),
        Target::Tag(tag),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_like_kubeadm_output() {
        let input = parse_list(
            "# images\nregistry.k8s.io/kube-apiserver:v1.31.2\n\n  alpine  # bare\nNot A Ref!\n",
        );
        assert_eq!(input.requests.len(), 2);
        assert_eq!(
            input.requests[1].source.to_string(),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(input.notes.len(), 1, "{:?}", input.notes);
        assert_eq!(input.failures.len(), 1);
        assert_eq!(input.failures[0].source, "Not A Ref!");
    }

    #[test]
    fn filters_union_named_tags_with_filtered_ones() {
        let f = TagFilter {
            tags: vec!["latest".into()],
            regex: Some(Regex::new("^v1\\.").unwrap()),
            semver: Some(semver::VersionReq::parse(">=1.10, <2").unwrap()),
        };
        assert!(f.matches("latest"));
        assert!(f.matches("v1.11.3"));
        assert!(!f.matches("v1.9.0"));
        assert!(!f.matches("1.11.3"), "regex needs the v");
        assert!(!f.matches("v2.0.0"));
    }

    #[test]
    fn sync_files_parse_and_report_bad_entries() {
        let input = parse_sync_file(
            r#"
platforms = ["linux/amd64"]
[[images]]
image = "127.0.0.1:5000/a:v1"
[[repos]]
repo = "127.0.0.1:5000/b"
semver = ">=1.0"
[[repos]]
repo = "127.0.0.1:5000/c"
tag_regex = "("
"#,
        )
        .unwrap();
        assert_eq!(input.requests.len(), 2);
        assert_eq!(input.requests[0].platforms.as_ref().unwrap().len(), 1);
        assert!(matches!(input.requests[1].tags, TagSelection::Filter(_)));
        assert_eq!(input.failures.len(), 1);
        assert!(parse_sync_file("[[images]]\nnope = 1\n").is_err());
    }
}
