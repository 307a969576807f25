//! `wharf fsck` on a real storage root: clean after pushes, a flipped bit
//! found and moved aside with `--repair`, exit codes that say so.

mod common;

use common::server::Wharf;
use std::process::Command;
use wharf_testkit::digest_hex;
use wharf_testkit::image::{self, host_arch, Format};

use common::api::Api;

fn fsck(root: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["fsck", "--root"])
        .arg(root)
        .args(extra)
        .output()
        .expect("run wharf fsck");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn fsck_finds_a_flipped_bit_and_repair_moves_it_aside() {
    let work = tempfile::tempdir().unwrap();
    let mut wharf = Wharf::start(&work.path().join("wharf"));
    let api = Api::new(&wharf.url());
    let artifact = image::image(Format::Oci, "fsck", host_arch());
    for blob in &artifact.blobs {
        api.push_blob_monolithic("fsck/app", &blob.bytes).unwrap();
    }
    api.put_manifest("fsck/app", "v1", artifact.media_type, &artifact.manifest)
        .unwrap();
    wharf.shutdown();
    let root = wharf.root().to_path_buf();

    let (code, out) = fsck(&root, &[]);
    assert_eq!(code, 0, "clean storage: {out}");
    assert!(out.contains("0 problem(s)"), "{out}");

    let layer = artifact.layers()[0].digest().to_string();
    let hex = digest_hex(&layer);
    let path = root.join("blobs/sha256").join(&hex[..2]).join(hex);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0x80;
    std::fs::write(&path, bytes).unwrap();

    let (code, out) = fsck(&root, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("corrupt-blob: {layer}")), "{out}");
    assert!(path.exists(), "no change without --repair");

    let (code, out) = fsck(&root, &["--repair", "--output", "json"]);
    assert_eq!(code, 1, "problems were found (and repaired): {out}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(doc["version"], 1);
    assert!(!path.exists(), "the corrupt blob left the store");
    assert!(root.join("quarantine/sha256").join(hex).exists());

    let (code, _) = fsck(&root, &["--root-does-not-exist"]);
    assert_eq!(code, 2, "bad usage");
    let (code, out) = fsck(&work.path().join("not-a-root"), &[]);
    assert_eq!(code, 1);
    assert!(out.contains("is not a wharf storage root"), "{out}");
}
