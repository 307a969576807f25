//! `wharf sync` and `wharf copy` as an operator runs them, between two real
//! `wharf serve` processes: digests kept, a second run moves nothing, one
//! bad line fails alone, and the exit codes say so.

mod common;

use common::server::Wharf;
use std::process::Command;
use wharf_testkit::image::{self, host_arch, Artifact, Format};

use common::api::Api;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

fn push(api: &Api, repo: &str, tag: &str, artifact: &Artifact) {
    for blob in &artifact.blobs {
        api.push_blob_monolithic(repo, &blob.bytes)
            .expect("push blob");
    }
    api.put_manifest(repo, tag, artifact.media_type, &artifact.manifest)
        .expect("push manifest");
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(WHARF).args(args).output().expect("run wharf");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sync_keeps_digests_then_moves_nothing_and_names_the_bad_line() {
    let work = tempfile::tempdir().unwrap();
    let src = Wharf::start(&work.path().join("src"));
    let dst = Wharf::start(&work.path().join("dst"));
    let src_api = Api::new(&src.url());
    let oci = image::image(Format::Oci, "sync-oci", host_arch());
    let docker = image::image(Format::Docker, "sync-docker", host_arch());
    push(&src_api, "library/sync-00", "v1", &oci);
    push(&src_api, "library/sync-01", "v1", &docker);

    let list = work.path().join("images.txt");
    std::fs::write(
        &list,
        format!(
            "# the benchmark's shape\n{s}/library/sync-00:v1\n\n{s}/library/sync-01:v1\n{s}/library/sync-00:v1\n{s}/library/absent:v1\nNOT A REFERENCE\n",
            s = src.host()
        ),
    )
    .unwrap();
    let (s, d) = (src.host(), dst.host());
    let (insecure_s, insecure_d) = (format!("--insecure={s}"), format!("--insecure={d}"));
    let args = [
        "sync",
        "--to",
        &d,
        "--flatten",
        &insecure_s,
        &insecure_d,
        list.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = run(&args);
    assert_eq!(
        code, 1,
        "some images failed, the rest copied:\n{stdout}\n{stderr}"
    );
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("absent"), "the missing tag is named: {all}");
    assert!(
        all.contains("NOT A REFERENCE"),
        "the bad line is named: {all}"
    );

    let dst_api = Api::new(&dst.url());
    for (repo, artifact) in [("library/sync-00", &oci), ("library/sync-01", &docker)] {
        let got = dst_api.manifest(repo, "v1").expect("copied");
        assert_eq!(
            got.digest,
            artifact.digest().to_string(),
            "{repo}: digest kept"
        );
        assert_eq!(
            got.content_type, artifact.media_type,
            "{repo}: media type kept"
        );
    }

    // Only the good lines: a second run copies nothing and succeeds.
    std::fs::write(
        &list,
        format!("{s}/library/sync-00:v1\n{s}/library/sync-01:v1\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&[
        "sync",
        "--to",
        &d,
        "--flatten",
        // The spelling of earlier releases: a host:port after the flag is its value.
        "--insecure",
        &s,
        "--insecure",
        &d,
        "--output",
        "json",
        list.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    let images = report["images"].as_array().expect("images array");
    assert_eq!(images.len(), 2);
    for image in images {
        assert_eq!(
            image["bytes_sent"], 0,
            "nothing moves the second time: {image}"
        );
    }
}

#[test]
fn copy_keeps_the_host_in_the_path_and_bad_usage_exits_2() {
    let work = tempfile::tempdir().unwrap();
    let src = Wharf::start(&work.path().join("src"));
    let dst = Wharf::start(&work.path().join("dst"));
    let artifact = image::image(Format::Docker, "copy", host_arch());
    push(&Api::new(&src.url()), "team/app", "v1", &artifact);
    let source = format!("{}/team/app:v1", src.host());
    let (code, stdout, stderr) = run(&["copy", "--quiet", &source, &dst.host()]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let host_component = src.host().replace(':', "_");
    let got = Api::new(&dst.url())
        .manifest(&format!("{host_component}/team/app"), "v1")
        .expect("copied under the source host");
    assert_eq!(got.digest, artifact.digest().to_string());
    let (code, _, _) = run(&["copy", "--no-such-flag"]);
    assert_eq!(code, 2);
}
