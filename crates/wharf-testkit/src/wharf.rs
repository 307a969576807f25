//! The wharf registry served in-process on a loopback port, over a store in
//! a temporary directory of its own (or any store or registry a test builds,
//! such as an S3 store or a pull-through cache).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wharf_registry::{serve, Registry, RegistryConfig};
use wharf_storage::Store;

/// A registry serving until it is dropped or [`WharfRegistry::stop`]ped.
pub struct WharfRegistry {
    /// `127.0.0.1:PORT`, the registry host part of image references.
    pub host: String,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<io::Result<()>>>,
    dir: TempDir,
}

impl WharfRegistry {
    /// An empty registry with the default configuration.
    pub async fn start() -> WharfRegistry {
        WharfRegistry::start_with(RegistryConfig::default()).await
    }

    /// An empty filesystem registry (under [`WharfRegistry::store_root`]) with `config`.
    pub async fn start_with(config: RegistryConfig) -> WharfRegistry {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let store = Store::open_fs(dir.path().join("store")).expect("open the filesystem store");
        WharfRegistry::serve_in(dir, Registry::new(store, config)).await
    }

    /// `store` served with `config` (an S3 store, say).
    pub async fn start_on_store(store: Store, config: RegistryConfig) -> WharfRegistry {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        WharfRegistry::serve_in(dir, Registry::new(store, config)).await
    }

    /// Serves `registry`, built by the test (a pull-through cache, say);
    /// `dir` is kept until the registry stops.
    pub async fn serve_in(dir: TempDir, registry: Registry) -> WharfRegistry {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("listener address");
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, registry, async move {
            let _ = rx.await;
        }));
        WharfRegistry {
            host: addr.to_string(),
            addr,
            shutdown: Some(tx),
            server: Some(server),
            dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The temporary directory that holds the store (as `<dir>/store`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where a filesystem store keeps its files.
    pub fn store_root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Signal shutdown and wait for `serve` to return.
    pub async fn stop(mut self) -> io::Result<()> {
        self.signal_shutdown();
        let server = self.server.take().expect("server task present");
        server.await.expect("the server task must not panic")
    }

    fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for WharfRegistry {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}
