//! The WAN benchmark (`scripts/bench-wan.sh`) in its smoke profile: a tiny
//! image set over a rate-limited, delayed link between two network namespaces
//! the script creates. Not a timed test: it checks that the script still runs
//! end to end with the real tools and produces a complete, well-formed result,
//! and the properties that do not depend on timing (the link is shaped and
//! delayed, every digest arrives, a warm sync moves no blob, wharf's cache
//! fetches each blob once, nothing is left behind).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use wharf_testkit::tools::{require_root, require_tool, run};

use serde_json::Value;

/// What the script runs besides wharf (the Go peers are optional: with
/// `WHARF_BENCH_TOOLS_BIN` set, as `scripts/test.sh` does, they run too).
const TOOLS: [&str; 7] = [
    "ip",
    "tc",
    "python3",
    "curl",
    "jq",
    "skopeo",
    "docker-registry",
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench-wan.sh")
}

fn number(result: &Value, pointer: &str) -> f64 {
    result
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} is missing or not a number in the result"))
}

#[test]
fn smoke_profile_produces_a_complete_result() {
    require_root("the WAN benchmark's network namespaces and tc qdiscs");
    for tool in TOOLS {
        require_tool(tool);
    }
    let work = tempfile::tempdir().expect("temp dir");
    let json = work.path().join("result.json");
    let output = run(
        Command::new("bash")
            .arg(script())
            .arg("smoke")
            .arg(&json)
            .env("WHARF", env!("CARGO_BIN_EXE_wharf"))
            .env("BENCH_DATA", work.path().join("data"))
            .env("BENCH_LOGDIR", work.path().join("logs")),
        "the WAN benchmark's smoke profile",
    );
    let text = std::fs::read_to_string(&json).expect("the script writes its JSON result");
    let result: Value = serde_json::from_str(&text).expect("the result is JSON");
    assert!(
        result.get("errors").is_none(),
        "the run reported errors: {}",
        result["errors"]
    );
    assert!(
        output.stdout.contains("## WAN profile `smoke`"),
        "the Markdown report is missing:\n{}",
        output.stdout
    );

    // The link: shaped to the tbf rate, delayed by at least the claimed RTT.
    let rate = number(&result, "/link/tbf_rate_mbit");
    let capacity = number(&result, "/link/capacity_mbit");
    assert!(
        capacity > 0.0 && capacity <= rate * 1.1,
        "measured {capacity} Mbit/s through a {rate} Mbit/s tbf"
    );
    let delay = number(&result, "/link/delay_rtt_ms");
    let rtt = number(&result, "/link/rtt_ms");
    assert!(rtt >= delay, "RTT {rtt} ms through a {delay} ms delay line");
    assert!(
        number(&result, "/link/new_conn_ms") >= 2.0 * delay,
        "a request on a new connection must pay the handshake's round trip too"
    );

    // Sync: every tool copied every image with its digest, cold over the
    // link; wharf's warm run moved no blob at all.
    let distinct_mib = number(&result, "/set/distinct_mib");
    let tools = result["meta"]["sync_tools"]
        .as_array()
        .expect("meta.sync_tools lists the tools");
    assert!(tools.iter().any(|t| t == "wharf") && tools.iter().any(|t| t == "skopeo"));
    for tool in tools {
        let tool = tool.as_str().expect("tool names are strings");
        assert_eq!(result["sync"][tool]["digests_kept"], "true", "{tool}");
        for phase in ["cold", "warm"] {
            assert!(number(&result, &format!("/sync/{tool}/{phase}_s")) > 0.0);
            number(&result, &format!("/sync/{tool}/{phase}_requests_per_image"));
        }
        let sent = number(
            &result,
            &format!("/sync/{tool}/cold_detail/src/blob_bytes_out"),
        );
        assert!(
            sent / 1048576.0 >= distinct_mib - 0.01,
            "{tool}: {sent} blob bytes crossed the link for a {distinct_mib} MiB set"
        );
        number(&result, &format!("/sync/{tool}/cold_link_util"));
    }
    assert_eq!(
        number(&result, "/sync/wharf/warm_detail/src/blob_bytes_out"),
        0.0
    );
    assert_eq!(
        number(&result, "/sync/wharf/warm_detail/dst/blob_bytes_in"),
        0.0
    );

    // Pull-through: every cache answered, cold and warm; wharf fetched each
    // blob of the concurrently pulled image once.
    for cache in ["wharf", "distribution"] {
        for key in [
            "direct_s",
            "cold_s",
            "cold_ttfb_ms",
            "warm_s",
            "concurrent_s",
        ] {
            assert!(
                number(&result, &format!("/cache/{cache}/{key}")) > 0.0,
                "{cache} {key}"
            );
        }
        assert_eq!(
            number(&result, &format!("/cache/{cache}/concurrent_failed")),
            0.0
        );
    }
    assert_eq!(number(&result, "/cache/wharf/max_gets_per_blob"), 1.0);

    // Nothing left behind: both namespaces (and with them the veth pair) are gone.
    let names = run(
        Command::new("ip").args(["netns", "list"]),
        "listing network namespaces",
    );
    for ns in result["meta"]["namespaces"]
        .as_array()
        .expect("meta.namespaces")
    {
        let ns = ns.as_str().expect("namespace names are strings");
        assert!(
            !names
                .stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns)),
            "namespace {ns} was left behind"
        );
    }
}
