//! The shared backend suite and the S3-specific guarantees, against a real
//! S3-compatible server (Garage) started on loopback for each test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use wharf_oci::{Algorithm, Digest, RepositoryName};
use wharf_storage::testsuite::{self, collect, stream_of};
use wharf_storage::{layout, Backend, StorageError, Store};
use wharf_storage_s3::config::MIN_PART_SIZE;
use wharf_storage_s3::garage::Garage;
use wharf_storage_s3::{S3Backend, S3Config, S3Error};
use wharf_testkit::pseudo_random;

const MIB: usize = 1024 * 1024;

fn repo(name: &str) -> RepositoryName {
    name.parse().unwrap()
}

/// `len` deterministic bytes from `seed`.
fn data(len: usize, seed: u32) -> Bytes {
    pseudo_random(u64::from(seed), len).into()
}

async fn open(config: S3Config) -> Arc<S3Backend> {
    Arc::new(S3Backend::open(config).await.expect("open the bucket"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backend_passes_the_shared_suite() {
    let garage = Garage::start();
    let n = AtomicUsize::new(0);
    // One prefix per check, so each starts with an empty registry.
    testsuite::run_all(|| {
        let prefix = format!("suite-{}", n.fetch_add(1, Ordering::SeqCst));
        Arc::new(S3Backend::new(garage.s3_config(&prefix)).unwrap()) as Arc<dyn Backend>
    })
    .await;
    assert!(n.load(Ordering::SeqCst) >= 14, "every check ran");
}

/// Upload keys in the bucket for one prefix, for checking what is visible.
async fn keys_under(garage: &Garage, prefix: &str, under: &str) -> Vec<String> {
    let raw = open(garage.s3_config("")).await;
    raw.list(&format!("{prefix}/{under}")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_started_on_one_replica_finishes_on_another() {
    let garage = Garage::start();
    let mut config = garage.s3_config("replicas");
    config.part_size = MIN_PART_SIZE;
    // Two stores on one bucket stand for two `wharf serve` replicas.
    let a = Store::new(open(config.clone()).await);
    let b = Store::new(open(config).await);
    let r = repo("replicas/app");
    let blob = data(13 * MIB + 12_345, 7);
    let d = Digest::sha256_of(&blob);
    let id = a.start_upload(&r, Algorithm::Sha256).await.unwrap();
    // 1 MiB chunks, alternating replicas: well below S3's part minimum.
    let mut offset = 0;
    for (i, chunk) in blob.chunks(MIB).enumerate() {
        let store = if i % 2 == 0 { &a } else { &b };
        let last = offset + chunk.len() == blob.len();
        let body = stream_of(vec![Bytes::copy_from_slice(chunk)]);
        if last {
            store
                .finish_upload(&r, &id, &d, Some((Some(offset as u64), body)))
                .await
                .expect("the other replica closes the upload");
        } else {
            let s = store
                .append_upload(&r, &id, Some(offset as u64), body)
                .await
                .unwrap();
            assert_eq!(s.size, (offset + chunk.len()) as u64);
            // Both replicas see the same progress.
            let other = if i % 2 == 0 { &b } else { &a };
            assert_eq!(other.upload_status(&r, &id).await.unwrap().size, s.size);
        }
        offset += chunk.len();
    }
    assert_eq!(a.blob_size(&r, &d).await.unwrap(), Some(blob.len() as u64));
    let back = collect(a.blob_read(&d, 0..blob.len() as u64).await.unwrap()).await;
    assert!(back == blob, "blob read back differs");
    assert!(
        keys_under(&garage, "replicas", "uploads").await.is_empty(),
        "upload objects left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_respect_the_s3_minimum_and_state_survives_a_new_process() {
    let garage = Garage::start();
    let mut config = garage.s3_config("parts");
    config.part_size = MIN_PART_SIZE;
    let backend = open(config.clone()).await;
    let store = Store::new(backend.clone());
    let r = repo("parts/app");
    let blob = data(11 * MIB + 3, 9);
    let id = store.start_upload(&r, Algorithm::Sha256).await.unwrap();
    // Seven chunks of 1.5 MiB: the first part can only be cut at 5 MiB.
    let mut offset = 0u64;
    for chunk in blob[..(10 * MIB + MIB / 2)].chunks(MIB + MIB / 2) {
        let s = store
            .append_upload(
                &r,
                &id,
                Some(offset),
                stream_of(vec![Bytes::copy_from_slice(chunk)]),
            )
            .await
            .unwrap();
        offset = s.size;
    }
    let state = backend
        .get(&format!("{}/state", layout::upload_dir(&id)))
        .await
        .unwrap()
        .expect("upload state");
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    let parts = state["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "two full parts so far: {state}");
    for p in parts {
        assert_eq!(p["size"].as_u64(), Some(MIN_PART_SIZE));
    }
    assert_eq!(state["tail"].as_u64(), Some(offset - 2 * MIN_PART_SIZE));
    // A process that never saw this upload resumes it from the stored hash
    // state (the parts of an unfinished multipart upload cannot be read).
    let fresh = Store::new(open(config).await);
    let d = Digest::sha256_of(&blob);
    let rest = blob.slice(offset as usize..);
    fresh
        .finish_upload(&r, &id, &d, Some((Some(offset), stream_of(vec![rest]))))
        .await
        .unwrap();
    let back = collect(fresh.blob_read(&d, 0..blob.len() as u64).await.unwrap()).await;
    assert!(back == blob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_digest_leaves_nothing_under_the_digest_and_the_upload_continues() {
    let garage = Garage::start();
    let mut config = garage.s3_config("wrong");
    config.part_size = MIN_PART_SIZE;
    let backend = open(config).await;
    let store = Store::new(backend.clone());
    let r = repo("wrong/app");
    let blob = data(6 * MIB, 3);
    let id = store.start_upload(&r, Algorithm::Sha256).await.unwrap();
    store
        .append_upload(&r, &id, Some(0), stream_of(vec![blob.clone()]))
        .await
        .unwrap();
    let claimed = Digest::sha256_of(b"not these bytes");
    let err = store
        .finish_upload(&r, &id, &claimed, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::DigestMismatch { .. }), "{err}");
    assert_eq!(backend.blob_size(&claimed).await.unwrap(), None);
    assert!(backend.blob_list().await.unwrap().is_empty());
    // The right digest still closes it.
    let d = Digest::sha256_of(&blob);
    store.finish_upload(&r, &id, &d, None).await.unwrap();
    assert_eq!(backend.blob_list().await.unwrap(), vec![d]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_download_the_blob() {
    let garage = Garage::start();
    let mut config = garage.s3_config("redirect");
    config.redirect = true;
    let backend = open(config).await;
    let store = Store::new(backend.clone());
    let r = repo("redirect/app");
    let blob = data(300_000, 5);
    let d = Digest::sha256_of(&blob);
    store
        .put_blob(&r, &d, stream_of(vec![blob.clone()]))
        .await
        .unwrap();
    let url = backend
        .blob_url(&d)
        .await
        .unwrap()
        .expect("a presigned URL");
    assert!(url.starts_with(&garage.endpoint()), "{url}");
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.bytes().await.unwrap() == blob);
    // Without `redirect` the registry streams the blob itself.
    let plain = open(garage.s3_config("redirect")).await;
    assert_eq!(plain.blob_url(&d).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_missing_buckets_are_told_apart() {
    let garage = Garage::start();
    let mut wrong_secret = garage.s3_config("x");
    wrong_secret.credentials.as_mut().unwrap().secret_access_key = "0".repeat(64);
    let err = S3Backend::open(wrong_secret).await.err().expect("refused");
    assert!(matches!(err, S3Error::Credentials { .. }), "{err}");
    assert!(err.to_string().contains(&garage.access_key_id), "{err}");
    assert!(err.hint().contains("access key"));

    let mut missing = garage.s3_config("x");
    missing.bucket = "no-such-bucket".into();
    let err = S3Backend::open(missing).await.err().expect("refused");
    assert!(
        matches!(err, S3Error::NoSuchBucket { .. }),
        "expected a missing-bucket error, got {err}"
    );
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
    assert!(err.hint().contains("create the bucket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_is_a_clear_transient_error() {
    let mut garage = Garage::start();
    let config = garage.s3_config("down");
    garage.kill();
    let err = S3Backend::open(config.clone())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, S3Error::Unreachable { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains(&garage.endpoint()), "{err}");
    garage.restart();
    S3Backend::open(config)
        .await
        .expect("opens once the server is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resumes_after_the_server_comes_back() {
    let mut garage = Garage::start();
    let mut config = garage.s3_config("crash");
    config.part_size = MIN_PART_SIZE;
    let backend = open(config.clone()).await;
    let store = Store::new(backend.clone());
    let r = repo("crash/app");
    let blob = data(12 * MIB, 11);
    let d = Digest::sha256_of(&blob);
    let id = store.start_upload(&r, Algorithm::Sha256).await.unwrap();
    let first = store
        .append_upload(&r, &id, Some(0), stream_of(vec![blob.slice(..6 * MIB)]))
        .await
        .unwrap();
    garage.kill();
    let err = store
        .append_upload(
            &r,
            &id,
            Some(first.size),
            stream_of(vec![blob.slice(6 * MIB..)]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
    garage.restart();
    // Nothing is visible under the digest; the upload is where it was.
    assert_eq!(backend.blob_size(&d).await.unwrap(), None);
    let status = store.upload_status(&r, &id).await.unwrap();
    assert_eq!(status.size, first.size);
    store
        .finish_upload(
            &r,
            &id,
            &d,
            Some((
                Some(status.size),
                stream_of(vec![blob.slice(status.size as usize..)]),
            )),
        )
        .await
        .unwrap();
    let back = collect(store.blob_read(&d, 0..blob.len() as u64).await.unwrap()).await;
    assert!(back == blob);
}
