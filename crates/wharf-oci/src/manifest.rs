//! Just enough manifest parsing to validate a push and to know what a manifest
//! refers to. The bytes themselves are never re-serialised: what was pushed is
//! what is stored and served.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type;

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    /// A descriptor of `size` bytes of `media_type` content, without the
    /// optional fields.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            artifact_type: None,
            annotations: None,
            platform: None,
            urls: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        default,
        rename = "os.features",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
}

/// The fields of any manifest-like document wharf looks at.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
    // Docker schema 1 has neither config nor layers but `fsLayers`.
    fs_layers: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest has schemaVersion {0}, expected 2")]
    SchemaVersion(i64),
    #[error("manifest mediaType {field:?} does not match Content-Type {header:?}")]
    MediaTypeMismatch { field: String, header: String },
    #[error("manifest of type {0:?} is missing its {1}")]
    MissingField(String, &'static str),
    #[error("cannot tell the manifest's media type: no mediaType field and no Content-Type")]
    UnknownType,
}

/// A manifest parsed for validation: its type and everything it refers to.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    /// The media type to store and serve it with.
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    /// Children of an index / manifest list.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ParsedManifest {
    /// Parse `bytes` pushed with `content_type` (may be empty).
    ///
    /// Rules (distribution spec, "Pushing Manifests"): the `mediaType` field,
    /// when present, must agree with `Content-Type`; without the field the
    /// header decides; indexes need `manifests`, image manifests need
    /// `config` and `layers`. Unknown media types are accepted as artifacts.
    pub fn parse(
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<ParsedManifest, ManifestError> {
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        let header = content_type
            .map(media_type::essence)
            .filter(|s| !s.is_empty());
        if let Some(v) = raw.schema_version {
            // Docker schema 1 says 1; it is accepted as an opaque document so
            // old images can still be mirrored byte for byte.
            let schema1 = raw.fs_layers.is_some() && v == 1;
            if v != 2 && !schema1 {
                return Err(ManifestError::SchemaVersion(v));
            }
        }
        let media_type = match (&raw.media_type, header) {
            (Some(field), Some(h)) if field != h => {
                return Err(ManifestError::MediaTypeMismatch {
                    field: field.clone(),
                    header: h.to_string(),
                })
            }
            (Some(field), _) => field.clone(),
            (None, Some(h)) => h.to_string(),
            (None, None) => {
                // No type anywhere: infer like the image spec suggests.
                if raw.manifests.is_some() {
                    media_type::OCI_INDEX.to_string()
                } else if raw.config.is_some() {
                    media_type::OCI_MANIFEST.to_string()
                } else {
                    return Err(ManifestError::UnknownType);
                }
            }
        };
        if media_type::is_index(&media_type) && raw.manifests.is_none() {
            return Err(ManifestError::MissingField(media_type, "manifests"));
        }
        if media_type::is_image_manifest(&media_type) {
            if raw.config.is_none() {
                return Err(ManifestError::MissingField(media_type, "config"));
            }
            if raw.layers.is_none() {
                return Err(ManifestError::MissingField(media_type, "layers"));
            }
        }
        Ok(ParsedManifest {
            media_type,
            artifact_type: raw.artifact_type,
            config: raw.config,
            layers: raw.layers.unwrap_or_default(),
            manifests: raw.manifests.unwrap_or_default(),
            subject: raw.subject,
            annotations: raw.annotations,
        })
    }

    pub fn is_index(&self) -> bool {
        !self.manifests.is_empty() || media_type::is_index(&self.media_type)
    }

    /// Blobs this manifest needs in the repository (config and layers).
    /// Layers with `urls` (foreign layers) live elsewhere and are not required.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(
            self.layers
                .iter()
                .filter(|d| d.urls.as_ref().is_none_or(|u| u.is_empty())),
        )
    }

    /// The `artifactType` a referrers listing reports for this manifest.
    pub fn referrer_artifact_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn image(media_type_field: Option<&str>) -> String {
        let mt = media_type_field
            .map(|m| format!("\"mediaType\":\"{m}\","))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{CFG}","size":2}},"layers":[]}}"#
        )
    }

    #[test]
    fn accepts_docker_v2s2_as_is() {
        let m = ParsedManifest::parse(
            image(Some(media_type::DOCKER_MANIFEST)).as_bytes(),
            Some(media_type::DOCKER_MANIFEST),
        )
        .unwrap();
        assert_eq!(m.media_type, media_type::DOCKER_MANIFEST);
        assert_eq!(m.required_blobs().count(), 1);
    }

    #[test]
    fn header_decides_without_field_and_params_are_ignored() {
        let m = ParsedManifest::parse(
            image(None).as_bytes(),
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(m.media_type, media_type::OCI_MANIFEST);
    }

    #[test]
    fn mismatched_type_is_rejected() {
        let err = ParsedManifest::parse(
            image(Some(media_type::OCI_MANIFEST)).as_bytes(),
            Some(media_type::DOCKER_MANIFEST),
        )
        .unwrap_err();
        assert!(matches!(err, ManifestError::MediaTypeMismatch { .. }));
    }

    #[test]
    fn rejects_garbage_and_missing_fields() {
        assert!(matches!(
            ParsedManifest::parse(b"{not json", None),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            ParsedManifest::parse(
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#,
                None
            ),
            Err(ManifestError::MissingField(_, "manifests"))
        ));
        assert!(matches!(
            ParsedManifest::parse(br#"{"schemaVersion":3,"manifests":[]}"#, None),
            Err(ManifestError::SchemaVersion(3))
        ));
    }

    #[test]
    fn artifact_type_falls_back_to_config_type() {
        let m =
            ParsedManifest::parse(image(None).as_bytes(), Some(media_type::OCI_MANIFEST)).unwrap();
        assert_eq!(
            m.referrer_artifact_type().as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }
}
