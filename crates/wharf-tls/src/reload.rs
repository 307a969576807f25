//! A certificate resolver that notices when the certificate or key file is
//! replaced (renewal, a Kubernetes secret update) and serves the new pair
//! from the next handshake on.
//!
//! The check runs on the handshake path, at most once per
//! [`CHECK_INTERVAL`], and costs two `stat` calls; files are only read when
//! their metadata changed. Established connections keep the keys they
//! negotiated: nothing here touches them.

use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::server::load_certified_key;
use crate::TlsError;

/// How often a handshake may look at the files' metadata.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Serves the certificate from a pair of files, reloading it when they change.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    check: Mutex<CheckState>,
}

struct CheckState {
    checked_at: Instant,
    /// What the files looked like when last read (successfully or not), so
    /// a broken file is reported once, not on every check.
    seen: Option<Fingerprint>,
}

/// Enough metadata to notice a replaced or rewritten file: a rename changes
/// the inode, an in-place write the size or the modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    device: u64,
    len: u64,
    modified_ns: i128,
}

type Fingerprint = (FileStamp, FileStamp);

impl ReloadingCert {
    /// Loads the pair now; an unreadable or mismatched pair is an error.
    pub fn new(cert: &Path, key: &Path) -> Result<ReloadingCert, TlsError> {
        let seen = fingerprint(cert, key);
        let loaded = load_certified_key(cert, key)?;
        Ok(ReloadingCert {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            current: RwLock::new(Arc::new(loaded)),
            check: Mutex::new(CheckState {
                checked_at: Instant::now(),
                seen,
            }),
        })
    }

    /// The certificate the next handshake gets, after a reload if one is due.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.reload_if_changed();
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn reload_if_changed(&self) {
        // Another handshake is already checking: serve what we have rather
        // than wait for it.
        let Ok(mut state) = self.check.try_lock() else {
            return;
        };
        if state.checked_at.elapsed() < CHECK_INTERVAL {
            return;
        }
        state.checked_at = Instant::now();
        let now = fingerprint(&self.cert_path, &self.key_path);
        if now.is_none() || now == state.seen {
            // Missing files mid-replacement: keep serving, look again later.
            return;
        }
        state.seen = now;
        match load_certified_key(&self.cert_path, &self.key_path) {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::warn!(
                error = %e,
                "TLS certificate files changed but cannot be used; still serving the previous certificate"
            ),
        }
    }
}

fn fingerprint(cert: &Path, key: &Path) -> Option<Fingerprint> {
    Some((stamp(cert)?, stamp(key)?))
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = fs::metadata(path).ok()?;
    Some(FileStamp {
        inode: meta.ino(),
        device: meta.dev(),
        len: meta.len(),
        modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    })
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish_non_exhaustive()
    }
}
