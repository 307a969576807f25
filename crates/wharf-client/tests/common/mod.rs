//! What only the client's tests need: a client with quick retries, a
//! [`Reporter`] that records, and a scripted HTTP server for behaviour real
//! registries do not show on demand (redirects, 429, broken connections,
//! wrong bytes). The registries, the token server, the PKI and the images
//! come from `wharf_testkit`.
#![allow(dead_code)]

pub mod scripted;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use wharf_client::{Client, ClientConfig, Reporter, RetryEvent, RetryPolicy};
use wharf_oci::{Digest, RepositoryName};
use wharf_testkit::image::{random_image, Artifact, Format};

/// The layer size of the images the client moves: several reads' worth.
pub const LAYER_LEN: usize = 300_000;

/// A one-layer OCI image unique to `seed`.
pub fn oci_image(seed: u64) -> Artifact {
    random_image(Format::Oci, seed, LAYER_LEN)
}

/// A one-layer Docker v2s2 image unique to `seed`.
pub fn docker_image(seed: u64) -> Artifact {
    random_image(Format::Docker, seed, LAYER_LEN)
}

pub fn repo(s: &str) -> RepositoryName {
    s.parse().expect("valid repository name")
}

/// A client with fast retries, so tests that exercise them stay quick.
pub fn quick_config() -> ClientConfig {
    ClientConfig {
        retry: RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        },
        ..ClientConfig::default()
    }
}

pub fn client() -> Client {
    Client::new(quick_config()).expect("build a client")
}

/// Collect a blob stream; the first error ends it.
pub async fn collect(mut s: wharf_client::BlobStream) -> Result<Vec<u8>, wharf_client::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Records what the client reports.
#[derive(Default)]
pub struct Recorder {
    pub retries: Mutex<Vec<(String, u32, Duration, bool)>>,
    pub resumes: Mutex<Vec<u64>>,
    pub progress: Mutex<u64>,
    pub finished: Mutex<u32>,
}

impl Reporter for Recorder {
    fn blob_progress(&self, _digest: &Digest, bytes: u64) {
        *self.progress.lock().unwrap() += bytes;
    }
    fn blob_resumed(&self, _digest: &Digest, offset: u64) {
        self.resumes.lock().unwrap().push(offset);
    }
    fn blob_finished(&self, _digest: &Digest) {
        *self.finished.lock().unwrap() += 1;
    }
    fn retrying(&self, e: &RetryEvent<'_>) {
        self.retries.lock().unwrap().push((
            format!("{:?}", e.reason),
            e.attempt,
            e.delay,
            e.from_retry_after,
        ));
    }
}

pub fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder::default())
}

/// Headers of a recorded request, names lower-cased.
pub type Headers = HashMap<String, String>;
