//! Progress and retry notifications. The library never prints: a binary
//! implements [`Reporter`] to draw progress bars or log retries.

use std::time::Duration;

use http::StatusCode;
use wharf_oci::Digest;

/// Why a request is being tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryReason {
    /// The registry answered with this status (429, 502, 503, 504).
    Status(StatusCode),
    /// The connection failed, was reset or timed out.
    Network,
}

/// One retry that is about to happen.
#[derive(Debug, Clone)]
pub struct RetryEvent<'a> {
    /// What is being retried (`get blob`, `put manifest`…).
    pub operation: &'a str,
    pub registry: &'a str,
    /// The try that just failed (1 for the first).
    pub attempt: u32,
    /// Tries allowed in all, the first included.
    pub max_attempts: u32,
    pub reason: RetryReason,
    /// What went wrong, in one line (`HTTP 503 Service Unavailable`,
    /// `cannot connect: Connection refused`).
    pub error: String,
    /// How long the client waits before the next try.
    pub delay: Duration,
    /// Whether `delay` came from the server's `Retry-After`.
    pub from_retry_after: bool,
}

/// Receives progress. Every method has an empty default, so an
/// implementation only writes what it shows. Calls come from the tasks
/// doing the transfers, concurrently: keep them cheap.
pub trait Reporter: Send + Sync {
    /// A blob transfer starts (`size` when known).
    fn blob_started(&self, _digest: &Digest, _size: Option<u64>) {}
    /// `bytes` more bytes of the blob moved (download or upload).
    fn blob_progress(&self, _digest: &Digest, _bytes: u64) {}
    /// A download broke and resumes at `offset`.
    fn blob_resumed(&self, _digest: &Digest, _offset: u64) {}
    /// The blob moved completely and its digest verified.
    fn blob_finished(&self, _digest: &Digest) {}
    fn retrying(&self, _event: &RetryEvent<'_>) {}
    /// The first request to a registry goes out to `url` (its `/v2/`).
    fn trying(&self, _registry: &str, _url: &str) {}
    /// A registry answered `event.status` pointing elsewhere, and the
    /// client follows.
    fn redirected(&self, _event: &RedirectEvent<'_>) {}
}

/// One redirect being followed. Only the target's origin is given: the
/// rest of a redirect URL is often a signature, a secret.
#[derive(Debug, Clone)]
pub struct RedirectEvent<'a> {
    pub operation: &'a str,
    pub registry: &'a str,
    pub status: StatusCode,
    /// `scheme://host[:port]` of the target.
    pub to_origin: String,
}

/// The reporter used when none is given.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReporter;

impl Reporter for NoReporter {}
