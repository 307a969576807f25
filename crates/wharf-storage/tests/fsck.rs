//! fsck finds a bit-flipped blob, a dangling tag and a lost layer, and
//! repair fixes what can be fixed without touching good content.

use bytes::Bytes;
use wharf_oci::{media_type, Digest, RepositoryName, Target};
use wharf_storage::testsuite::stream_of;
use wharf_storage::{ManifestPutOptions, Store};

async fn push(store: &Store, repo: &RepositoryName, data: &'static [u8]) -> Digest {
    let d = Digest::sha256_of(data);
    store
        .put_blob(repo, &d, stream_of(vec![Bytes::from_static(data)]))
        .await
        .unwrap();
    d
}

fn blob_path(root: &std::path::Path, d: &Digest) -> std::path::PathBuf {
    root.join("blobs")
        .join("sha256")
        .join(&d.hex()[..2])
        .join(d.hex())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_and_repairs_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_fs(dir.path()).unwrap();
    let repo: RepositoryName = "fsck/app".parse().unwrap();
    let config = push(&store, &repo, b"{}").await;
    let layer = push(&store, &repo, b"layer bytes that will be flipped").await;
    let lost = push(&store, &repo, b"a layer whose file goes missing").await;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config}","size":2}},"layers":[{{"mediaType":"{}","digest":"{layer}","size":32}},{{"mediaType":"{}","digest":"{lost}","size":31}}]}}"#,
        media_type::OCI_MANIFEST,
        media_type::OCI_CONFIG,
        media_type::OCI_LAYER_GZIP,
        media_type::OCI_LAYER_GZIP
    );
    store
        .manifest_put(
            &repo,
            &Target::Tag("v1".parse().unwrap()),
            Bytes::from(manifest),
            None,
            &ManifestPutOptions::default(),
        )
        .await
        .unwrap();
    let clean = store.fsck(false).await.unwrap();
    assert!(clean.is_clean(), "{:?}", clean.problems);
    assert_eq!(clean.blobs_checked, 4);
    assert_eq!((clean.tags_checked, clean.manifests_checked), (1, 1));

    // Damage: one flipped bit, one lost file, one tag pointing at nothing.
    let flipped = blob_path(dir.path(), &layer);
    let mut bytes = std::fs::read(&flipped).unwrap();
    bytes[3] ^= 0x01;
    std::fs::write(&flipped, bytes).unwrap();
    std::fs::remove_file(blob_path(dir.path(), &lost)).unwrap();
    let nowhere = Digest::sha256_of(b"never pushed");
    std::fs::write(
        dir.path()
            .join("repositories/fsck/app/_manifests/tags/ghost"),
        nowhere.to_string(),
    )
    .unwrap();

    let found = store.fsck(false).await.unwrap();
    let kinds = |r: &wharf_storage::FsckReport| {
        let mut k: Vec<&str> = r.problems.iter().map(|p| p.kind).collect();
        k.sort();
        k
    };
    assert_eq!(
        kinds(&found),
        vec![
            "broken-link",
            "corrupt-blob",
            "dangling-tag",
            "missing-reference"
        ],
        "{:#?}",
        found.problems
    );
    assert!(found.problems.iter().all(|p| !p.repaired));
    assert!(flipped.exists(), "a check without --repair changes nothing");

    let repaired = store.fsck(true).await.unwrap();
    // Quarantining the flipped layer also breaks its link and the
    // manifest's reference to it, and the same pass says so.
    assert_eq!(
        kinds(&repaired),
        vec![
            "broken-link",
            "broken-link",
            "corrupt-blob",
            "dangling-tag",
            "missing-reference",
            "missing-reference"
        ]
    );
    assert!(!flipped.exists(), "corrupt blob moved out of the store");
    assert!(dir
        .path()
        .join("quarantine/sha256")
        .join(layer.hex())
        .exists());
    assert!(!dir
        .path()
        .join("repositories/fsck/app/_manifests/tags/ghost")
        .exists());

    // What repair cannot fix (content that is gone) is still reported, and
    // the good tag still serves its manifest.
    let after = store.fsck(false).await.unwrap();
    assert!(
        after.problems.iter().all(|p| p.kind == "missing-reference"),
        "{:#?}",
        after.problems
    );
    assert_eq!(
        after.problems.len(),
        2,
        "the flipped and the lost layer are now missing"
    );
    store
        .manifest_get(&repo, &Target::Tag("v1".parse().unwrap()))
        .await
        .unwrap();
}
