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
    pub reason: RetryReason,
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
}

/// The reporter used when none is given.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReporter;

impl Reporter for NoReporter {}
