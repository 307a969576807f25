//! Blob downloads in flight, one per digest, shared by every requester.
//!
//! The first request for a missing blob starts a download task; requests
//! that arrive while it runs join it. The task writes the upstream's bytes
//! to a spool file as fast as the upstream sends them and publishes how far
//! it got on a `watch` channel; each requester reads the spool file from
//! its own offset (`pread`, so readers never disturb each other) and waits
//! for more when it has caught up. A slow requester therefore costs disk,
//! not memory, and never slows the download or the other requesters.
//!
//! The last byte is held back from requesters until the download verified
//! the digest, so a blob that turns out wrong reaches them one byte short
//! (or, with no announced size, as a broken chunked body): a client can
//! never take wrong bytes for the blob. Only then is the spool committed to
//! the store (which hashes it once more); the download leaves the table
//! after the commit, so a request arriving at any point either joins it or
//! finds the blob stored.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream;
use tokio::sync::watch;
use wharf_oci::Digest;
use wharf_registry::error::RegistryError;
use wharf_storage::ByteStream;

/// Bytes read from the spool per chunk sent to a requester.
const READ_CHUNK: u64 = 512 * 1024;
/// Upstream chunks gathered into one write when they arrive together.
pub(crate) const WRITE_BATCH: usize = 64;

/// How far a download got.
#[derive(Clone)]
pub(crate) enum Progress {
    /// Asking the upstream.
    Starting,
    /// The blob was in the store already: requesters read it from there.
    Stored,
    /// `written` bytes of the blob are in `spool`.
    Streaming {
        size: Option<u64>,
        written: u64,
        spool: Arc<File>,
    },
    /// All of it is in `spool` and matched the digest.
    Verified {
        size: u64,
        spool: Arc<File>,
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

    pub(crate) fn advance(&self, by: u64) {
        self.progress.send_modify(|p| {
            if let Progress::Streaming { written, .. } = p {
                *written += by;
            }
        });
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }
}

/// The table of downloads in flight and where they spool.
pub(crate) struct Downloads {
    table: Mutex<HashMap<Digest, Arc<Download>>>,
    spool_dir: PathBuf,
}

impl Downloads {
    pub(crate) fn new(spool_dir: PathBuf) -> Downloads {
        Downloads {
            table: Mutex::new(HashMap::new()),
            spool_dir,
        }
    }

    /// The download of `digest`, and whether the caller just started it
    /// (and so must run it).
    pub(crate) fn join(&self, digest: &Digest) -> (Arc<Download>, bool) {
        let mut table = self.table.lock().expect("downloads lock");
        if let Some(d) = table.get(digest) {
            return (d.clone(), false);
        }
        let (tx, _) = watch::channel(Progress::Starting);
        let d = Arc::new(Download { progress: tx });
        table.insert(digest.clone(), d.clone());
        (d, true)
    }

    /// Remove `download` from the table (only that one: a later download of
    /// the same digest may have replaced it).
    pub(crate) fn leave(&self, digest: &Digest, download: &Arc<Download>) {
        let mut table = self.table.lock().expect("downloads lock");
        if table.get(digest).is_some_and(|d| Arc::ptr_eq(d, download)) {
            table.remove(digest);
        }
    }

    /// A new, empty spool file, already unlinked: it lives exactly as long
    /// as the download and its readers hold it, and a crash leaves nothing.
    pub(crate) fn spool(&self) -> io::Result<File> {
        std::fs::create_dir_all(&self.spool_dir)?;
        let path = self
            .spool_dir
            .join(uuid::Uuid::new_v4().simple().to_string());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        remove_quietly(&path);
        Ok(file)
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a spool file");
    }
}

/// Append `chunks` to the spool at `offset`, off the async threads.
pub(crate) async fn write_spool(
    spool: Arc<File>,
    offset: u64,
    chunks: Vec<Bytes>,
) -> io::Result<()> {
    tokio::task::spawn_blocking(move || {
        let mut at = offset;
        for chunk in chunks {
            spool.write_all_at(&chunk, at)?;
            at += chunk.len() as u64;
        }
        Ok(())
    })
    .await
    .map_err(io::Error::other)?
}

async fn read_spool(spool: Arc<File>, offset: u64, len: u64) -> io::Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; len as usize];
        spool.read_exact_at(&mut buf, offset)?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(io::Error::other)?
}

/// The whole of a verified spool, for committing it to the store.
pub(crate) fn spool_stream(spool: Arc<File>, size: u64) -> ByteStream {
    Box::pin(stream::unfold(0u64, move |offset| {
        let spool = spool.clone();
        async move {
            if offset >= size {
                return None;
            }
            let len = READ_CHUNK.min(size - offset);
            match read_spool(spool, offset, len).await {
                Ok(b) => Some((Ok(b), offset + len)),
                Err(e) => Some((Err(e), size)),
            }
        }
    }))
}

/// Where one requester is in a download.
struct Reader {
    progress: watch::Receiver<Progress>,
    offset: u64,
    done: bool,
}

/// What the requester may be sent now: up to which byte, from which file,
/// and whether that is the end.
enum Next {
    Read { spool: Arc<File>, upto: u64 },
    End,
    Wait,
    Fail(io::Error),
}

impl Reader {
    fn next(&mut self) -> Next {
        match &*self.progress.borrow_and_update() {
            Progress::Streaming {
                size,
                written,
                spool,
            } => {
                // Hold the last byte back until the digest is checked.
                let upto = match size {
                    Some(s) => (*written).min(s.saturating_sub(1)),
                    None => *written,
                };
                if self.offset < upto {
                    Next::Read {
                        spool: spool.clone(),
                        upto,
                    }
                } else {
                    Next::Wait
                }
            }
            Progress::Verified { size, spool } if self.offset < *size => Next::Read {
                spool: spool.clone(),
                upto: *size,
            },
            Progress::Verified { .. } => Next::End,
            Progress::Failed(e) => Next::Fail(io::Error::other(e.message().to_string())),
            Progress::Starting | Progress::Stored => Next::Wait,
        }
    }

    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        if self.done {
            return None;
        }
        loop {
            match self.next() {
                Next::Read { spool, upto } => {
                    let len = READ_CHUNK.min(upto - self.offset);
                    let chunk = read_spool(spool, self.offset, len).await;
                    if let Ok(c) = &chunk {
                        self.offset += c.len() as u64;
                    } else {
                        self.done = true;
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

/// The blob as one requester receives it, from the start.
pub(crate) fn follow(progress: watch::Receiver<Progress>) -> ByteStream {
    let reader = Reader {
        progress,
        offset: 0,
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
