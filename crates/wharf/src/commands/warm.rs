//! `wharf warm`: fill a running pull-through cache ahead of time. Every
//! manifest and blob of each listed image is requested through the cache,
//! exactly as a node would pull it, so the serving path is what fills it.
//!
//! Exit codes: 0 every image warmed, 1 some failed (each named on one
//! line; the others were still warmed), 2 bad usage.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use clap::Args;
use futures_util::{stream, StreamExt, TryStreamExt};
use wharf_client::{Client, ClientConfig};
use wharf_oci::{Digest, ParsedManifest, PlatformSpec, Reference, RepositoryName, Target};
use wharf_transfer::{Request, TagSelection};

use crate::commands::{read_image_list, runtime, Work};
use crate::exit::Hint;
use crate::flags::{Jobs, Platforms, Quiet};
use crate::output;

#[derive(Debug, Args)]
pub struct WarmArgs {
    /// The running cache: http://host:port (or host:port; https:// for TLS).
    #[arg(long = "to", value_name = "URL", value_parser = cache_host)]
    pub to: CacheAddress,
    #[command(flatten)]
    pub platforms: Platforms,
    #[command(flatten)]
    pub jobs: Jobs,
    #[command(flatten)]
    pub quiet: Quiet,
    /// The same input as `wharf sync`: a list of images, a TOML sync file (*.toml), or - for stdin.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
}

/// The cache as a registry: its `host:port` and whether it speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheAddress {
    host: String,
    https: bool,
}

fn cache_host(to: &str) -> Result<CacheAddress, String> {
    let to = to.trim().trim_end_matches('/');
    let (https, host) = match (to.strip_prefix("https://"), to.strip_prefix("http://")) {
        (Some(h), _) => (true, h),
        (_, Some(h)) => (false, h),
        _ => (false, to),
    };
    if host.is_empty() || host.contains('/') || format!("{host}/x").parse::<Reference>().is_err() {
        return Err(format!("{to:?}: expected http://host:port"));
    }
    Ok(CacheAddress {
        host: host.to_string(),
        https,
    })
}

pub fn run(args: WarmArgs) -> anyhow::Result<ExitCode> {
    let input = read_image_list(&args.input)?;
    let CacheAddress { host, https } = args.to.clone();
    let (insecure_hosts, https_hosts) = if https {
        (Vec::new(), vec![host.clone()])
    } else {
        (vec![host.clone()], Vec::new())
    };
    let client = Client::new(ClientConfig {
        insecure_hosts,
        https_hosts,
        ..ClientConfig::default()
    })
    .context("cannot set up the HTTP client")?;
    let warmer = Warmer {
        client,
        cache: host,
        platforms: args.platforms.selected(),
        jobs: args.jobs.jobs,
        quiet: args.quiet.quiet,
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
    runtime(Work::Transfer)?.block_on(async {
        for request in &input.requests {
            match warmer.warm(request).await {
                Ok(()) => warmed += 1,
                Err(e) => {
                    let line = format!("{}: {e:#}", request.written);
                    if !args.quiet.quiet {
                        eprintln!("failed  {line}");
                    }
                    failed.push(line);
                }
            }
        }
    });
    output::line(format_args!(
        "warmed {warmed} image(s): {} blob(s), {} bytes through {}; {} failed",
        warmer.blobs.load(Ordering::Relaxed),
        warmer.bytes.load(Ordering::Relaxed),
        warmer.cache,
        failed.len()
    ))?;
    for line in &failed {
        output::line(format_args!("failed: {line}"))?;
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
        let at = |host: &str, https| CacheAddress {
            host: host.into(),
            https,
        };
        assert_eq!(
            cache_host("http://cache:5000").unwrap(),
            at("cache:5000", false)
        );
        assert_eq!(
            cache_host("https://cache:5000/").unwrap(),
            at("cache:5000", true)
        );
        assert_eq!(
            cache_host("127.0.0.1:5000").unwrap(),
            at("127.0.0.1:5000", false)
        );
        assert!(cache_host("http://cache:5000/v2").is_err());
        assert!(cache_host("").is_err());
    }
}
