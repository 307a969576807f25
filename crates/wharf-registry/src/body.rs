//! Request and response bodies.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::header::{self, HeaderValue};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::time::{Instant, Sleep};
use wharf_storage::ByteStream;

use crate::error::{Code, RegistryError};
use crate::limits::{Limits, REFUSED_BODY_DRAIN_BYTES};

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

pub fn empty() -> Body {
    full(Bytes::new())
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn stream(s: ByteStream) -> Body {
    StreamBody::new(s.map_ok(Frame::data)).boxed_unsync()
}

/// The request body as a stream of data chunks that ends in an error of
/// kind `TimedOut` when the client stops making progress (see
/// [`Limits::body_timeout`]).
pub fn request_stream(body: Incoming, limits: &Limits) -> ByteStream {
    let frames = TryStreamExt::map_err(http_body_util::BodyStream::new(body), io::Error::other);
    let data = frames.try_filter_map(|frame| async move { Ok(frame.into_data().ok()) });
    Box::pin(ProgressGuard::new(Box::pin(data), limits))
}

/// Cuts a body off when it brings fewer than `window_bytes` in a window of
/// `window` spent waiting for it. Only time spent waiting on the client
/// counts: while the server is busy writing (and so not reading), the clock
/// stands still, so a slow disk is never blamed on the client. A stalled
/// client then holds its connection and upload slot for one window at most;
/// a trickling one, sending a byte now and then to dodge a plain idle
/// timeout, too.
struct ProgressGuard {
    inner: ByteStream,
    window: Duration,
    window_bytes: u64,
    /// Time spent waiting for the client in the current window, and bytes
    /// received in it.
    waited: Duration,
    received: u64,
    waiting_since: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    finished: bool,
}

impl ProgressGuard {
    fn new(inner: ByteStream, limits: &Limits) -> ProgressGuard {
        ProgressGuard {
            inner,
            window: limits.body_timeout,
            window_bytes: limits.body_window_bytes(),
            waited: Duration::ZERO,
            received: 0,
            waiting_since: None,
            timer: Box::pin(tokio::time::sleep(limits.body_timeout)),
            finished: false,
        }
    }

    fn received(&mut self, bytes: usize) {
        if let Some(since) = self.waiting_since.take() {
            self.waited += since.elapsed();
        }
        self.received += bytes as u64;
        if self.received >= self.window_bytes {
            self.received = 0;
            self.waited = Duration::ZERO;
        }
    }

    fn too_slow(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the request body brought {} of the {} bytes due within {:?}; the client is too slow or stalled",
                self.received, self.window_bytes, self.window
            ),
        )
    }
}

impl Stream for ProgressGuard {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.received(chunk.len());
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(other) => {
                self.finished = true;
                Poll::Ready(other)
            }
            Poll::Pending => {
                let since = *self.waiting_since.get_or_insert_with(Instant::now);
                let deadline = since + self.window.saturating_sub(self.waited);
                if self.timer.deadline() != deadline {
                    self.timer.as_mut().reset(deadline);
                }
                if self.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.finished = true;
                Poll::Ready(Some(Err(self.too_slow())))
            }
        }
    }
}

/// Whether a body error is the [`ProgressGuard`] cutting a slow client off.
pub fn is_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
}

/// The body length a request's `Content-Length` announces, if it is a number.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Read a whole body of at most `limit` bytes (`declared` is its
/// `Content-Length`, if any), so a huge manifest never sits in memory. A
/// body over the limit is refused with 413 `SIZE_INVALID` only once it has
/// been drained (see `drain_refused`). `what` names the body in the error.
pub async fn read_limited(
    body: Incoming,
    declared: Option<u64>,
    limit: usize,
    what: &str,
    limits: &Limits,
) -> Result<Bytes, RegistryError> {
    let mut stream = request_stream(body, limits);
    if declared.is_some_and(|length| length > limit as u64) {
        let refusal = too_large(what, limit);
        return Err(drain_refused(stream, declared, 0, limit, refusal).await);
    }
    let mut buf = Vec::new();
    while let Some(chunk) = stream.try_next().await.map_err(|e| unreadable(&e))? {
        if buf.len() + chunk.len() > limit {
            let received = (buf.len() + chunk.len()) as u64;
            // Nothing of a refused body is kept while the rest is drained.
            drop(buf);
            let refusal = too_large(what, limit);
            return Err(drain_refused(stream, declared, received, limit, refusal).await);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

fn unreadable(e: &io::Error) -> RegistryError {
    let err = RegistryError::new(
        Code::ManifestInvalid,
        format!("could not read the request body: {e}"),
    );
    if is_timeout(e) {
        err.with_status(http::StatusCode::REQUEST_TIMEOUT)
    } else {
        err
    }
}

/// The most of a refused body read and thrown away before answering, for a
/// body whose limit is `limit`: [`REFUSED_BODY_DRAIN_BYTES`] or four times
/// the limit, whichever is larger.
fn drain_bound(limit: usize) -> u64 {
    REFUSED_BODY_DRAIN_BYTES.max((limit as u64).saturating_mul(4))
}

/// Read and discard the rest of a refused body, then hand back `refusal`.
///
/// Clients such as containerd and Python's `http.client` send the whole body
/// before they read the answer: closing the connection on them with their
/// body unread makes the kernel reset it, and they see a broken pipe instead
/// of the 413. So the body is drained, under the same progress guard as any
/// body, up to [`drain_bound`]; `received` bytes of it were read already.
/// A body that claims or turns out to be larger than that is not worth
/// reading: the answer then closes the connection.
async fn drain_refused(
    mut stream: ByteStream,
    declared: Option<u64>,
    mut received: u64,
    limit: usize,
    refusal: RegistryError,
) -> RegistryError {
    let bound = drain_bound(limit);
    if declared.is_some_and(|length| length > bound) {
        return closing(refusal);
    }
    loop {
        match stream.next().await {
            None => return refusal,
            Some(Ok(chunk)) => {
                received += chunk.len() as u64;
                if received > bound {
                    return closing(refusal);
                }
            }
            // A client that stalls or breaks off while its refused body is
            // drained still gets the refusal, if it still listens.
            Some(Err(_)) => return closing(refusal),
        }
    }
}

/// `Connection: close` on an answer whose request body is left unread, so
/// the connection is not reused (HTTP/2 drops the header and resets only
/// the stream).
fn closing(refusal: RegistryError) -> RegistryError {
    refusal.with_header(header::CONNECTION, HeaderValue::from_static("close"))
}

fn too_large(what: &str, limit: usize) -> RegistryError {
    RegistryError::new(
        Code::SizeInvalid,
        format!("{what} is larger than the {limit}-byte limit"),
    )
    .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
}
