//! What one client may hold of the server: connections, uploads in flight,
//! and how long it may keep them without making progress.
//!
//! Every resource a client can tie up is bounded in number and in time, so
//! that clients which stall (on purpose or not) cannot lock out the others:
//! a connection slot is freed by the idle, header and body timeouts, an
//! upload slot by the body timeout, and a stalled upload holds no thread at
//! all (the storage writer hands batches to the blocking pool only when one
//! is ready).

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Code, RegistryError};

/// The server's resource bounds; `wharf.toml` `[server]` sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open client connections. At the limit, connections idle for a moment
    /// are closed to make room and new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Request bodies being received into uploads (PATCH, PUT with a body,
    /// monolithic POST) at once; beyond it, 429 TOOMANYREQUESTS.
    pub max_uploads: usize,
    /// Time a client gets to send a request's headers (HTTP/1).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/1 keep-alive, HTTP/2, a TLS or TCP connection that sent nothing).
    pub idle_timeout: Duration,
    /// Time a client gets to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// A request body must deliver `body_min_rate` bytes per second over
    /// each window of this much time spent waiting for it; a body that
    /// stalls or trickles slower is cut off with 408.
    pub body_timeout: Duration,
    /// See `body_timeout`; in bytes per second (0: only a complete stall
    /// for `body_timeout` is cut off).
    pub body_min_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_uploads: 256,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            body_min_rate: 1024,
        }
    }
}

impl Limits {
    /// The fewest bytes each body window must bring.
    pub(crate) fn body_window_bytes(&self) -> u64 {
        self.body_min_rate
            .saturating_mul(self.body_timeout.as_secs())
            .max(1)
    }
}

/// A refused request body (a manifest over `max_manifest_bytes`, an
/// oversize token form) is read and discarded up to this many bytes, or four
/// times its limit if that is more, before the refusal is sent; see
/// `body::drain_refused`.
pub const REFUSED_BODY_DRAIN_BYTES: u64 = 64 * 1024 * 1024;

/// How long a client refused an upload slot is told to wait.
const UPLOAD_RETRY_AFTER_SECS: u64 = 1;

/// The upload slots: one per request body being received into storage.
pub(crate) struct UploadSlots {
    slots: Arc<Semaphore>,
    max: usize,
}

impl UploadSlots {
    pub(crate) fn new(max: usize) -> UploadSlots {
        UploadSlots {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A slot for one upload body, held until the handler returns; when all
    /// are taken, a spec error the client can retry after `Retry-After`.
    pub(crate) fn take(&self) -> Result<OwnedSemaphorePermit, RegistryError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            RegistryError::new(
                Code::TooManyRequests,
                format!(
                    "the registry is receiving {} uploads already; retry shortly",
                    self.max
                ),
            )
            .with_header(
                header::RETRY_AFTER,
                HeaderValue::from(UPLOAD_RETRY_AFTER_SECS),
            )
        })
    }
}
