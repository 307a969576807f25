//! Sources written as skopeo users write them: `docker://REF` (or a bare
//! reference), `oci:DIR[:REF]`, `oci-archive:FILE[:REF]` and
//! `docker-archive:FILE[:REF]`. REF picks one image of the layout or
//! archive: the `org.opencontainers.image.ref.name` it is listed under (a
//! tag or a full name), a Docker `RepoTags` name, or `@N`, the N-th image
//! (from 0); without REF the layout or archive must hold one image.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wharf_oci::{Reference, RepositoryName, Tag, Target};
use wharf_transfer::Source;

use crate::error::{BundleError, Result};
use crate::layout::Layout;
use crate::reader::{image_name, ArchiveEntry, Bundle, Format};
use crate::source::BundleSource;

/// Where an image is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A registry: `docker://REF` or a bare reference, as written after the prefix.
    Registry(String),
    /// `oci:DIR[:REF]`: an OCI image layout directory.
    OciLayout(FileImage),
    /// `oci-archive:FILE[:REF]`: a tar of an OCI image layout.
    OciArchive(FileImage),
    /// `docker-archive:FILE[:REF]`: what `docker save` writes.
    DockerArchive(FileImage),
}

/// A layout or archive and which of its images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileImage {
    pub path: PathBuf,
    pub reference: Option<String>,
}

/// How a file transport is built from its path and REF.
type MakeTransport = fn(FileImage) -> Transport;

/// The transports a source may be written with, for messages.
pub const TRANSPORTS: &str =
    "docker://REF, oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF]";

impl Transport {
    /// Read `text`: a known transport prefix, else a registry reference.
    pub fn parse(text: &str) -> Result<Transport> {
        if let Some(reference) = text.strip_prefix("docker://") {
            return Ok(Transport::Registry(reference.to_string()));
        }
        let prefixes: [(&str, MakeTransport); 3] = [
            ("oci-archive:", Transport::OciArchive),
            ("docker-archive:", Transport::DockerArchive),
            ("oci:", Transport::OciLayout),
        ];
        for (prefix, make) in prefixes {
            if let Some(rest) = text.strip_prefix(prefix) {
                let (path, reference) = match rest.split_once(':') {
                    Some((path, reference)) => (path, Some(reference.to_string())),
                    None => (rest, None),
                };
                if path.is_empty() || reference.as_deref() == Some("") {
                    return Err(BundleError::Invalid(format!(
                        "{text}: expected {}PATH[:REF]",
                        prefix
                    )));
                }
                return Ok(make(FileImage {
                    path: PathBuf::from(path),
                    reference,
                }));
            }
        }
        Ok(Transport::Registry(text.to_string()))
    }

    /// The transport's name, as written before the colon.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Registry(_) => "docker",
            Transport::OciLayout(_) => "oci",
            Transport::OciArchive(_) => "oci-archive",
            Transport::DockerArchive(_) => "docker-archive",
        }
    }

    /// Open the layout or archive (an archive is verified in full) and pick
    /// the image. `None` for a registry, which the caller reaches itself.
    pub fn open(&self, spool_dir: Option<&Path>) -> Result<Option<OpenedImage>> {
        let opened = match self {
            Transport::Registry(_) => return Ok(None),
            Transport::OciLayout(image) => open_layout(image)?,
            Transport::OciArchive(image) => open_archive(image, spool_dir, true)?,
            Transport::DockerArchive(image) => open_archive(image, spool_dir, false)?,
        };
        Ok(Some(opened))
    }
}

/// One image of a layout or archive, ready to copy.
pub struct OpenedImage {
    pub source: Arc<dyn Source>,
    /// What to ask the source for: the image's name at its manifest's
    /// digest; without a name, `localhost/image` with the tag it is listed
    /// under, if any.
    pub reference: Reference,
    /// The image's full name, when the layout or archive gives one.
    pub name: Option<Reference>,
}

fn open_layout(image: &FileImage) -> Result<OpenedImage> {
    let layout = Layout::open(&image.path)?;
    let entry = select(layout.path(), layout.entries(), image.reference.as_deref())?;
    let source = layout.source(&entry.manifest)?;
    let name = image_name(&entry.manifest).ok();
    Ok(opened(Arc::new(source), entry, name))
}

fn open_archive(image: &FileImage, spool_dir: Option<&Path>, oci: bool) -> Result<OpenedImage> {
    let bundle = Bundle::open(&image.path, spool_dir)?;
    if oci && *bundle.format() == Format::DockerArchive {
        return Err(BundleError::Invalid(format!(
            "{}: a docker archive (no index.json), not an OCI archive: read it as docker-archive:{}",
            image.path.display(),
            image.path.display()
        )));
    }
    let entry = select(&image.path, bundle.entries(), image.reference.as_deref())?.clone();
    let named: Vec<&Reference> = bundle
        .images()
        .iter()
        .filter(|i| i.manifest.digest == entry.manifest.digest)
        .map(|i| &i.name)
        .collect();
    let asked = image
        .reference
        .as_deref()
        .and_then(|r| Reference::parse_normalized(r).ok())
        .map(|(r, _)| r);
    let name = named
        .iter()
        .find(|n| Some(**n) == asked.as_ref())
        .or(named.first())
        .map(|n| (*n).clone());
    Ok(opened(
        Arc::new(BundleSource::new(Arc::new(bundle))),
        &entry,
        name,
    ))
}

fn opened(source: Arc<dyn Source>, entry: &ArchiveEntry, name: Option<Reference>) -> OpenedImage {
    let digest = entry.manifest.digest.clone();
    let reference = match &name {
        Some(n) => n.with_digest(digest),
        None => stand_in(entry).with_digest(digest),
    };
    OpenedImage {
        source,
        reference,
        name,
    }
}

/// A name for an image listed without a full one: `localhost/image`, with
/// the tag it is listed under (`oci:DIR:v1`), if any, so that a copy to a
/// repository without a tag keeps it.
fn stand_in(entry: &ArchiveEntry) -> Reference {
    let repository: RepositoryName = "image".parse().expect("a valid name");
    let tag = entry.names.iter().find_map(|n| n.parse::<Tag>().ok());
    let target = match tag {
        Some(tag) => Target::Tag(tag),
        None => Target::Digest(entry.manifest.digest.clone()),
    };
    Reference::new("localhost", repository, target)
}

/// The image `wanted` names among `entries` (see the module docs).
fn select<'a>(
    path: &Path,
    entries: &'a [ArchiveEntry],
    wanted: Option<&str>,
) -> Result<&'a ArchiveEntry> {
    let invalid = |detail: String| BundleError::Invalid(format!("{}: {detail}", path.display()));
    let Some(wanted) = wanted else {
        return match distinct(entries.iter()).as_slice() {
            [one] => Ok(one),
            [] => Err(invalid("it lists no image".into())),
            many => Err(invalid(format!(
                "it holds {} images ({}); say which: PATH:REF or PATH:@N",
                many.len(),
                listing(many)
            ))),
        };
    };
    if let Some(n) = wanted.strip_prefix('@') {
        let index: usize = n
            .parse()
            .map_err(|_| invalid(format!("@{n}: expected @N, the N-th image from 0")))?;
        return entries.get(index).ok_or_else(|| {
            invalid(format!(
                "@{index}: it lists {} images (@0 to @{})",
                entries.len(),
                entries.len().saturating_sub(1)
            ))
        });
    }
    let normalized = |s: &str| Reference::parse_normalized(s).ok().map(|(r, _)| r);
    let wanted_name = normalized(wanted);
    let matching: Vec<&ArchiveEntry> = entries
        .iter()
        .filter(|e| {
            e.names.iter().any(|n| {
                n == wanted
                    || (wanted_name.is_some() && normalized(n) == wanted_name && n.contains('/'))
            })
        })
        .collect();
    match distinct(matching.into_iter()).as_slice() {
        [one] => Ok(one),
        [] => Err(invalid(format!(
            "no image is listed as {wanted:?}; it lists {}",
            listing(&distinct(entries.iter()))
        ))),
        many => Err(invalid(format!(
            "{} different images are listed as {wanted:?}; pick one with PATH:@N",
            many.len()
        ))),
    }
}

/// The entries with distinct manifests, first of each kept.
fn distinct<'a>(entries: impl Iterator<Item = &'a ArchiveEntry>) -> Vec<&'a ArchiveEntry> {
    let mut seen = std::collections::HashSet::new();
    entries
        .filter(|e| seen.insert(e.manifest.digest.clone()))
        .collect()
}

/// `name, name, @2 (no name)` for messages.
fn listing(entries: &[&ArchiveEntry]) -> String {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.names
                .first()
                .cloned()
                .unwrap_or_else(|| format!("@{i} (no name)"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_oci::{media_type, Descriptor, Digest};

    fn entry(names: &[&str], seed: &[u8]) -> ArchiveEntry {
        ArchiveEntry {
            names: names.iter().map(|n| n.to_string()).collect(),
            manifest: Descriptor::new(media_type::OCI_MANIFEST, Digest::sha256_of(seed), 1),
        }
    }

    #[test]
    fn prefixes_pick_the_transport_and_the_first_colon_ends_the_path() {
        let file = |path: &str, reference: Option<&str>| FileImage {
            path: path.into(),
            reference: reference.map(String::from),
        };
        let parsed = |t: &str| Transport::parse(t).unwrap();
        assert_eq!(
            parsed("docker://alpine:3.20"),
            Transport::Registry("alpine:3.20".into())
        );
        assert_eq!(
            parsed("127.0.0.1:5000/a:v1"),
            Transport::Registry("127.0.0.1:5000/a:v1".into())
        );
        assert_eq!(
            parsed("oci:/tmp/layout"),
            Transport::OciLayout(file("/tmp/layout", None))
        );
        assert_eq!(
            parsed("oci-archive:a.tar:reg.example/team/app:v1"),
            Transport::OciArchive(file("a.tar", Some("reg.example/team/app:v1")))
        );
        assert_eq!(
            parsed("docker-archive:a.tar:@1"),
            Transport::DockerArchive(file("a.tar", Some("@1")))
        );
        assert_eq!(parsed("oci:dir").name(), "oci");
        for bad in ["oci:", "oci-archive::v1", "docker-archive:a.tar:"] {
            let e = Transport::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("PATH[:REF]"), "{e}");
        }
    }

    #[test]
    fn an_image_is_picked_by_ref_name_full_name_or_index() {
        let path = Path::new("a.tar");
        let entries = [
            entry(&["v1"], b"one"),
            entry(&["docker.io/library/alpine:3.20"], b"two"),
            entry(&[], b"three"),
        ];
        let pick = |w: Option<&str>| select(path, &entries, w).map(|e| e.manifest.digest.clone());
        assert_eq!(pick(Some("v1")).unwrap(), entries[0].manifest.digest);
        assert_eq!(
            pick(Some("alpine:3.20")).unwrap(),
            entries[1].manifest.digest
        );
        assert_eq!(pick(Some("@2")).unwrap(), entries[2].manifest.digest);

        let none = pick(None).unwrap_err().to_string();
        assert!(
            none.contains("a.tar") && none.contains("3 images"),
            "{none}"
        );
        assert!(none.contains("@2 (no name)"), "{none}");
        let unknown = pick(Some("v2")).unwrap_err().to_string();
        assert!(
            unknown.contains("\"v2\"") && unknown.contains("v1"),
            "{unknown}"
        );
        assert!(pick(Some("@3"))
            .unwrap_err()
            .to_string()
            .contains("@0 to @2"));
    }

    #[test]
    fn one_image_needs_no_ref_and_two_entries_of_one_manifest_are_one_image() {
        let path = Path::new("a.tar");
        let one = [entry(&["r/a:v1"], b"x"), entry(&["r/a@sha256:…"], b"x")];
        assert!(select(path, &one, None).is_ok());
        let twice = [entry(&["v1"], b"x"), entry(&["v1"], b"y")];
        let e = select(path, &twice, Some("v1")).unwrap_err().to_string();
        assert!(e.contains("2 different images"), "{e}");
    }
}
