//! Where everything lives, as keys relative to the storage root. Version 1:
//!
//! ```text
//! <root>/
//! ├── wharf-layout                      "1": the version of this layout
//! ├── blobs/<alg>/<hex[0..2]>/<hex>     blob bytes (layers, configs, manifests)
//! ├── uploads/<uuid>/data               bytes received so far
//! ├── uploads/<uuid>/info               {"repository", "algorithm"}
//! ├── repositories/<name>/
//! │   ├── _layers/<alg>/<hex>           empty: the repository may serve this blob
//! │   ├── _manifests/revisions/<alg>/<hex>   the media type the manifest was pushed with
//! │   ├── _manifests/tags/<tag>         the digest the tag points at
//! │   ├── _referrers/<alg>/<subject-hex>/<alg>-<hex>   referrer descriptor (JSON)
//! │   └── _cache/tags/<tag>             pull-through cache: when the tag was last confirmed upstream
//! ├── quarantine/<alg>/<hex>            blobs fsck found corrupt, moved aside
//! ├── gc/doomed/<alg>/<hex>             empty: garbage collection means to delete
//! │                                     this blob; a writer that needs it deletes the marker
//! └── tmp/                              files being written; emptied at start-up
//! ```
//!
//! Keys are only ever built here, from validated [`RepositoryName`]s, [`Tag`]s
//! and [`Digest`]s: none of them can contain `..`, an empty component or a
//! leading `/`, so no key can point outside the root. Repository names never
//! start with `_`, so `_layers` and friends never clash with a nested name.

use wharf_oci::{Digest, RepositoryName, Tag};

pub const LAYOUT_VERSION: &str = "1";
pub const VERSION_KEY: &str = "wharf-layout";
pub const REPOSITORIES: &str = "repositories";
pub const UPLOADS: &str = "uploads";
pub const BLOBS: &str = "blobs";
pub const TMP: &str = "tmp";
pub const QUARANTINE: &str = "quarantine";
/// Markers of blobs garbage collection is about to delete.
pub const DOOMED: &str = "gc/doomed";

/// Marker components inside a repository directory.
pub const LAYERS_DIR: &str = "_layers";
pub const MANIFESTS_DIR: &str = "_manifests";
pub const REFERRERS_DIR: &str = "_referrers";
pub const CACHE_DIR: &str = "_cache";

/// `parts` joined by `/` in one allocation of the right size: the keys of
/// every request are built here, where `format!` cost measurably more.
fn key(parts: &[&str]) -> String {
    parts.join("/")
}

pub fn blob(d: &Digest) -> String {
    key(&[BLOBS, d.algorithm().as_str(), &d.hex()[..2], d.hex()])
}

pub fn quarantined(d: &Digest) -> String {
    format!("{QUARANTINE}/{}/{}", d.algorithm(), d.hex())
}

pub fn doomed(d: &Digest) -> String {
    format!("{DOOMED}/{}/{}", d.algorithm(), d.hex())
}

pub fn layer_links(repo: &RepositoryName) -> String {
    format!("{REPOSITORIES}/{repo}/{LAYERS_DIR}")
}

pub fn repository(repo: &RepositoryName) -> String {
    format!("{REPOSITORIES}/{repo}")
}

pub fn layer_link(repo: &RepositoryName, d: &Digest) -> String {
    key(&[
        REPOSITORIES,
        repo.as_str(),
        LAYERS_DIR,
        d.algorithm().as_str(),
        d.hex(),
    ])
}

pub fn revision(repo: &RepositoryName, d: &Digest) -> String {
    key(&[
        REPOSITORIES,
        repo.as_str(),
        MANIFESTS_DIR,
        "revisions",
        d.algorithm().as_str(),
        d.hex(),
    ])
}

pub fn revisions(repo: &RepositoryName) -> String {
    format!("{REPOSITORIES}/{repo}/{MANIFESTS_DIR}/revisions")
}

pub fn tags(repo: &RepositoryName) -> String {
    format!("{REPOSITORIES}/{repo}/{MANIFESTS_DIR}/tags")
}

pub fn tag(repo: &RepositoryName, tag: &Tag) -> String {
    key(&[
        REPOSITORIES,
        repo.as_str(),
        MANIFESTS_DIR,
        "tags",
        tag.as_str(),
    ])
}

/// The pull-through cache's record of when `tag` was last confirmed upstream.
pub fn cache_tag(repo: &RepositoryName, tag: &Tag) -> String {
    format!("{REPOSITORIES}/{repo}/{CACHE_DIR}/tags/{tag}")
}

pub fn referrers_of(repo: &RepositoryName, subject: &Digest) -> String {
    format!(
        "{REPOSITORIES}/{repo}/{REFERRERS_DIR}/{}/{}",
        subject.algorithm(),
        subject.hex()
    )
}

pub fn referrer(repo: &RepositoryName, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}/{}-{}",
        referrers_of(repo, subject),
        referrer.algorithm(),
        referrer.hex()
    )
}

pub fn upload_dir(id: &str) -> String {
    format!("{UPLOADS}/{id}")
}

pub fn upload_data(id: &str) -> String {
    format!("{UPLOADS}/{id}/data")
}

pub fn upload_info(id: &str) -> String {
    format!("{UPLOADS}/{id}/info")
}

/// Upload ids are server-made UUIDs; anything else is refused before it
/// reaches a path.
pub fn is_valid_upload_id(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok_and(|u| u.hyphenated().to_string() == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable() {
        let repo: RepositoryName = "docker.io/library/alpine".parse().unwrap();
        let d = Digest::sha256_of(b"");
        assert_eq!(
            blob(&d),
            "blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            layer_link(&repo, &d),
            "repositories/docker.io/library/alpine/_layers/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            tag(&repo, &"v1".parse().unwrap()),
            "repositories/docker.io/library/alpine/_manifests/tags/v1"
        );
        assert_eq!(
            revision(&repo, &d),
            "repositories/docker.io/library/alpine/_manifests/revisions/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn upload_ids_must_be_canonical_uuids() {
        assert!(is_valid_upload_id("67e55044-10b1-426f-9247-bb680e5fe0c8"));
        assert!(!is_valid_upload_id("../../etc"));
        assert!(!is_valid_upload_id("67E55044-10B1-426F-9247-BB680E5FE0C8"));
        assert!(!is_valid_upload_id("67e5504410b1426f9247bb680e5fe0c8"));
    }
}
