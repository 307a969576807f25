//! The bundle format, drawn once (see ARCHITECTURE.md for the picture).
//!
//! A bundle is a tar (optionally zstd-compressed as a whole):
//!
//! ```text
//! wharf-bundle            first entry: {"format":"wharf-bundle","version":N}
//! blobs/<alg>/<hex>       every manifest, config and layer, each once
//! oci-layout              {"imageLayoutVersion":"1.0.0"}
//! index.json              one entry per image name (all platforms kept)
//! manifest.json           Docker's list: one image per name, the default platform
//! wharf-bundle.json       last entry: version, every file's size and sha256
//! ```
//!
//! The first entry lets a reader refuse a newer format before reading the
//! rest and tell a truncated bundle (marker, no checksum manifest) from a
//! foreign OCI archive (neither).

use serde::{Deserialize, Serialize};
use wharf_oci::Digest;

/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// `format` field of the marker and the checksum manifest.
pub const FORMAT_NAME: &str = "wharf-bundle";
/// First entry of every bundle.
pub const MARKER_FILE: &str = "wharf-bundle";
/// Last entry of every bundle.
pub const CHECKSUM_FILE: &str = "wharf-bundle.json";
pub const INDEX_FILE: &str = "index.json";
pub const DOCKER_MANIFEST_FILE: &str = "manifest.json";
pub const OCI_LAYOUT_FILE: &str = "oci-layout";
pub const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// containerd's annotation for the full image name (`ctr images import`).
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for the reference name; containerd writes the tag.
pub const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Where a blob lives inside the tar.
pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
}

/// The digest a `blobs/<alg>/<hex>` path names, if it is one.
pub fn digest_of_path(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

/// The first entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Marker {
    pub format: String,
    pub version: u32,
}

impl Marker {
    pub fn current() -> Marker {
        Marker {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
        }
    }
}

/// The last entry: what the bundle must contain, byte for byte.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checksums {
    pub format: String,
    pub version: u32,
    /// `wharf <version>` that wrote it.
    pub created_by: String,
    /// Every other entry, in the order written.
    pub files: Vec<FileSum>,
    /// Blobs the images need that a delta bundle leaves to its base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omitted: Vec<OmittedBlob>,
    /// The base bundle of a delta (its file name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSum {
    pub path: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OmittedBlob {
    pub digest: Digest,
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_round_trip() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(digest_of_path(&blob_path(&d)), Some(d));
        assert_eq!(digest_of_path("index.json"), None);
        assert_eq!(digest_of_path("blobs/sha256/nothex"), None);
    }
}
