//! Writer and reader together: what is written reads back, byte for byte;
//! damaged bundles are refused before anything is handed out.

use std::io::Write;
use std::path::{Path, PathBuf};

use wharf_bundle::format::{blob_path, OmittedBlob};
use wharf_bundle::{
    index_names, Bundle, BundleError, BundleWriter, DockerImage, Format, ImageRecord,
};
use wharf_oci::{media_type, Descriptor, Digest, Reference};
use wharf_testkit::image::{seeded_image, Artifact, Format as ImageFormat};

fn descriptor(media: &str, bytes: &[u8]) -> Descriptor {
    Descriptor::new(media, Digest::sha256_of(bytes), bytes.len() as u64)
}

/// Two images, `a` and `b`, sharing one 300 kB layer.
fn bundle_images() -> Vec<(Reference, Artifact)> {
    let shared = [(1, 300_000)];
    let image = |seed| seeded_image(ImageFormat::Oci, "linux/amd64", seed, &shared);
    vec![
        ("example.com/team/a:v1".parse().unwrap(), image(1)),
        ("example.com/team/b:v2".parse().unwrap(), image(2)),
    ]
}

/// The images of [`bundle_images`], written as a bundle to `path`.
fn write_bundle(path: &Path, compress: bool, skip: &[Digest]) -> Vec<(Reference, Artifact)> {
    let images = bundle_images();
    let file = std::fs::File::create(path).unwrap();
    let out: Box<dyn Write> = if compress {
        Box::new(
            zstd::stream::write::Encoder::new(file, 3)
                .unwrap()
                .auto_finish(),
        )
    } else {
        Box::new(file)
    };
    let mut writer = BundleWriter::new(out).unwrap();
    let mut records = Vec::new();
    let mut omitted = Vec::new();
    for (name, img) in &images {
        for (bytes, leaf) in [
            (&img.config().bytes, true),
            (&img.layer().bytes, true),
            (&img.manifest, false),
        ] {
            let d = Digest::sha256_of(bytes);
            if leaf && skip.contains(&d) {
                omitted.push(OmittedBlob {
                    digest: d,
                    size: bytes.len() as u64,
                });
                continue;
            }
            writer.add_blob(&d, bytes.len() as u64, &bytes[..]).unwrap();
        }
        records.push(ImageRecord {
            name: name.clone(),
            manifest: descriptor(media_type::OCI_MANIFEST, &img.manifest),
            docker: Some(DockerImage {
                config: img.config().digest(),
                layers: vec![img.layer().digest()],
            }),
        });
    }
    let base = (!skip.is_empty()).then(|| "base.tar".to_string());
    let out = writer.finish(&records, omitted, base).unwrap();
    drop(out);
    images
}

fn temp(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

fn read_blob(bundle: &Bundle, d: &Digest) -> Vec<u8> {
    let loc = bundle.blob(d).expect("blob present");
    let mut buf = vec![0; loc.size as usize];
    bundle.read_at(&mut buf, loc.offset).unwrap();
    buf
}

#[test]
fn a_bundle_reads_back_byte_for_byte() {
    for compress in [false, true] {
        let (_dir, path) = temp("b.tar");
        let images = write_bundle(&path, compress, &[]);
        let bundle = Bundle::open(&path, None).unwrap();
        assert_eq!(bundle.format(), &Format::Wharf(1));
        let names: Vec<String> = bundle.images().iter().map(|i| i.name.to_string()).collect();
        assert_eq!(names, ["example.com/team/a:v1", "example.com/team/b:v2"]);
        for (img, (_, written)) in bundle.images().iter().zip(&images) {
            assert_eq!(img.manifest.digest, Digest::sha256_of(&written.manifest));
            assert_eq!(read_blob(&bundle, &img.manifest.digest), written.manifest);
            assert_eq!(
                read_blob(&bundle, &written.layer().digest()),
                written.layer().bytes
            );
        }
        // The shared layer is stored once: config a + config b + layer + 2 manifests.
        let expected: u64 = images[0].1.layer().bytes.len() as u64
            + images
                .iter()
                .map(|(_, i)| (i.config().bytes.len() + i.manifest.len()) as u64)
                .sum::<u64>();
        assert_eq!(bundle.content_bytes(), expected);
    }
}

#[test]
fn the_tar_has_what_ctr_podman_and_docker_read() {
    let (_dir, path) = temp("b.tar");
    write_bundle(&path, false, &[]);
    let mut archive = tar::Archive::new(std::fs::File::open(&path).unwrap());
    let mut names = Vec::new();
    let mut index = String::new();
    let mut docker = String::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().to_string();
        use std::io::Read;
        if name == "index.json" {
            entry.read_to_string(&mut index).unwrap();
        } else if name == "manifest.json" {
            entry.read_to_string(&mut docker).unwrap();
        }
        names.push(name);
    }
    assert_eq!(names.first().map(String::as_str), Some("wharf-bundle"));
    assert_eq!(names.last().map(String::as_str), Some("wharf-bundle.json"));
    assert!(names.contains(&"oci-layout".to_string()));
    let blob_count = names.iter().filter(|n| n.starts_with("blobs/")).count();
    assert_eq!(
        blob_count, 5,
        "2 configs, 1 shared layer, 2 manifests: {names:?}"
    );
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    let first = &index["manifests"][0]["annotations"];
    assert_eq!(first["io.containerd.image.name"], "example.com/team/a:v1");
    assert_eq!(first["org.opencontainers.image.ref.name"], "v1");
    // Each image is listed again by digest: containerd's importer creates
    // the `repo@sha256:` record the CRI resolves digest pins through.
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "two names per image: {index:#}");
    let pinned = &entries[1];
    let digest = pinned["digest"].as_str().unwrap();
    assert_eq!(digest, entries[0]["digest"].as_str().unwrap());
    assert_eq!(
        pinned["annotations"]["io.containerd.image.name"],
        format!("example.com/team/a@{digest}")
    );
    assert!(
        pinned["annotations"]
            .get("org.opencontainers.image.ref.name")
            .is_none(),
        "a digest entry has no tag: {pinned}"
    );
    let docker: serde_json::Value = serde_json::from_str(&docker).unwrap();
    assert_eq!(docker[1]["RepoTags"][0], "example.com/team/b:v2");
    assert!(docker[1]["Config"]
        .as_str()
        .unwrap()
        .starts_with("blobs/sha256/"));
}

#[test]
fn two_images_under_one_name_are_refused_and_nothing_is_named_twice() {
    let images = bundle_images();
    let (a, b) = (images[0].1.clone(), images[1].1.clone());
    let record = |name: &str, img: &Artifact| ImageRecord {
        name: name.parse().unwrap(),
        manifest: descriptor(media_type::OCI_MANIFEST, &img.manifest),
        docker: None,
    };
    let same_twice = [
        record("example.com/team/a:v1", &a),
        record("example.com/team/a:v1", &a),
        record("example.com/team/a:v2", &a),
    ];
    let names: Vec<String> = index_names(&same_twice)
        .unwrap()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let pinned = format!("example.com/team/a@{}", Digest::sha256_of(&a.manifest));
    assert_eq!(
        names,
        [
            "example.com/team/a:v1",
            pinned.as_str(),
            "example.com/team/a:v2"
        ]
    );
    let collide = [
        record("example.com/team/a:v1", &a),
        record("example.com/team/a:v1", &b),
    ];
    let err = index_names(&collide).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("example.com/team/a:v1"), "{message}");
    assert!(
        message.contains(&Digest::sha256_of(&b.manifest).to_string()),
        "{message}"
    );
    // The writer refuses such an index too, so no bundle names it wrongly.
    let writer = BundleWriter::new(Vec::new()).unwrap();
    assert!(matches!(
        writer.finish(&collide, Vec::new(), None),
        Err(wharf_bundle::WriteError::Names(_))
    ));
}

#[test]
fn a_truncated_bundle_is_refused() {
    let (_dir, path) = temp("b.tar");
    write_bundle(&path, false, &[]);
    let len = std::fs::metadata(&path).unwrap().len();
    for cut in [len / 2, len - 2048, 1024 + 512] {
        let data = std::fs::read(&path).unwrap();
        let short = path.with_file_name(format!("short-{cut}.tar"));
        std::fs::write(&short, &data[..cut as usize]).unwrap();
        let err = Bundle::open(&short, None).unwrap_err();
        assert!(
            matches!(err, BundleError::Truncated { .. }),
            "cut at {cut}: {err}"
        );
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

#[test]
fn a_truncated_compressed_bundle_is_refused() {
    let (_dir, path) = temp("b.tar.zst");
    write_bundle(&path, true, &[]);
    let data = std::fs::read(&path).unwrap();
    std::fs::write(&path, &data[..data.len() * 2 / 3]).unwrap();
    let err = Bundle::open(&path, None).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::Truncated { .. } | BundleError::Corrupt { .. }
        ),
        "{err}"
    );
}

#[test]
fn a_flipped_bit_is_found() {
    let (_dir, path) = temp("b.tar");
    let images = write_bundle(&path, false, &[]);
    let clean = std::fs::read(&path).unwrap();
    // A byte inside the shared layer's data, one in a header, one in index.json.
    let layer_at = find(&clean, &images[0].1.layer().bytes[..64]) + 100;
    let index_at = find(&clean, b"io.containerd.image.name") + 3;
    for at in [layer_at, 3, index_at] {
        let mut data = clean.clone();
        data[at] ^= 0x10;
        std::fs::write(&path, &data).unwrap();
        let err = Bundle::open(&path, None).unwrap_err();
        assert!(
            matches!(err, BundleError::Corrupt { .. }),
            "flip at {at}: {err}"
        );
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

#[test]
fn a_newer_format_is_refused_with_a_hint() {
    let (_dir, path) = temp("b.tar");
    write_bundle(&path, false, &[]);
    let mut data = std::fs::read(&path).unwrap();
    let at = find(&data, br#""version":1"#) + br#""version":"#.len();
    data[at] = b'9';
    // Keep the tar header checksum right: the marker's content changed, not its header.
    std::fs::write(&path, &data).unwrap();
    let err = Bundle::open(&path, None).unwrap_err();
    assert!(
        matches!(err, BundleError::NewerFormat { found: 9, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade wharf"), "{err}");
}

#[test]
fn a_missing_blob_is_named() {
    let (_dir, path) = temp("b.tar");
    write_bundle(&path, false, &[]);
    // Rebuild the tar without the first image's config.
    let victim = {
        let bundle = Bundle::open(&path, None).unwrap();
        let m = bundle
            .manifest(&bundle.images()[0].manifest.digest)
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        v["config"]["digest"].as_str().unwrap().to_string()
    };
    let victim_path = format!("blobs/sha256/{}", victim.trim_start_matches("sha256:"));
    let stripped = path.with_file_name("stripped.tar");
    copy_tar_without(&path, &stripped, &victim_path);
    let err = Bundle::open(&stripped, None).unwrap_err();
    match &err {
        BundleError::MissingBlob { digest, .. } => assert_eq!(digest.to_string(), victim),
        other => panic!("expected a missing blob, got {other}"),
    }
}

fn copy_tar_without(from: &Path, to: &Path, skip: &str) {
    let mut archive = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut builder = tar::Builder::new(std::fs::File::create(to).unwrap());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().to_string();
        if name == skip {
            continue;
        }
        let mut header = entry.header().clone();
        builder.append_data(&mut header, &name, entry).unwrap();
    }
    builder.finish().unwrap();
}

#[test]
fn a_delta_leaves_out_what_its_base_has_and_says_so() {
    let (_dir, path) = temp("delta.tar");
    let shared = bundle_images()[0].1.layer().digest();
    write_bundle(&path, false, std::slice::from_ref(&shared));
    let bundle = Bundle::open(&path, None).unwrap();
    assert!(bundle.blob(&shared).is_none());
    assert!(bundle.is_omitted(&shared));
    assert_eq!(bundle.base(), Some("base.tar"));
    assert_eq!(
        bundle.images().len(),
        2,
        "the delta still names every image"
    );
    assert!(bundle.known_blobs().any(|d| *d == shared));
    let mut archive = tar::Archive::new(std::fs::File::open(&path).unwrap());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
        .collect();
    assert!(!names.contains(&blob_path(&shared)), "{names:?}");
}

#[test]
fn a_docker_archive_gets_manifests_made_for_it() {
    let (_dir, path) = temp("docker.tar");
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = vec![7u8; 4096];
    let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let add = |b: &mut tar::Builder<std::fs::File>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&mut builder, "abc/layer.tar", &layer);
    add(&mut builder, "cfg.json", config);
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    builder
        .append_link(&mut link, "def/layer.tar", "../abc/layer.tar")
        .unwrap();
    add(
        &mut builder,
        "manifest.json",
        br#"[{"Config":"cfg.json","RepoTags":["alpine:3.21","localhost/mine:v1"],"Layers":["def/layer.tar"]}]"#,
    );
    builder.finish().unwrap();
    drop(builder);
    let bundle = Bundle::open(&path, None).unwrap();
    assert_eq!(bundle.format(), &Format::DockerArchive);
    let names: Vec<String> = bundle.images().iter().map(|i| i.name.to_string()).collect();
    assert_eq!(
        names,
        ["docker.io/library/alpine:3.21", "localhost/mine:v1"]
    );
    let top = &bundle.images()[0].manifest;
    let manifest = bundle.manifest(&top.digest).unwrap().unwrap();
    assert_eq!(Digest::sha256_of(&manifest), top.digest);
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(
        parsed["layers"][0]["digest"],
        Digest::sha256_of(&layer).to_string()
    );
    assert_eq!(parsed["layers"][0]["mediaType"], media_type::OCI_LAYER_TAR);
    assert_eq!(
        read_blob(&bundle, &Digest::sha256_of(config)),
        config.to_vec()
    );
}

#[test]
fn a_foreign_oci_archive_with_a_wrong_blob_is_refused() {
    let (_dir, path) = temp("oci.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let data = b"not what the name says";
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    let name = blob_path(&Digest::sha256_of(b"something else"));
    builder.append_data(&mut h, &name, &data[..]).unwrap();
    builder.finish().unwrap();
    drop(builder);
    let err = Bundle::open(&path, None).unwrap_err();
    assert!(matches!(err, BundleError::Corrupt { .. }), "{err}");
}

/// Reads as an error: a download whose digest did not match.
struct Mismatch;

impl std::io::Read for Mismatch {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other(
            "the content hashes to something else",
        ))
    }
}

#[test]
fn a_source_that_checks_its_digest_is_trusted_only_to_its_end() {
    let (_dir, path) = temp("verified.tar");
    let img = seeded_image(ImageFormat::Oci, "linux/amd64", 3, &[(3, 11)]);
    let mut writer = BundleWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
    for bytes in [&img.config().bytes, &img.layer().bytes, &img.manifest] {
        let d = Digest::sha256_of(bytes);
        writer
            .add_verified_blob(&d, bytes.len() as u64, &bytes[..])
            .unwrap();
    }
    let name: Reference = "example.com/team/v:v1".parse().unwrap();
    let record = ImageRecord {
        name: name.clone(),
        manifest: descriptor(media_type::OCI_MANIFEST, &img.manifest),
        docker: None,
    };
    drop(writer.finish(&[record], Vec::new(), None).unwrap());
    // The checksum manifest took the digests as the sha256: the reader,
    // which hashes everything, agrees.
    let bundle = Bundle::open(&path, None).unwrap();
    assert_eq!(bundle.images()[0].name, name);
    assert_eq!(read_blob(&bundle, &img.layer().digest()), img.layer().bytes);

    let other = temp("other.tar");
    let mut writer = BundleWriter::new(std::fs::File::create(&other.1).unwrap()).unwrap();
    let layer = b"some layer".to_vec();
    let d = Digest::sha256_of(&layer);
    let failed = writer
        .add_verified_blob(
            &d,
            layer.len() as u64,
            std::io::Read::chain(&layer[..], Mismatch),
        )
        .unwrap_err();
    assert!(
        failed.to_string().contains("hashes to something else"),
        "{failed}"
    );

    let longer = [&layer[..], b"!"].concat();
    let d = Digest::sha256_of(b"another layer");
    let failed = writer
        .add_verified_blob(&d, layer.len() as u64, &longer[..])
        .unwrap_err();
    assert!(failed.to_string().contains("more than"), "{failed}");
}
