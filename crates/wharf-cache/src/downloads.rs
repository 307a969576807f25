//! Blob downloads in flight, one per digest, shared by every requester.
//!
//! The first request for a missing blob starts a download task; requests
//! that arrive while it runs join it. The task streams the upstream's bytes
//! straight into a storage upload ([`wharf_storage::Store::put_blob_watched`]),
//! which hashes each byte once as it arrives and writes it once, and
//! publishes on a `watch` channel how much arrived and how much is written.
//! Each requester follows from its own offset: from a bounded in-memory
//! [`Window`] of the chunks that arrived (those not yet written, and the last
//! few MiB written) while it keeps up, else from the upload through the
//! storage's [`UploadReader`] (`pread`, so readers never disturb each other).
//! A slow requester therefore costs disk, not memory, and never slows the
//! download or the other requesters.
//!
//! The last byte is held back from requesters until the storage verified the
//! digest, so a blob that turns out wrong reaches them one byte short (or,
//! with no announced size, as a broken chunked body): a client can never
//! take wrong bytes for the blob. The commit (a rename of the upload) comes
//! after that; the download leaves the table after the commit, so a request
//! arriving at any point either joins it or finds the blob stored.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use tokio::sync::watch;
use wharf_oci::{Digest, RepositoryName};
use wharf_registry::error::RegistryError;
use wharf_storage::{ByteStream, UploadReader, UploadWatcher, WriteObserver};

/// Bytes read from the upload per chunk sent to a requester.
const READ_CHUNK: u64 = 512 * 1024;
/// Bytes of a download kept in memory behind the last one written, so that
/// requesters keeping up with the upstream are handed the very chunks that
/// arrived, without waiting for the write or reading them back (one copy
/// less per byte). Requesters further behind read the upload.
const WINDOW_BYTES: u64 = 8 * 1024 * 1024;

/// Bytes received between two wake-ups of the requesters.
const NOTIFY_BYTES: u64 = 128 * 1024;

/// The chunks received from the upstream and not yet written, and the last
/// [`WINDOW_BYTES`] written, as the very chunks the upstream sent.
#[derive(Default)]
pub(crate) struct Window {
    /// `(offset, chunk)`, in order and contiguous.
    chunks: Mutex<VecDeque<(u64, Bytes)>>,
}

impl Window {
    /// Add a chunk received at `offset`.
    fn push(&self, offset: u64, chunk: Bytes) {
        let mut window = self.chunks.lock().expect("window lock");
        window.push_back((offset, chunk));
    }

    /// The upload holds `written` bytes: drop what lies further back than
    /// the window.
    fn written(&self, written: u64) {
        let mut window = self.chunks.lock().expect("window lock");
        while window
            .front()
            .is_some_and(|(start, c)| start + c.len() as u64 + WINDOW_BYTES <= written)
        {
            window.pop_front();
        }
    }

    /// Bytes from `offset`, up to `upto`, without copying; `None` when
    /// `offset` is no longer (or not yet) in the window.
    fn slice(&self, offset: u64, upto: u64) -> Option<Bytes> {
        let window = self.chunks.lock().expect("window lock");
        let first = window.front()?.0;
        if offset < first {
            return None;
        }
        let i = window.partition_point(|(start, _)| *start <= offset) - 1;
        let (start, chunk) = &window[i];
        let from = (offset - start) as usize;
        let to = chunk.len().min((upto - start) as usize);
        (from < to).then(|| chunk.slice(from..to))
    }
}

/// How far a download got.
#[derive(Clone)]
pub(crate) enum Progress {
    /// Asking the upstream.
    Starting,
    /// The blob was in the store already: requesters read it from there.
    Stored,
    /// `received` bytes of the blob arrived; the first `written` of them are
    /// in the upload `reader` reads, the rest in `window`.
    Streaming {
        size: Option<u64>,
        received: u64,
        written: u64,
        reader: Arc<dyn UploadReader>,
        window: Arc<Window>,
    },
    /// All of it is written and matched the digest.
    Verified {
        size: u64,
        reader: Arc<dyn UploadReader>,
        window: Arc<Window>,
    },
    Failed(RegistryError),
}

pub(crate) struct Download {
    progress: watch::Sender<Progress>,
}

impl Download {
    pub(crate) fn set(&self, progress: Progress) {
        self.progress.send_replace(progress);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }
}

/// Publishes a download's progress to its requesters: what arrived (into the
/// window) and what the storage upload holds.
pub(crate) struct Publisher {
    download: Arc<Download>,
    /// The size the upstream announced.
    size: Option<u64>,
    window: Arc<Window>,
}

impl Publisher {
    pub(crate) fn new(download: Arc<Download>, size: Option<u64>) -> Publisher {
        Publisher {
            download,
            size,
            window: Arc::default(),
        }
    }

    /// `body`, with every chunk published to the requesters as it passes on
    /// to storage.
    pub(crate) fn tee(&self, body: ByteStream) -> ByteStream {
        let download = self.download.clone();
        let window = self.window.clone();
        let (mut offset, mut told) = (0u64, 0u64);
        Box::pin(body.inspect(move |item| {
            if let Ok(chunk) = item {
                window.push(offset, chunk.clone());
                offset += chunk.len() as u64;
                // Requesters are woken every NOTIFY_BYTES, not for every
                // small network read; each write wakes them too.
                let notify = offset - told >= NOTIFY_BYTES;
                if notify {
                    told = offset;
                }
                download.progress.send_if_modified(|p| {
                    if let Progress::Streaming { received, .. } = p {
                        *received = offset;
                    }
                    notify
                });
            }
        }))
    }
}

impl UploadWatcher for Publisher {
    fn opened(&self, reader: Arc<dyn UploadReader>) {
        self.download.set(Progress::Streaming {
            size: self.size,
            received: 0,
            written: 0,
            reader,
            window: self.window.clone(),
        });
    }

    fn written(&self) -> WriteObserver {
        let download = self.download.clone();
        let window = self.window.clone();
        Arc::new(move |size, _chunks| {
            window.written(size);
            download.progress.send_modify(|p| {
                if let Progress::Streaming { written, .. } = p {
                    *written = size;
                }
            });
        })
    }

    fn verified(&self, size: u64) {
        self.download.progress.send_modify(|p| {
            if let Progress::Streaming { reader, window, .. } = p {
                *p = Progress::Verified {
                    size,
                    reader: reader.clone(),
                    window: window.clone(),
                };
            }
        });
    }
}

/// The table of downloads in flight, one per repository and digest: the
/// bytes a requester is sent must be what the upstream serves for the
/// repository it asked for, never what it served for another one (which
/// the requester may not be allowed to pull, and the upstream may not hold
/// under this name).
#[derive(Default)]
pub(crate) struct Downloads {
    table: Mutex<HashMap<(RepositoryName, Digest), Arc<Download>>>,
}

impl Downloads {
    /// The download of `digest` for `repo`, and whether the caller just
    /// started it (and so must run it).
    pub(crate) fn join(&self, repo: &RepositoryName, digest: &Digest) -> (Arc<Download>, bool) {
        let mut table = self.table.lock().expect("downloads lock");
        let key = (repo.clone(), digest.clone());
        if let Some(d) = table.get(&key) {
            return (d.clone(), false);
        }
        let (tx, _) = watch::channel(Progress::Starting);
        let d = Arc::new(Download { progress: tx });
        table.insert(key, d.clone());
        (d, true)
    }

    /// Remove `download` from the table (only that one: a later download of
    /// the same blob may have replaced it).
    pub(crate) fn leave(&self, repo: &RepositoryName, digest: &Digest, download: &Arc<Download>) {
        let mut table = self.table.lock().expect("downloads lock");
        let key = (repo.clone(), digest.clone());
        if table.get(&key).is_some_and(|d| Arc::ptr_eq(d, download)) {
            table.remove(&key);
        }
    }
}

/// Where one requester is in a download.
struct Reader {
    progress: watch::Receiver<Progress>,
    offset: u64,
    /// One past the last byte wanted (`u64::MAX`: to the end of the blob).
    end: u64,
    /// Send nothing before the whole blob is verified (a range request: a
    /// part cannot be checked by the client, so it must come from a blob
    /// known to be right).
    verified_only: bool,
    done: bool,
}

/// What the requester may be sent now: up to which byte, from which
/// reader, and whether that is the end.
enum Next {
    Read {
        reader: Arc<dyn UploadReader>,
        window: Arc<Window>,
        upto: u64,
        /// How far the upload holds the bytes (the rest is in the window).
        on_disk: u64,
    },
    End,
    Wait,
    Fail(io::Error),
}

impl Reader {
    fn next(&self) -> Next {
        let (readable, on_disk, reader, window) = match &*self.progress.borrow() {
            Progress::Streaming { .. } if self.verified_only => return Next::Wait,
            Progress::Streaming {
                size,
                received,
                written,
                reader,
                window,
            } => {
                // Hold back the last byte until the digest is checked.
                let readable = match size {
                    Some(s) => (*received).min(s.saturating_sub(1)),
                    None => *received,
                };
                (readable, *written, reader.clone(), window.clone())
            }
            Progress::Verified {
                size,
                reader,
                window,
            } => {
                if self.offset >= (*size).min(self.end) {
                    return Next::End;
                }
                (*size, *size, reader.clone(), window.clone())
            }
            Progress::Failed(e) => return Next::Fail(io::Error::other(e.message().to_string())),
            Progress::Starting | Progress::Stored => return Next::Wait,
        };
        let upto = readable.min(self.end);
        if self.offset < upto {
            Next::Read {
                reader,
                window,
                upto,
                on_disk: on_disk.min(upto),
            }
        } else if self.offset >= self.end {
            Next::End
        } else {
            Next::Wait
        }
    }

    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        if self.done {
            return None;
        }
        loop {
            match self.next() {
                Next::Read {
                    reader,
                    window,
                    upto,
                    on_disk,
                } => {
                    let chunk = match window.slice(self.offset, upto) {
                        Some(bytes) => Ok(bytes),
                        None if self.offset < on_disk => {
                            let len = READ_CHUNK.min(on_disk - self.offset) as usize;
                            reader.read_at(self.offset, len).await
                        }
                        // Neither in memory nor written yet: only a moment
                        // between the window's trim and the next write.
                        None => {
                            if self.progress.changed().await.is_err() {
                                self.done = true;
                                return Some(Err(io::Error::other(
                                    "the upstream download stopped before the blob was complete",
                                )));
                            }
                            continue;
                        }
                    };
                    match &chunk {
                        Ok(c) if c.is_empty() => {
                            self.done = true;
                            return Some(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the download is shorter than it reported",
                            )));
                        }
                        Ok(c) => self.offset += c.len() as u64,
                        Err(_) => self.done = true,
                    }
                    return Some(chunk);
                }
                Next::End => {
                    self.done = true;
                    return None;
                }
                Next::Fail(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Next::Wait => {
                    if self.progress.changed().await.is_err() {
                        self.done = true;
                        return Some(Err(io::Error::other(
                            "the upstream download stopped before the blob was complete",
                        )));
                    }
                }
            }
        }
    }
}

/// The blob as one requester receives it: all of it from the start as it
/// arrives, or (`range`) only `range`, once the whole blob is verified.
pub(crate) fn follow(progress: watch::Receiver<Progress>, range: Option<Range<u64>>) -> ByteStream {
    let reader = Reader {
        progress,
        offset: range.as_ref().map_or(0, |r| r.start),
        end: range.as_ref().map_or(u64::MAX, |r| r.end),
        verified_only: range.is_some(),
        done: false,
    };
    Box::pin(stream::unfold(reader, |mut r| async move {
        let item = r.next_chunk().await?;
        Some((item, r))
    }))
}

/// Wait until the download knows whether it has something to stream.
pub(crate) async fn started(progress: &mut watch::Receiver<Progress>) -> Progress {
    loop {
        let current = progress.borrow_and_update().clone();
        if !matches!(current, Progress::Starting) {
            return current;
        }
        if progress.changed().await.is_err() {
            return Progress::Failed(RegistryError::new(
                wharf_registry::error::Code::Internal,
                "the upstream download stopped before it started",
            ));
        }
    }
}
