//! Conformance content: blobs, image manifests, artifacts and indexes in
//! any digest algorithm, with subjects and annotations, built as the OCI
//! image spec describes them (the test kit's image factory makes runnable
//! sha256 images; these are the spec's corner cases).

use serde_json::{json, Map, Value};
use wharf_testkit::{pseudo_random, sha256_digest, sha512_digest};

use super::{OCI_CONFIG, OCI_EMPTY_JSON, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn digest(self, data: &[u8]) -> String {
        match self {
            Algorithm::Sha256 => sha256_digest(data),
            Algorithm::Sha512 => sha512_digest(data),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: String,
    pub data: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub fn new(media_type: &str, data: Vec<u8>) -> Blob {
        Blob::with_algorithm(media_type, data, Algorithm::Sha256)
    }

    pub fn with_algorithm(media_type: &str, data: Vec<u8>, algorithm: Algorithm) -> Blob {
        let digest = algorithm.digest(&data);
        Blob {
            media_type: media_type.to_string(),
            data,
            digest,
        }
    }

    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.data.len(),
        })
    }
}

/// A manifest's exact bytes, its digest and the media type it is pushed as.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub media_type: String,
    pub body: Vec<u8>,
    pub digest: String,
}

impl Manifest {
    pub fn from_json(media_type: &str, value: &Value, algorithm: Algorithm) -> Manifest {
        let body = serde_json::to_vec(value).expect("serialise manifest");
        Manifest::from_bytes_with(media_type, body, algorithm)
    }

    pub fn from_bytes(media_type: &str, body: Vec<u8>) -> Manifest {
        Manifest::from_bytes_with(media_type, body, Algorithm::Sha256)
    }

    pub fn from_bytes_with(media_type: &str, body: Vec<u8>, algorithm: Algorithm) -> Manifest {
        let digest = algorithm.digest(&body);
        Manifest {
            media_type: media_type.to_string(),
            body,
            digest,
        }
    }

    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.body.len(),
        })
    }

    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.body).expect("manifest is JSON")
    }
}

/// An image manifest with the blobs it references.
#[derive(Clone, Debug)]
pub struct Image {
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Manifest,
}

impl Image {
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut blobs = vec![&self.config];
        blobs.extend(self.layers.iter());
        blobs
    }
}

/// What to put into a generated image manifest.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub seed: u64,
    pub layers: usize,
    pub manifest_media_type: String,
    pub config_media_type: String,
    /// `None`: a small image config unique to `seed`.
    pub config_data: Option<Vec<u8>>,
    pub layer_media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<Value>,
    pub annotations: Option<Value>,
    pub algorithm: Algorithm,
}

impl Default for ImageSpec {
    fn default() -> ImageSpec {
        ImageSpec {
            seed: 1,
            layers: 2,
            manifest_media_type: OCI_MANIFEST.to_string(),
            config_media_type: OCI_CONFIG.to_string(),
            config_data: None,
            layer_media_type: OCI_LAYER_GZIP.to_string(),
            artifact_type: None,
            subject: None,
            annotations: None,
            algorithm: Algorithm::Sha256,
        }
    }
}

impl ImageSpec {
    pub fn build(&self) -> Image {
        let config =
            Blob::with_algorithm(&self.config_media_type, self.config_bytes(), self.algorithm);
        let layers: Vec<Blob> = (0..self.layers).map(|i| self.layer(i)).collect();
        let manifest = Manifest::from_json(
            &self.manifest_media_type,
            &self.manifest_json(&config, &layers),
            self.algorithm,
        );
        Image {
            config,
            layers,
            manifest,
        }
    }

    fn config_bytes(&self) -> Vec<u8> {
        self.config_data.clone().unwrap_or_else(|| {
            let config = json!({
                "architecture": "amd64",
                "os": "linux",
                "author": format!("wharf test image {}", self.seed),
                "rootfs": {"type": "layers", "diff_ids": []},
            });
            serde_json::to_vec(&config).expect("serialise config")
        })
    }

    fn layer(&self, index: usize) -> Blob {
        let seed = self.seed * 1000 + index as u64;
        let data = pseudo_random(seed, 300 + index * 17);
        Blob::with_algorithm(&self.layer_media_type, data, self.algorithm)
    }

    fn manifest_json(&self, config: &Blob, layers: &[Blob]) -> Value {
        let mut m = Map::new();
        m.insert("schemaVersion".into(), json!(2));
        m.insert("mediaType".into(), json!(self.manifest_media_type));
        if let Some(artifact_type) = &self.artifact_type {
            m.insert("artifactType".into(), json!(artifact_type));
        }
        m.insert("config".into(), config.descriptor());
        let layers: Vec<Value> = layers.iter().map(Blob::descriptor).collect();
        m.insert("layers".into(), Value::Array(layers));
        insert_optional(&mut m, "subject", &self.subject);
        insert_optional(&mut m, "annotations", &self.annotations);
        Value::Object(m)
    }
}

fn insert_optional(m: &mut Map<String, Value>, key: &str, value: &Option<Value>) {
    if let Some(value) = value {
        m.insert(key.into(), value.clone());
    }
}

/// A plain OCI image with two layers, unique to `seed`.
pub fn image(seed: u64) -> Image {
    ImageSpec {
        seed,
        ..ImageSpec::default()
    }
    .build()
}

/// An OCI artifact: `artifactType` set, the empty JSON config, one layer.
pub fn artifact(seed: u64, artifact_type: &str, subject: Option<&Manifest>) -> Image {
    ImageSpec {
        seed,
        layers: 1,
        config_media_type: OCI_EMPTY_JSON.to_string(),
        config_data: Some(b"{}".to_vec()),
        layer_media_type: artifact_type.to_string(),
        artifact_type: Some(artifact_type.to_string()),
        subject: subject.map(Manifest::descriptor),
        annotations: Some(json!({ "org.example.seed": seed.to_string() })),
        ..ImageSpec::default()
    }
    .build()
}

/// What to put into a generated index.
#[derive(Clone, Debug)]
pub struct IndexSpec {
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<Value>,
    pub annotations: Option<Value>,
    pub algorithm: Algorithm,
}

impl Default for IndexSpec {
    fn default() -> IndexSpec {
        IndexSpec {
            media_type: OCI_INDEX.to_string(),
            artifact_type: None,
            subject: None,
            annotations: None,
            algorithm: Algorithm::Sha256,
        }
    }
}

impl IndexSpec {
    pub fn build(&self, children: &[&Manifest]) -> Manifest {
        let mut m = Map::new();
        m.insert("schemaVersion".into(), json!(2));
        m.insert("mediaType".into(), json!(self.media_type));
        if let Some(artifact_type) = &self.artifact_type {
            m.insert("artifactType".into(), json!(artifact_type));
        }
        let entries: Vec<Value> = children
            .iter()
            .enumerate()
            .map(|(i, c)| platform_entry(i, c))
            .collect();
        m.insert("manifests".into(), Value::Array(entries));
        insert_optional(&mut m, "subject", &self.subject);
        insert_optional(&mut m, "annotations", &self.annotations);
        Manifest::from_json(&self.media_type, &Value::Object(m), self.algorithm)
    }
}

fn platform_entry(position: usize, child: &Manifest) -> Value {
    let architecture = ["amd64", "arm64"][position % 2];
    let mut entry = child.descriptor();
    entry["platform"] = json!({"os": "linux", "architecture": architecture});
    entry
}

/// A plain OCI index over `children`.
pub fn index_of(children: &[&Manifest]) -> Manifest {
    IndexSpec::default().build(children)
}
