//! Media types wharf recognises. Blob types (configs, layers, artifacts'
//! own types) are never checked: a registry mirror must not convert or
//! reject what upstream serves. Manifests are the exception: a registry
//! serves a manifest with its media type as `Content-Type`, so only the
//! manifest types ([`is_manifest`]) are accepted for them.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker schema 1 (signed); deprecated, still seen on old mirrors.
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// Is this a multi-platform index (OCI index or Docker manifest list)?
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Is this a single-image manifest (OCI or Docker v2 schema 2)?
pub fn is_image_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Is this a type a manifest may be pushed and served with: an OCI image
/// manifest or index, a Docker v2 schema 2 manifest or manifest list, or a
/// Docker schema 1 manifest (old images, mirrored byte for byte)? Anything
/// else (`text/html`, `application/json`, …) would be served back under
/// that `Content-Type` and is refused.
pub fn is_manifest(media_type: &str) -> bool {
    is_index(media_type)
        || is_image_manifest(media_type)
        || media_type == DOCKER_MANIFEST_V1_SIGNED
        || media_type == DOCKER_MANIFEST_V1
}

/// Every manifest type a registry should offer in `Accept` when it does not
/// know what it will get (what containerd and skopeo send).
pub const MANIFEST_ACCEPT: &[&str] = &[
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

/// Strip parameters (`; charset=…`) and whitespace, as the spec tells
/// registries to ignore them.
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}
