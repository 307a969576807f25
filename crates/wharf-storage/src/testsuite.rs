//! The one test suite every backend must pass. A backend's tests call
//! [`run_all`] with a factory for fresh, empty backends; each check panics
//! with a message naming what broke.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use wharf_oci::{media_type, Algorithm, Digest, RepositoryName, Target};

use crate::backend::{Backend, ByteStream, Durability, UploadReader, WriteObserver};
use crate::error::StorageError;
use crate::store::{ManifestPutOptions, Store, UploadWatcher};

/// Run every check, each on a fresh backend from `make`.
pub async fn run_all<F: Fn() -> Arc<dyn Backend>>(make: F) {
    documents(make()).await;
    chunked_upload_round_trip(make()).await;
    wrong_digest_is_never_visible(make()).await;
    out_of_order_chunk_is_refused(make()).await;
    upload_resumes_after_restart(make()).await;
    concurrent_pushes_of_one_blob(make()).await;
    sha512_blobs(make()).await;
    closing_digest_may_switch_algorithm(make()).await;
    manifests_are_byte_exact(make()).await;
    manifest_references_are_checked(make()).await;
    tags_and_deletes(make()).await;
    referrers_are_listed(make()).await;
    catalog_lists_nested_repositories(make()).await;
    ranges_are_served(make()).await;
    modification_times(make()).await;
    doomed_blobs_are_rescued_by_writers(make()).await;
    watched_uploads_are_readable_while_written(make()).await;
    documents_are_touched(make()).await;
}

pub fn stream_of(chunks: Vec<Bytes>) -> ByteStream {
    Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok)))
}

/// Make every file under `root` look last written `ago`, as garbage
/// collection's grace periods and age rules see it (a test cannot wait out
/// an hour).
pub fn age_tree(root: &std::path::Path, ago: std::time::Duration) {
    let when = std::time::SystemTime::now() - ago;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let f = std::fs::File::options().write(true).open(&path).unwrap();
                f.set_modified(when).unwrap();
            }
        }
    }
}

pub async fn collect(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("stream chunk"));
    }
    out
}

fn repo(name: &str) -> RepositoryName {
    name.parse().expect("valid test repository")
}

fn pseudo_random(len: usize, seed: u8) -> Bytes {
    let mut x = seed as u32 | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect::<Vec<_>>()
        .into()
}

async fn push(store: &Store, r: &RepositoryName, data: &Bytes) -> Digest {
    let d = Digest::sha256_of(data);
    store
        .put_blob(r, &d, stream_of(vec![data.clone()]))
        .await
        .expect("monolithic push");
    d
}

async fn documents(b: Arc<dyn Backend>) {
    assert_eq!(b.get("repositories/a/x").await.unwrap(), None);
    b.put(
        "repositories/a/x",
        Bytes::from_static(b"1"),
        Durability::Durable,
    )
    .await
    .unwrap();
    b.put(
        "repositories/a/x",
        Bytes::from_static(b"2"),
        Durability::Durable,
    )
    .await
    .unwrap();
    assert_eq!(b.get("repositories/a/x").await.unwrap().unwrap(), "2");
    assert!(b.exists("repositories/a/x").await.unwrap());
    assert_eq!(
        b.list("repositories/a").await.unwrap(),
        vec!["x".to_string()]
    );
    assert!(b.list("repositories/none").await.unwrap().is_empty());
    assert!(b.delete("repositories/a/x").await.unwrap());
    assert!(!b.delete("repositories/a/x").await.unwrap());
}

async fn chunked_upload_round_trip(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/chunked");
    let data = pseudo_random(3 * 1024 * 1024 + 17, 1);
    let id = store.start_upload(&r, Algorithm::Sha256).await.unwrap();
    let (first, rest) = data.split_at(1024 * 1024);
    let s = store
        .append_upload(
            &r,
            &id,
            Some(0),
            stream_of(vec![Bytes::copy_from_slice(first)]),
        )
        .await
        .unwrap();
    assert_eq!(s.size, 1024 * 1024);
    assert_eq!(store.upload_status(&r, &id).await.unwrap().size, s.size);
    // The upload is not reachable through another repository.
    assert!(matches!(
        store.upload_status(&repo("suite/other"), &id).await,
        Err(StorageError::UploadUnknown(_))
    ));
    let d = Digest::sha256_of(&data);
    let size = store
        .finish_upload(
            &r,
            &id,
            &d,
            Some((Some(s.size), stream_of(vec![Bytes::copy_from_slice(rest)]))),
        )
        .await
        .unwrap();
    assert_eq!(size, data.len() as u64);
    assert_eq!(
        store.blob_size(&r, &d).await.unwrap(),
        Some(data.len() as u64)
    );
    let back = collect(store.blob_read(&d, 0..data.len() as u64).await.unwrap()).await;
    assert!(back == data, "blob read back differs");
    assert!(matches!(
        store.upload_status(&r, &id).await,
        Err(StorageError::UploadUnknown(_))
    ));
}

async fn wrong_digest_is_never_visible(b: Arc<dyn Backend>) {
    let store = Store::new(b.clone());
    let r = repo("suite/wrong");
    let data = pseudo_random(4096, 2);
    let claimed = Digest::sha256_of(b"something else");
    let err = store
        .put_blob(&r, &claimed, stream_of(vec![data.clone()]))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::DigestMismatch { .. }), "{err}");
    assert_eq!(store.blob_size(&r, &claimed).await.unwrap(), None);
    assert_eq!(b.blob_size(&claimed).await.unwrap(), None);
    assert!(
        b.upload_list().await.unwrap().is_empty(),
        "failed one-shot upload left behind"
    );
}

async fn out_of_order_chunk_is_refused(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/order");
    let id = store.start_upload(&r, Algorithm::Sha256).await.unwrap();
    store
        .append_upload(
            &r,
            &id,
            Some(0),
            stream_of(vec![Bytes::from_static(b"abc")]),
        )
        .await
        .unwrap();
    let err = store
        .append_upload(
            &r,
            &id,
            Some(10),
            stream_of(vec![Bytes::from_static(b"def")]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::RangeMismatch {
                current: 3,
                requested: 10
            }
        ),
        "{err}"
    );
    assert_eq!(store.upload_status(&r, &id).await.unwrap().size, 3);
}

async fn upload_resumes_after_restart(b: Arc<dyn Backend>) {
    let r = repo("suite/resume");
    let data = pseudo_random(200_000, 3);
    let id = {
        let before = Store::new(b.clone());
        let id = before.start_upload(&r, Algorithm::Sha256).await.unwrap();
        before
            .append_upload(&r, &id, Some(0), stream_of(vec![data.slice(..100_000)]))
            .await
            .unwrap();
        id
    };
    // A new Store has no running hash: it must rebuild it from storage.
    let after = Store::new(b);
    assert_eq!(after.upload_status(&r, &id).await.unwrap().size, 100_000);
    let d = Digest::sha256_of(&data);
    after
        .finish_upload(
            &r,
            &id,
            &d,
            Some((Some(100_000), stream_of(vec![data.slice(100_000..)]))),
        )
        .await
        .unwrap();
    assert_eq!(after.blob_size(&r, &d).await.unwrap(), Some(200_000));
}

async fn concurrent_pushes_of_one_blob(b: Arc<dyn Backend>) {
    let store = Store::new(b.clone());
    let data = pseudo_random(256 * 1024, 4);
    let d = Digest::sha256_of(&data);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (store, data, d) = (store.clone(), data.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            let r = repo(&format!("suite/concurrent{}", i % 3));
            let chunks = vec![data.slice(..1000), data.slice(1000..)];
            store.put_blob(&r, &d, stream_of(chunks)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("every concurrent push succeeds");
    }
    assert_eq!(b.blob_list().await.unwrap(), vec![d.clone()], "stored once");
    for i in 0..3 {
        let r = repo(&format!("suite/concurrent{i}"));
        assert_eq!(
            store.blob_size(&r, &d).await.unwrap(),
            Some(data.len() as u64)
        );
    }
}

async fn sha512_blobs(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/sha512");
    let data = pseudo_random(5000, 5);
    let d = Digest::of(Algorithm::Sha512, &data);
    let id = store.start_upload(&r, Algorithm::Sha512).await.unwrap();
    store
        .finish_upload(&r, &id, &d, Some((None, stream_of(vec![data.clone()]))))
        .await
        .unwrap();
    assert_eq!(store.blob_size(&r, &d).await.unwrap(), Some(5000));
}

async fn closing_digest_may_switch_algorithm(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/switch");
    let data = pseudo_random(70_000, 8);
    let id = store.start_upload(&r, Algorithm::Sha256).await.unwrap();
    store
        .append_upload(&r, &id, Some(0), stream_of(vec![data.slice(..30_000)]))
        .await
        .unwrap();
    let d = Digest::of(Algorithm::Sha512, &data);
    let tail = stream_of(vec![data.slice(30_000..)]);
    store
        .finish_upload(&r, &id, &d, Some((Some(30_000), tail)))
        .await
        .expect("an upload opened for sha256 closes with a sha512 digest");
    assert_eq!(store.blob_size(&r, &d).await.unwrap(), Some(70_000));
}

fn image_manifest(
    config: &Digest,
    config_len: usize,
    layer: &Digest,
    layer_len: usize,
    mt: &str,
) -> Bytes {
    Bytes::from(format!(
        "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{mt}\",\n   \"config\": {{\"mediaType\": \"{}\", \"size\": {config_len}, \"digest\": \"{config}\"}},\n   \"layers\": [{{\"mediaType\": \"{}\", \"size\": {layer_len}, \"digest\": \"{layer}\"}}]\n}}",
        media_type::DOCKER_CONFIG,
        media_type::DOCKER_LAYER_GZIP
    ))
}

async fn manifests_are_byte_exact(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/docker");
    let config = Bytes::from_static(b"{}");
    let layer = pseudo_random(1000, 6);
    let (cd, ld) = (
        push(&store, &r, &config).await,
        push(&store, &r, &layer).await,
    );
    let bytes = image_manifest(&cd, 2, &ld, 1000, media_type::DOCKER_MANIFEST);
    let tag: Target = Target::Tag("v1".parse().unwrap());
    let put = store
        .manifest_put(
            &r,
            &tag,
            bytes.clone(),
            Some(media_type::DOCKER_MANIFEST),
            &ManifestPutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(put.digest, Digest::sha256_of(&bytes));
    for target in [tag, Target::Digest(put.digest.clone())] {
        let got = store.manifest_get(&r, &target).await.unwrap();
        assert_eq!(got.bytes, bytes, "manifest bytes changed");
        assert_eq!(
            got.media_type,
            media_type::DOCKER_MANIFEST,
            "media type changed"
        );
        assert_eq!(got.digest, put.digest);
    }
}

async fn manifest_references_are_checked(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/refs");
    let config = Bytes::from_static(b"{}");
    let cd = push(&store, &r, &config).await;
    let absent = Digest::sha256_of(b"absent layer");
    let bytes = image_manifest(&cd, 2, &absent, 12, media_type::OCI_MANIFEST);
    let err = store
        .manifest_put(
            &r,
            &Target::Tag("x".parse().unwrap()),
            bytes,
            None,
            &ManifestPutOptions::default(),
        )
        .await
        .unwrap_err();
    match err {
        StorageError::ManifestBlobUnknown(missing) => assert_eq!(missing, vec![absent.clone()]),
        other => panic!("expected ManifestBlobUnknown, got {other}"),
    }
    // An index whose children are absent: refused, unless sparse.
    let index = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{absent}","size":12,"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#,
        media_type::OCI_INDEX,
        media_type::OCI_MANIFEST
    ));
    let t = Target::Tag("idx".parse().unwrap());
    assert!(matches!(
        store
            .manifest_put(&r, &t, index.clone(), None, &ManifestPutOptions::default())
            .await,
        Err(StorageError::ManifestBlobUnknown(_))
    ));
    let sparse = ManifestPutOptions {
        sparse_indexes: true,
        ..Default::default()
    };
    let put = store
        .manifest_put(&r, &t, index.clone(), None, &sparse)
        .await
        .unwrap();
    assert_eq!(put.digest, Digest::sha256_of(&index));
    assert!(matches!(
        store
            .manifest_put(&r, &t, Bytes::from_static(b"{nope"), None, &sparse)
            .await,
        Err(StorageError::ManifestInvalid(_))
    ));
}

async fn tags_and_deletes(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/tags");
    let cd = push(&store, &r, &Bytes::from_static(b"{}")).await;
    let m = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{cd}","size":2}},"layers":[]}}"#,
        media_type::OCI_MANIFEST,
        media_type::OCI_CONFIG
    ));
    let opts = ManifestPutOptions::default();
    let mut digest = None;
    for t in ["b", "a", "C", "c"] {
        let put = store
            .manifest_put(&r, &Target::Tag(t.parse().unwrap()), m.clone(), None, &opts)
            .await
            .unwrap();
        digest = Some(put.digest);
    }
    let page = store.tags(&r, None, None).await.unwrap();
    assert_eq!(page.tags, vec!["C", "a", "b", "c"], "byte order");
    let page = store.tags(&r, Some(2), Some("a")).await.unwrap();
    assert_eq!(
        (page.tags, page.more),
        (vec!["b".to_string(), "c".to_string()], false)
    );
    assert!(matches!(
        store.tags(&repo("suite/nothing"), None, None).await,
        Err(StorageError::NameUnknown)
    ));
    store
        .manifest_delete(&r, &Target::Tag("a".parse().unwrap()))
        .await
        .unwrap();
    assert!(matches!(
        store
            .manifest_get(&r, &Target::Tag("a".parse().unwrap()))
            .await,
        Err(StorageError::ManifestUnknown)
    ));
    let digest = Target::Digest(digest.unwrap());
    store.manifest_delete(&r, &digest).await.unwrap();
    assert!(
        store.tags(&r, None, None).await.unwrap().tags.is_empty(),
        "tags of a deleted manifest remain"
    );
    assert!(matches!(
        store.manifest_get(&r, &digest).await,
        Err(StorageError::ManifestUnknown)
    ));
    assert!(matches!(
        store.manifest_delete(&r, &digest).await,
        Err(StorageError::ManifestUnknown)
    ));
    store.blob_delete(&r, &cd).await.unwrap();
    assert_eq!(store.blob_size(&r, &cd).await.unwrap(), None);
    assert!(matches!(
        store.blob_delete(&r, &cd).await,
        Err(StorageError::BlobUnknown(_))
    ));
}

async fn referrers_are_listed(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/referrers");
    let empty = push(&store, &r, &Bytes::from_static(b"{}")).await;
    let subject = Digest::sha256_of(b"a subject that was never pushed");
    let opts = ManifestPutOptions::default();
    let mut pushed = Vec::new();
    for (i, artifact) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let m = Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"{artifact}","config":{{"mediaType":"{}","digest":"{empty}","size":2}},"layers":[],"subject":{{"mediaType":"{}","digest":"{subject}","size":10}},"annotations":{{"n":"{i}"}}}}"#,
            media_type::OCI_MANIFEST,
            media_type::OCI_EMPTY,
            media_type::OCI_MANIFEST
        ));
        let put = store
            .manifest_put(&r, &Target::Digest(Digest::sha256_of(&m)), m, None, &opts)
            .await
            .unwrap();
        assert_eq!(put.subject.as_ref(), Some(&subject));
        pushed.push(put.digest);
    }
    let all = store
        .referrers(&r, &subject, None, None, None)
        .await
        .unwrap();
    assert_eq!(all.descriptors.len(), 2);
    assert!(all.next.is_none());
    let sboms = store
        .referrers(
            &r,
            &subject,
            Some("application/vnd.example.sbom"),
            None,
            None,
        )
        .await
        .unwrap()
        .descriptors;
    assert_eq!(sboms.len(), 1);
    assert_eq!(sboms[0].annotations.as_ref().unwrap()["n"], "0");
    // One at a time: the first page names where the second starts.
    let first = store
        .referrers(&r, &subject, None, None, Some(1))
        .await
        .unwrap();
    assert_eq!(first.descriptors.len(), 1);
    let second = store
        .referrers(&r, &subject, None, first.next.as_deref(), Some(1))
        .await
        .unwrap();
    assert_eq!(second.descriptors.len(), 1);
    assert!(second.next.is_none());
    assert_ne!(first.descriptors[0].digest, second.descriptors[0].digest);
    store
        .manifest_delete(&r, &Target::Digest(pushed[0].clone()))
        .await
        .unwrap();
    let left = store
        .referrers(&r, &subject, None, None, None)
        .await
        .unwrap();
    assert_eq!(left.descriptors.len(), 1);
}

async fn catalog_lists_nested_repositories(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    for name in ["x/y/z", "x", "docker.io/library/alpine", "a"] {
        push(&store, &repo(name), &Bytes::from_static(b"blob")).await;
    }
    let all = store.catalog(None, None).await.unwrap().tags;
    assert_eq!(all, vec!["a", "docker.io/library/alpine", "x", "x/y/z"]);
    let page = store.catalog(Some(2), Some("a")).await.unwrap();
    assert_eq!(page.tags, vec!["docker.io/library/alpine", "x"]);
    assert!(page.more);
}

async fn ranges_are_served(b: Arc<dyn Backend>) {
    let store = Store::new(b);
    let r = repo("suite/range");
    let data = pseudo_random(2 * 1024 * 1024, 7);
    let d = push(&store, &r, &data).await;
    let part = collect(store.blob_read(&d, 1000..1_500_000).await.unwrap()).await;
    assert!(part == data[1000..1_500_000], "range read differs");
}

/// Garbage collection reads push times from documents and blob ages from
/// blobs; a commit of bytes a blob already holds makes it young again.
/// Times are compared with a second's slack: object stores keep seconds.
async fn modification_times(b: Arc<dyn Backend>) {
    use std::time::{Duration, SystemTime};
    let slack = Duration::from_secs(2);
    let before = SystemTime::now() - slack;
    assert_eq!(b.modified("repositories/t/doc").await.unwrap(), None);
    b.put(
        "repositories/t/doc",
        Bytes::from_static(b"x"),
        Durability::Durable,
    )
    .await
    .unwrap();
    let written = b
        .modified("repositories/t/doc")
        .await
        .unwrap()
        .expect("a time");
    assert!(written >= before && written <= SystemTime::now() + slack);

    let store = Store::new(b.clone());
    let r = repo("suite/times");
    let data = pseudo_random(1000, 9);
    let d = Digest::sha256_of(&data);
    assert_eq!(b.blob_modified(&d).await.unwrap(), None);
    push(&store, &r, &data).await;
    let first = b.blob_modified(&d).await.unwrap().expect("a blob time");
    assert!(first >= before && first <= SystemTime::now() + slack);
    b.blob_put_verified(&d, data.clone()).await.unwrap();
    let again = b.blob_modified(&d).await.unwrap().expect("a blob time");
    assert!(again >= first, "a second commit must not make a blob older");
}

/// A writer deletes the doomed marker of every blob it commits or refers to.
async fn doomed_blobs_are_rescued_by_writers(b: Arc<dyn Backend>) {
    use crate::layout;
    let store = Store::new(b.clone());
    let r = repo("suite/rescue");
    let config = Bytes::from_static(b"{}");
    let layer = pseudo_random(3000, 10);
    let (cd, ld) = (Digest::sha256_of(&config), Digest::sha256_of(&layer));
    for d in [&cd, &ld] {
        b.put(&layout::doomed(d), Bytes::new(), Durability::Volatile)
            .await
            .unwrap();
    }
    push(&store, &r, &config).await;
    assert!(
        !b.exists(&layout::doomed(&cd)).await.unwrap(),
        "a blob commit rescues its digest"
    );
    push(&store, &r, &layer).await;
    b.put(&layout::doomed(&ld), Bytes::new(), Durability::Volatile)
        .await
        .unwrap();
    let m = image_manifest(&cd, 2, &ld, 3000, media_type::OCI_MANIFEST);
    store
        .manifest_put(
            &r,
            &Target::Tag("v1".parse().unwrap()),
            m,
            None,
            &ManifestPutOptions::default(),
        )
        .await
        .unwrap();
    assert!(
        !b.exists(&layout::doomed(&ld)).await.unwrap(),
        "a manifest push rescues the blobs it refers to"
    );
    b.put(&layout::doomed(&ld), Bytes::new(), Durability::Volatile)
        .await
        .unwrap();
    assert!(store
        .blob_mount(&repo("suite/rescue2"), Some(&r), &ld)
        .await
        .unwrap());
    assert!(
        !b.exists(&layout::doomed(&ld)).await.unwrap(),
        "a mount rescues its digest"
    );
}

/// What a [`Store::put_blob_watched`] watcher saw.
#[derive(Default)]
struct Seen {
    reader: Mutex<Option<Arc<dyn UploadReader>>>,
    sizes: Arc<Mutex<Vec<u64>>>,
    verified: Mutex<Option<u64>>,
}

impl UploadWatcher for Seen {
    fn opened(&self, reader: Arc<dyn UploadReader>) {
        *self.reader.lock().unwrap() = Some(reader);
    }
    fn written(&self) -> WriteObserver {
        let sizes = self.sizes.clone();
        Arc::new(move |size, _| sizes.lock().unwrap().push(size))
    }
    fn verified(&self, size: u64) {
        *self.verified.lock().unwrap() = Some(size);
    }
}

async fn watched_uploads_are_readable_while_written(b: Arc<dyn Backend>) {
    let store = Store::new(b.clone());
    let r = repo("suite/watched");
    let data = pseudo_random(3 * 1024 * 1024 + 17, 9);
    let digest = Digest::sha256_of(&data);
    let chunks: Vec<Bytes> = data.chunks(100_000).map(Bytes::copy_from_slice).collect();
    let seen = Seen::default();
    if !b.follows_uploads() {
        // A backend that cannot follow an upload refuses cleanly.
        let result = store
            .put_blob_watched(&r, &digest, stream_of(chunks), &seen)
            .await;
        assert!(result.is_err(), "a watched upload it cannot follow");
        assert_eq!(b.blob_size(&digest).await.unwrap(), None);
        assert!(
            b.upload_list().await.unwrap().is_empty(),
            "upload left behind"
        );
        return;
    }
    let size = store
        .put_blob_watched(&r, &digest, stream_of(chunks), &seen)
        .await
        .expect("watched upload");
    assert_eq!(size, data.len() as u64);
    let sizes = seen.sizes.lock().unwrap().clone();
    assert!(
        sizes.windows(2).all(|w| w[0] < w[1]),
        "sizes go up: {sizes:?}"
    );
    assert_eq!(
        sizes.last(),
        Some(&size),
        "the last report is the whole size"
    );
    assert_eq!(*seen.verified.lock().unwrap(), Some(size));
    assert_eq!(store.blob_size(&r, &digest).await.unwrap(), Some(size));
    // The reader opened on the upload still reads it after the commit.
    let reader = seen.reader.lock().unwrap().clone().expect("opened");
    let tail = reader
        .read_at(size - 17, 100)
        .await
        .expect("read after commit");
    assert_eq!(&tail[..], &data[data.len() - 17..]);

    // A wrong digest: nothing visible, no upload left, never verified.
    let seen = Seen::default();
    let wrong = Digest::sha256_of(b"not these bytes");
    let err = store
        .put_blob_watched(&r, &wrong, stream_of(vec![data.clone()]), &seen)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::DigestMismatch { .. }), "{err}");
    assert_eq!(*seen.verified.lock().unwrap(), None);
    assert_eq!(b.blob_size(&wrong).await.unwrap(), None);
    assert!(
        b.upload_list().await.unwrap().is_empty(),
        "upload left behind"
    );

    // A body that breaks off: the same.
    let seen = Seen::default();
    let broken: ByteStream = Box::pin(futures_util::stream::iter(vec![
        Ok(data.slice(..1000)),
        Err(std::io::Error::other("connection reset")),
    ]));
    let err = store
        .put_blob_watched(&r, &wrong, broken, &seen)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::BodyInterrupted(_)), "{err}");
    assert_eq!(*seen.verified.lock().unwrap(), None);
    assert!(
        b.upload_list().await.unwrap().is_empty(),
        "upload left behind"
    );
}

/// Touching a document refreshes its modification time.
async fn documents_are_touched(b: Arc<dyn Backend>) {
    b.put(
        "suite/touched",
        Bytes::from_static(b"x"),
        Durability::Volatile,
    )
    .await
    .unwrap();
    assert!(b.touch("suite/touched").await.unwrap());
    assert!(!b.touch("suite/absent").await.unwrap());
}
