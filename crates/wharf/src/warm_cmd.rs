//! `wharf warm`: fill a running pull-through cache ahead of time. Every
//! manifest and blob of each listed image is requested through the cache,
//! exactly as a node would pull it, so the serving path is what fills it.
//!
//! Exit codes: 0 every image warmed, 1 some failed (each named on one
//! line; the others were still warmed), 2 bad usage.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use clap::Args;
use futures_util::{stream, StreamExt, TryStreamExt};
use wharf_client::{Client, ClientConfig};
use wharf_oci::{Digest, ParsedManifest, PlatformSpec, Reference, RepositoryName, Target};
use wharf_transfer::{parse_list, parse_sync_file, Request, TagSelection};

use crate::cli::Hint;

const EXIT_USAGE: u8 = 2;
const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct WarmArgs {
    /// The running cache: http://host:port (or host:port; https:// for TLS).
    #[arg(long = "to", value_name = "URL")]
    pub to: String,
    /// Keep only this platform of multi-platform images (os/arch[/variant]); repeatable.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    pub platforms: Vec<String>,
    /// Blobs requested at once.
    #[arg(long, short = 'j', value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// No per-image lines on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// The same input as `wharf sync`: a list of images, a TOML sync file (*.toml), or - for stdin.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
}

/// The cache as a registry: its `host:port` and whether it speaks TLS.
fn cache_host(to: &str) -> Result<(String, bool), String> {
    let to = to.trim().trim_end_matches('/');
    let (https, host) = match (to.strip_prefix("https://"), to.strip_prefix("http://")) {
        (Some(h), _) => (true, h),
        (_, Some(h)) => (false, h),
        _ => (false, to),
    };
    if host.is_empty() || host.contains('/') || format!("{host}/x").parse::<Reference>().is_err() {
        return Err(format!("--to {to:?}: expected http://host:port"));
    }
    Ok((host.to_string(), https))
}

fn read_input(path: &PathBuf) -> Result<String, String> {
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_INPUT_BYTES)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_INPUT_BYTES).read_to_string(&mut text))
    };
    read.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text)
}

struct Usage(String);

fn plan(
    args: &WarmArgs,
) -> Result<(String, bool, Vec<PlatformSpec>, wharf_transfer::Input), Usage> {
    let (host, https) = cache_host(&args.to).map_err(Usage)?;
    let platforms = args
        .platforms
        .iter()
        .map(|p| p.parse::<PlatformSpec>().map_err(|e| Usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if args.jobs == 0 {
        return Err(Usage("--jobs must be at least 1".into()));
    }
    let text = read_input(&args.input).map_err(Usage)?;
    let input = if args.input.extension().is_some_and(|e| e == "toml") {
        parse_sync_file(&text).map_err(|e| Usage(format!("{}: {e}", args.input.display())))?
    } else {
        parse_list(&text)
    };
    Ok((host, https, platforms, input))
}

pub fn run(args: WarmArgs) -> anyhow::Result<ExitCode> {
    let (host, https, platforms, input) = match plan(&args) {
        Ok(p) => p,
        Err(Usage(message)) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let client = Client::new(ClientConfig {
        insecure_hosts: if https {
            Vec::new()
        } else {
            vec![host.clone()]
        },
        https_hosts: if https {
            vec![host.clone()]
        } else {
            Vec::new()
        },
        ..ClientConfig::default()
    })
    .context("cannot set up the HTTP client")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let warmer = Warmer {
        client,
        cache: host,
        platforms,
        jobs: args.jobs,
        quiet: args.quiet,
        seen: Mutex::new(HashSet::new()),
        blobs: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    };
    for note in &input.notes {
        eprintln!("note: {note}");
    }
    let mut failed: Vec<String> = input
        .failures
        .iter()
        .map(|f| format!("{}: {}", f.source, f.error.as_deref().unwrap_or("invalid")))
        .collect();
    let mut warmed = 0;
    runtime.block_on(async {
        for request in &input.requests {
            match warmer.warm(request).await {
                Ok(()) => warmed += 1,
                Err(e) => {
                    let line = format!("{}: {e:#}", request.written);
                    if !args.quiet {
                        eprintln!("failed  {line}");
                    }
                    failed.push(line);
                }
            }
        }
    });
    println!(
        "warmed {warmed} image(s): {} blob(s), {} bytes through {}; {} failed",
        warmer.blobs.load(Ordering::Relaxed),
        warmer.bytes.load(Ordering::Relaxed),
        warmer.cache,
        failed.len()
    );
    for line in &failed {
        println!("failed: {line}");
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(anyhow::anyhow!("{} image(s) could not be warmed", failed.len())).context(Hint(
            "check that the cache's wharf.toml has an [[upstream]] for each registry named, and that the cache can reach it".into(),
        ))
    }
}

struct Warmer {
    client: Client,
    cache: String,
    platforms: Vec<PlatformSpec>,
    jobs: usize,
    quiet: bool,
    /// Blobs already requested in this run: each crosses once.
    seen: Mutex<HashSet<Digest>>,
    blobs: AtomicU64,
    bytes: AtomicU64,
}

impl Warmer {
    /// The image's repository as the cache serves it: `<upstream host>/<path>`.
    fn cached_repository(&self, source: &Reference) -> anyhow::Result<RepositoryName> {
        let host = wharf_oci::name::host_component(source.host())?;
        Ok(source.repository().prefixed(&host)?)
    }

    async fn warm(&self, request: &Request) -> anyhow::Result<()> {
        anyhow::ensure!(
            matches!(request.tags, TagSelection::Given),
            "tag lists and filters need the upstream's tag list, which a cache does not serve; name each tag"
        );
        let repo = self.cached_repository(&request.source)?;
        let platforms = request.platforms.as_ref().unwrap_or(&self.platforms);
        let top = Reference::new(&self.cache, repo.clone(), request.source.target());
        let manifest = self.client.get_manifest(&top).await?;
        let parsed = ParsedManifest::parse(&manifest.bytes, Some(&manifest.media_type))?;
        let mut images = Vec::new();
        if parsed.is_index() {
            for child in &parsed.manifests {
                if wharf_transfer::platform::wanted(platforms, child.platform.as_ref()) {
                    let r = Reference::new(
                        &self.cache,
                        repo.clone(),
                        Target::Digest(child.digest.clone()),
                    );
                    let m = self.client.get_manifest(&r).await?;
                    images.push(ParsedManifest::parse(&m.bytes, Some(&m.media_type))?);
                }
            }
        } else {
            images.push(parsed);
        }
        let blobs: Vec<Digest> = {
            let mut seen = self.seen.lock().expect("seen lock");
            images
                .iter()
                .flat_map(|m| m.required_blobs())
                .map(|d| d.digest.clone())
                .filter(|d| seen.insert(d.clone()))
                .collect()
        };
        let count = blobs.len();
        stream::iter(blobs)
            .map(|d| self.fetch_blob(&repo, d))
            .buffer_unordered(self.jobs)
            .try_collect::<Vec<()>>()
            .await?;
        if !self.quiet {
            eprintln!(
                "warmed  {} ({} manifest(s), {count} new blob(s))",
                request.written,
                images.len()
            );
        }
        Ok(())
    }

    /// Pull one blob through the cache; the client verifies its digest.
    async fn fetch_blob(&self, repo: &RepositoryName, digest: Digest) -> anyhow::Result<()> {
        let mut body = self.client.get_blob(&self.cache, repo, &digest).await?;
        while let Some(chunk) = body.next().await {
            self.bytes.fetch_add(chunk?.len() as u64, Ordering::Relaxed);
        }
        self.blobs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_addresses() {
        assert_eq!(
            cache_host("http://cache:5000").unwrap(),
            ("cache:5000".into(), false)
        );
        assert_eq!(
            cache_host("https://cache:5000/").unwrap(),
            ("cache:5000".into(), true)
        );
        assert_eq!(
            cache_host("127.0.0.1:5000").unwrap(),
            ("127.0.0.1:5000".into(), false)
        );
        assert!(cache_host("http://cache:5000/v2").is_err());
        assert!(cache_host("").is_err());
    }
}
