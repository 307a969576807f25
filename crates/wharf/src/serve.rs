//! `wharf serve`.

use std::io;
use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::cli::{Hint, ServeArgs};
use crate::config;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => config::load(path)?,
        None => config::FileConfig::default(),
    };
    let settings = config::merge(&args, file)?;
    let _log_guard = crate::logging::init(settings.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(settings))?;
    Ok(ExitCode::SUCCESS)
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

async fn serve(settings: config::ServeSettings) -> anyhow::Result<()> {
    let store = wharf_storage::Store::open_fs(&settings.root)
        .with_context(|| format!("cannot open storage at {}", settings.root.display()))
        .context(Hint(
            "check that the directory given to --root is writable by this user".into(),
        ))?;
    let listener = bind(&settings.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, root = %settings.root.display(), "wharf registry listening on http://{addr}");
    let registry = match &settings.cache {
        None => wharf_registry::Registry::new(store, settings.registry),
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
                settings.registry,
                metrics,
                std::sync::Arc::new(upstream),
            )
        }
    };
    wharf_registry::serve(listener, registry, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
