//! `wharf serve` under a crowd of bad clients, all on loopback: thousands of
//! connections that say nothing plus hundreds of uploads crawling along at
//! a few KiB/s, while a normal client pushes and pulls an image. The normal
//! client must succeed in reasonable time, and the server's threads and
//! memory must stay bounded (`/proc/PID/status`).
//!
//! `scripts/bench-slowloris.sh` runs this test with other numbers and
//! prints the figures (`WHARF_LOAD_IDLE`, `WHARF_LOAD_SLOW`).

mod common;

use common::server::Wharf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wharf_testkit::{sha256_digest, wait_for};

use common::api::{push_image, Api};
use common::net;
use tokio::io::AsyncWriteExt;

/// Bytes a slow upload sends each step, and how often: 16 KiB/s, well above
/// the minimum rate (1 KiB/s), far below what a LAN client does.
const SLOW_STEP: usize = 4096;
const SLOW_EVERY: Duration = Duration::from_millis(250);
/// What the server may use under this load.
const MAX_THREADS: usize = 64;
const MAX_RSS_KIB: usize = 512 * 1024;
/// How long the normal client's push and pull may take under this load.
const NORMAL_CLIENT_BOUND: Duration = Duration::from_secs(60);

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The server's figures at one moment.
struct Sample {
    threads: usize,
    rss_kib: usize,
    open_files: usize,
}

impl Sample {
    fn of(pid: u32) -> Sample {
        Sample {
            threads: net::threads(pid),
            rss_kib: net::rss_kib(pid),
            open_files: net::open_files(pid),
        }
    }
}

#[test]
fn idle_connections_and_slow_uploads_do_not_stop_a_normal_client() {
    let idle = knob("WHARF_LOAD_IDLE", 2000);
    let slow = knob("WHARF_LOAD_SLOW", 200);
    let files = net::raise_open_file_limit();
    assert!(
        files as usize > idle + slow + 256,
        "this test holds {} sockets but may open only {files} files; raise the hard limit (ulimit -Hn)",
        idle + slow
    );
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start(dir.path());
    let pid = wharf.pid();
    let api = Api::new(&wharf.url());
    let at_rest = Sample::of(pid);

    let silent: Vec<_> = (0..idle).map(|_| net::connect(wharf.port())).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let uploads: Vec<_> = (0..slow)
        .map(|i| {
            let location = api.start_upload("slow").unwrap();
            let path = location.trim_start_matches(&wharf.url()).to_string();
            runtime.spawn(slow_upload(wharf.port(), path, stop.clone(), i))
        })
        .collect();
    let crowd = idle + slow;
    let accepted = wait_for(Duration::from_secs(60), || {
        (net::open_files(pid) >= at_rest.open_files + crowd).then_some(())
    });
    assert!(
        accepted.is_some(),
        "the server did not accept all {crowd} connections"
    );

    let started = Instant::now();
    let layer: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
    let manifest = push_image(&api, "normal", "v1", b"{\"load\":true}", &[&layer])
        .expect("a normal push under load");
    let pushed = started.elapsed();
    let fetched = api
        .manifest("normal", "v1")
        .expect("a normal manifest pull under load");
    assert_eq!(fetched.digest, manifest);
    assert_eq!(api.blob("normal", &sha256_digest(&layer)).unwrap(), layer);
    let served = started.elapsed();
    let loaded = Sample::of(pid);

    stop.store(true, Ordering::Relaxed);
    let failed_uploads = runtime
        .block_on(futures_util::future::join_all(uploads))
        .into_iter()
        .filter(|r| !matches!(r, Ok(Ok(()))))
        .count();
    drop(silent);
    eprintln!(
        "load: {idle} idle connections + {slow} slow uploads; normal push {:.2} s, push+pull {:.2} s; \
         server threads {} (at rest {}), RSS {} MiB (at rest {} MiB), open files {}; \
         slow uploads cut off: {failed_uploads}",
        pushed.as_secs_f64(),
        served.as_secs_f64(),
        loaded.threads,
        at_rest.threads,
        loaded.rss_kib / 1024,
        at_rest.rss_kib / 1024,
        loaded.open_files,
    );
    assert!(
        served < NORMAL_CLIENT_BOUND,
        "push and pull took {served:?}"
    );
    assert!(
        loaded.threads < MAX_THREADS,
        "{} threads under load",
        loaded.threads
    );
    assert!(
        loaded.rss_kib < MAX_RSS_KIB,
        "{} KiB resident under load",
        loaded.rss_kib
    );
    assert_eq!(failed_uploads, 0, "slow but steady uploads were cut off");
}

/// A PATCH announcing 64 MiB and sending [`SLOW_STEP`] bytes every
/// [`SLOW_EVERY`] until `stop`; an error if the server cut it off.
async fn slow_upload(
    port: u16,
    path: String,
    stop: Arc<AtomicBool>,
    n: usize,
) -> std::io::Result<()> {
    // Spread the starts, so the crowd arrives over a second, not at once.
    tokio::time::sleep(SLOW_EVERY * (n % 4) as u32).await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        64 << 20
    );
    conn.write_all(head.as_bytes()).await?;
    let step = vec![5u8; SLOW_STEP];
    while !stop.load(Ordering::Relaxed) {
        conn.write_all(&step).await?;
        tokio::time::sleep(SLOW_EVERY).await;
    }
    Ok(())
}
