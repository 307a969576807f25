//! `wharf serve`.

use std::io;
use std::process::ExitCode;

use std::path::PathBuf;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::commands::{runtime, Work};
use crate::exit::Hint;
use crate::settings::{self as config, Access, ServeFlags};

#[derive(Debug, clap::Args)]
#[command(after_long_help = config::SECTIONS_HELP)]
pub struct ServeArgs {
    /// TOML configuration file (README: "Configuration file" lists every section and key); flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: ServeFlags,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    keep_freed_buffers();
    let file = match &args.config {
        Some(path) => config::load(path)?,
        None => config::FileConfig::default(),
    };
    let settings = config::merge(&args.flags, file)?;
    let _log_guard = crate::logging::init(settings.log_format);
    runtime(Work::Serve)?.block_on(serve(settings))?;
    Ok(ExitCode::SUCCESS)
}

/// Let the allocator keep freed blob buffers for the next ones. A blob in
/// flight is cut into chunks of a few hundred KiB; by default glibc maps
/// each chunk of that size freshly and returns it to the kernel when freed,
/// and gives back the top of its heaps when 128 KiB of it is free, so a
/// 512 MiB cold pull through the cache took 22,000–50,000 page faults, each
/// handing over a zeroed page. Serving chunks from the heaps (up to 32 MiB)
/// and trimming only beyond 64 MiB free cut that to a few hundred after the
/// first pull, and the cache's CPU per pull by about a tenth
/// (BENCHMARKS.md), for a resident size that stays bounded (≈50 MiB instead
/// of ≈40 MiB after three 512 MiB pulls).
#[allow(unsafe_code)]
fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters, which glibc
    // guards with its own locks; no memory of ours is involved.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).await.map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::AddrInUse => "another process already listens there; stop it or choose another address with --listen",
            io::ErrorKind::PermissionDenied => "ports below 1024 need privileges; choose a higher port with --listen",
            _ => "check the address given to --listen (HOST:PORT)",
        };
        anyhow::Error::new(e)
            .context(format!("cannot listen on {listen}"))
            .context(Hint(hint.into()))
    })
}

/// Open files the server needs besides its connections: storage files
/// being read and written, the listener, logs.
const FILES_BESIDES_CONNECTIONS: u64 = 1024;

/// Raise the soft limit on open files to the hard one (as Go programs do at
/// start): each connection is one, and the usual soft limit of 1024 would
/// run out long before `max_connections`. Warns when even the hard limit
/// is too low, since accepting then fails before the connection limit is
/// reached.
fn raise_open_file_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "cannot raise the open-file limit");
        }
    }
    let wanted = max_connections as u64 + FILES_BESIDES_CONNECTIONS;
    if let Some(current) = getrlimit(Resource::Nofile).current {
        if current < wanted {
            tracing::warn!(
                open_files = current,
                max_connections,
                "the open-file limit is below max_connections + {FILES_BESIDES_CONNECTIONS}: \
                 raise it (LimitNOFILE= in the systemd unit, ulimit -n) or lower [server] max_connections"
            );
        }
    }
}

async fn serve(mut settings: config::ServeSettings) -> anyhow::Result<()> {
    raise_open_file_limit(settings.registry.limits.max_connections);
    let where_ = settings.storage.describe();
    let store = settings
        .storage
        .open(Access::Serve {
            wait: settings.wait_for_storage,
        })
        .await?;
    settings.registry.auth = settings.auth.take().map(|a| a.layer()).transpose()?;
    // Certificates are checked before the port is taken, so a bad pair
    // fails start-up instead of every handshake.
    let tls = settings.tls.as_ref().map(tls_acceptor).transpose()?;
    let mut registry_config = settings.registry;
    if let Some(files) = &settings.tls {
        // The names the certificate is issued for are names of this registry.
        let names = wharf_tls::certificate_names(&files.cert)
            .context("cannot read the names of the TLS certificate")?;
        registry_config.names.extend(names);
    }
    if !registry_config.names.is_empty() {
        tracing::info!(names = ?registry_config.names, "known by these names: their images are served at their plain path");
    }
    // The handlers are in place before the port is taken: a stop asked for
    // once the registry answers is always a graceful one.
    let shutdown = shutdown_signal()?;
    let listener = bind(&settings.listen).await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, storage = %where_, "wharf registry listening on {scheme}://{addr}");
    match &registry_config.auth {
        Some(auth) => tracing::info!(?auth, "authentication required"),
        None => {
            tracing::warn!("no [auth] section: anyone who reaches this port may push and delete")
        }
    }
    let registry = match &settings.cache {
        None => wharf_registry::Registry::new(store, registry_config),
        Some(cache) => {
            let metrics = std::sync::Arc::new(wharf_registry::metrics::Metrics::default());
            let upstream = wharf_cache::Cache::new(store.clone(), metrics.clone(), cache)
                .context("cannot set up the pull-through cache")
                .context(Hint(
                    "check the [[upstream]] entries of the configuration file".into(),
                ))?;
            for u in &cache.upstreams {
                tracing::info!(upstream = %u.host, "caching upstream");
            }
            wharf_registry::Registry::with_upstream(
                store,
                registry_config,
                metrics,
                std::sync::Arc::new(upstream),
            )
        }
    };
    tokio::spawn(scan_storage_usage(registry.clone()));
    if let Some(name) = settings.publish_self {
        tokio::spawn(publish_self(registry.clone(), name));
    }
    if let Some((every, options)) = settings.gc {
        tracing::info!(every = ?every, "garbage collection scheduled");
        tokio::spawn(collect_garbage(registry.clone(), every, options));
    }
    let options = wharf_registry::ServeOptions { tls };
    wharf_registry::serve_with(listener, registry, options, shutdown).await?;
    Ok(())
}

/// `--publish-self REF`: store this binary's own image under REF's
/// repository and tag, the image `wharf save --self REF` side-loads (byte
/// for byte when running inside that image), so the registry holds itself
/// and the next version is an ordinary push and pull of a new tag. Runs in
/// the background: serving does not wait for it.
async fn publish_self(registry: wharf_registry::Registry, name: wharf_oci::Reference) {
    match publish_self_image(registry.store(), &name).await {
        Ok(digest) => tracing::info!(image = %name, %digest, "published this binary's own image"),
        Err(e) => {
            tracing::error!(image = %name, error = format!("{e:#}"), "cannot publish this binary's own image; serving goes on without it")
        }
    }
}

async fn publish_self_image(
    store: &wharf_storage::Store,
    name: &wharf_oci::Reference,
) -> anyhow::Result<wharf_oci::Digest> {
    use wharf_oci::{media_type, Digest, Target};
    let dir = tempfile::tempdir().context("cannot create a temp directory")?;
    let build_dir = dir.path().to_path_buf();
    let reference = name.clone();
    let (image, _layer) =
        tokio::task::spawn_blocking(move || crate::self_image::build(&build_dir, reference, &[]))
            .await
            .context("the image build stopped")??;
    let repo = name.repository();
    let digest = Digest::sha256_of(&image.manifest);
    let tag = Target::Tag(name.tag().expect("a self name has a tag").clone());
    if let Ok(stored) = store.manifest_get(repo, &tag).await {
        if stored.digest == digest {
            return Ok(digest);
        }
    }
    let config_digest = Digest::sha256_of(&image.config);
    let config = image.config.clone();
    store
        .put_blob(
            repo,
            &config_digest,
            Box::pin(futures_util::stream::once(async move { Ok(config) })),
        )
        .await
        .context("cannot store the image config")?;
    for (layer, path) in &image.layers {
        if store.blob_size(repo, &layer.digest).await?.is_some() {
            continue;
        }
        store
            .put_blob(repo, &layer.digest, file_stream(path)?)
            .await
            .with_context(|| format!("cannot store the layer {}", layer.digest))?;
    }
    store
        .manifest_put(
            repo,
            &tag,
            image.manifest.clone(),
            Some(media_type::OCI_MANIFEST),
            &wharf_storage::ManifestPutOptions::default(),
        )
        .await
        .context("cannot store the manifest")?;
    Ok(digest)
}

/// A file as a stream of 1 MiB chunks, read on the blocking pool.
fn file_stream(path: &std::path::Path) -> anyhow::Result<wharf_storage::ByteStream> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = std::sync::Arc::new(std::sync::Mutex::new(file));
    let chunks = futures_util::stream::unfold(file, |file| async move {
        let reader = file.clone();
        let chunk = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 1 << 20];
            let n = reader.lock().expect("one reader").read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, io::Error>(buf)
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
        match chunk {
            Ok(buf) if buf.is_empty() => None,
            Ok(buf) => Some((Ok(bytes::Bytes::from(buf)), file)),
            Err(e) => Some((Err(e), file)),
        }
    });
    Ok(Box::pin(chunks))
}

/// Fill the storage-size gauge once at start-up, in the background: a large
/// store takes a while to walk and serving must not wait for it.
async fn scan_storage_usage(registry: wharf_registry::Registry) {
    match registry.store().refresh_storage_usage().await {
        Ok(usage) => tracing::info!(
            blobs = usage.blobs,
            bytes = usage.bytes,
            "storage size counted"
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot count the storage size; /metrics omits it until the next collection")
        }
    }
}

/// `[gc] schedule`: collect every `every`, first one `every` after start-up.
/// A collection that fails is logged and counted; the next one still runs.
async fn collect_garbage(
    registry: wharf_registry::Registry,
    every: std::time::Duration,
    options: wharf_storage::GcOptions,
) {
    let start = tokio::time::Instant::now() + every;
    let mut ticks = tokio::time::interval_at(start, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = std::time::Instant::now();
        match registry.store().gc(&options).await {
            Ok(report) => registry.metrics().gc_finished(&report),
            Err(e) => {
                tracing::error!(error = %e, "garbage collection stopped; nothing referenced was removed");
                registry
                    .metrics()
                    .gc_failed(started.elapsed().as_secs_f64());
            }
        }
    }
}

fn tls_acceptor(files: &config::TlsFiles) -> anyhow::Result<wharf_registry::TlsAcceptor> {
    wharf_tls::acceptor(&files.cert, &files.key).map_err(|e| {
        let hint = match &e {
            wharf_tls::TlsError::KeyMismatch { .. } => {
                "--tls-key must be the key --tls-cert was issued for; `wharf ca issue NAME --out PREFIX` writes a matching PREFIX.crt and PREFIX.key"
            }
            wharf_tls::TlsError::Read { .. } => {
                "check the paths given to --tls-cert and --tls-key (or tls_cert and tls_key in wharf.toml) and that this user may read them"
            }
            _ => {
                "--tls-cert takes a PEM certificate chain (server certificate first), --tls-key its PEM private key; `wharf ca issue` writes both"
            }
        };
        anyhow::Error::new(e)
            .context("cannot set up HTTPS")
            .context(Hint(hint.into()))
    })
}

/// Installs the SIGTERM and SIGINT handlers now and returns a future that
/// resolves on either. (Installing them on the future's first poll left a
/// window after start-up in which SIGTERM still killed the process outright:
/// the accept loop need not poll its shutdown branch before serving.)
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install a SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install a SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
