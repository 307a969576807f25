//! What only the transfer tests need: clients with quick retries, jobs,
//! images whose platforms share a base layer, and a proxy that counts (and
//! can corrupt) what passes through it. Registries, the token server and
//! the image factory come from `wharf_testkit`.
#![allow(dead_code)]

pub mod proxy;

use std::sync::Arc;
use std::time::Duration;

use wharf_client::{Client, ClientConfig, Credential, CredentialSources, RetryPolicy};
use wharf_oci::{Reference, RepositoryName};
use wharf_testkit::image::{index, seeded_image, Artifact, Format};
use wharf_transfer::{ImageJob, ImageReport, NoEvents, Options, Transfer};

pub fn repo(s: &str) -> RepositoryName {
    s.parse().expect("valid repository name")
}

pub fn reference(s: &str) -> Reference {
    s.parse().expect("valid reference")
}

/// A client with fast retries, so failures stay quick.
pub fn client() -> Client {
    client_with(CredentialSources::none())
}

pub fn client_with(credentials: CredentialSources) -> Client {
    Client::new(ClientConfig {
        credentials,
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(1),
        },
        ..ClientConfig::default()
    })
    .expect("build a client")
}

pub fn client_for(host: &str, user: &str, password: &str) -> Client {
    client_with(CredentialSources::none().with_explicit(host, Credential::basic(user, password)))
}

/// Copy `jobs` with fresh clients (as a new process would).
pub async fn run(jobs: Vec<ImageJob>, options: Options) -> Vec<ImageReport> {
    Transfer::new(client(), client(), options, Arc::new(NoEvents))
        .run(jobs)
        .await
}

pub fn job(src: &str, dst: &str) -> ImageJob {
    ImageJob::new(reference(src), reference(dst))
}

/// An image for `platform` with the layers of the `shared` seeds, then one
/// of its own (from `seed`); each layer is 20 to 26 kB.
pub fn layered(format: Format, platform: &str, seed: u64, shared: &[u64]) -> Artifact {
    let layers: Vec<(u64, usize)> = shared
        .iter()
        .chain(std::iter::once(&seed))
        .map(|s| (*s, 20_000 + (*s as usize % 7) * 1000))
        .collect();
    seeded_image(format, platform, seed, &layers)
}

/// A linux/amd64 OCI image with one layer of its own.
pub fn oci_image(seed: u64) -> Artifact {
    layered(Format::Oci, "linux/amd64", seed, &[])
}

/// A linux/amd64 Docker v2s2 image with one layer of its own.
pub fn docker_image(seed: u64) -> Artifact {
    layered(Format::Docker, "linux/amd64", seed, &[])
}

/// An index (OCI) or manifest list (Docker) over one image per platform,
/// all on a base layer from `seed`.
pub fn multi_platform(format: Format, platforms: &[&str], seed: u64) -> Artifact {
    let images = platforms
        .iter()
        .enumerate()
        .map(|(i, platform)| layered(format, platform, seed + 1 + i as u64, &[seed]))
        .collect();
    index(format, images)
}
