//! Moving blobs: each distinct blob crosses the network at most once per
//! run, whatever number of images share it. The first image that needs a
//! blob checks the destination and, if its repository lacks it, asks for a
//! mount from anywhere in the registry (blobs from earlier runs) before
//! uploading; images that need it in another repository wait for that,
//! then ask the destination to mount it from where it landed.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::{OnceCell, Semaphore};
use wharf_client::{Client, MountOutcome};
use wharf_oci::{Descriptor, Digest, RepositoryName};

use crate::error::{Result, TransferError};
use crate::report::Events;
use crate::source::Source;

/// Per-image counters, updated by that image's concurrent blob transfers.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub bytes_sent: AtomicU64,
    pub sent: AtomicU32,
    pub skipped: AtomicU32,
    pub mounted: AtomicU32,
}

/// Which repository of the destination holds a blob after its first copy.
type Landing = Arc<OnceCell<RepositoryName>>;

/// Blobs seen in this run.
#[derive(Default)]
pub(crate) struct Ledger {
    landings: Mutex<HashMap<Digest, Landing>>,
    /// (repository, blob) pairs known to be at the destination.
    present: Mutex<HashSet<(RepositoryName, Digest)>>,
}

impl Ledger {
    fn landing(&self, digest: &Digest) -> Landing {
        self.landings
            .lock()
            .expect("ledger lock")
            .entry(digest.clone())
            .or_default()
            .clone()
    }

    fn is_present(&self, repo: &RepositoryName, digest: &Digest) -> bool {
        self.present
            .lock()
            .expect("ledger lock")
            .contains(&(repo.clone(), digest.clone()))
    }

    fn mark_present(&self, repo: &RepositoryName, digest: &Digest) {
        self.present
            .lock()
            .expect("ledger lock")
            .insert((repo.clone(), digest.clone()));
    }
}

/// Everything a blob copy needs; cheap to clone into a task.
#[derive(Clone)]
pub(crate) struct BlobMover {
    pub src: Arc<dyn Source>,
    pub dst: Client,
    pub ledger: Arc<Ledger>,
    pub permits: Arc<Semaphore>,
    pub events: Arc<dyn Events>,
    pub dry_run: bool,
}

/// One blob of one image: from where to where.
#[derive(Clone)]
pub(crate) struct BlobTask {
    pub image: usize,
    pub src_host: String,
    pub src_repo: RepositoryName,
    pub dst_host: String,
    pub dst_repo: RepositoryName,
    pub blob: Descriptor,
    pub tally: Arc<Tally>,
}

impl BlobMover {
    /// Make sure the destination repository has the blob.
    pub async fn ensure(&self, task: &BlobTask) -> Result<()> {
        let digest = &task.blob.digest;
        if self.ledger.is_present(&task.dst_repo, digest) {
            self.not_needed(task, &task.tally.skipped);
            return Ok(());
        }
        let landing = self.ledger.landing(digest);
        let first = AtomicBool::new(false);
        let landed = landing
            .get_or_try_init(|| async {
                first.store(true, Ordering::Relaxed);
                self.first_copy(task).await
            })
            .await?;
        if first.load(Ordering::Relaxed) || *landed == task.dst_repo {
            if !first.load(Ordering::Relaxed) {
                self.not_needed(task, &task.tally.skipped);
            }
            return Ok(());
        }
        self.mount_or_copy(task, landed).await
    }

    /// Count a blob whose bytes did not have to move.
    fn not_needed(&self, task: &BlobTask, counter: &AtomicU32) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.events.bytes_not_needed(task.image, task.blob.size);
    }

    /// The first time this run meets the blob: skip it if the destination
    /// repository has it, else upload it. Returns where it now is.
    async fn first_copy(&self, task: &BlobTask) -> Result<RepositoryName> {
        let digest = &task.blob.digest;
        if self
            .dst
            .head_blob(&task.dst_host, &task.dst_repo, digest)
            .await?
            .is_some()
        {
            self.not_needed(task, &task.tally.skipped);
        } else {
            self.mount_anywhere_or_copy(task).await?;
        }
        self.ledger.mark_present(&task.dst_repo, digest);
        Ok(task.dst_repo.clone())
    }

    /// The blob is not in the destination repository, but an earlier run
    /// may have put it in another one: a mount without `from` lets the
    /// registry link it from wherever it is. A registry that cannot answers
    /// with an upload session, which the upload uses, so this costs no
    /// request over a plain upload.
    async fn mount_anywhere_or_copy(&self, task: &BlobTask) -> Result<()> {
        if self.dry_run {
            return self.upload(task, None).await;
        }
        let outcome = self
            .dst
            .mount_blob(&task.dst_host, &task.dst_repo, None, &task.blob.digest)
            .await?;
        match outcome {
            MountOutcome::Mounted => {
                self.not_needed(task, &task.tally.mounted);
                Ok(())
            }
            MountOutcome::Upload(session) => self.upload(task, Some(session)).await,
        }
    }

    /// Link the blob from `from`; upload it when the registry will not.
    async fn mount_or_copy(&self, task: &BlobTask, from: &RepositoryName) -> Result<()> {
        let digest = &task.blob.digest;
        if self.dry_run {
            self.not_needed(task, &task.tally.mounted);
            return Ok(());
        }
        let outcome = self
            .dst
            .mount_blob(&task.dst_host, &task.dst_repo, Some(from), digest)
            .await?;
        match outcome {
            MountOutcome::Mounted => {
                self.not_needed(task, &task.tally.mounted);
            }
            MountOutcome::Upload(session) => self.upload(task, Some(session)).await?,
        }
        self.ledger.mark_present(&task.dst_repo, digest);
        Ok(())
    }

    /// Stream the blob from the source into the destination (verified on
    /// the way); with `--dry-run`, only count it.
    async fn upload(
        &self,
        task: &BlobTask,
        session: Option<wharf_client::UploadSession>,
    ) -> Result<()> {
        let (digest, size) = (&task.blob.digest, task.blob.size);
        if self.dry_run {
            task.tally.bytes_sent.fetch_add(size, Ordering::Relaxed);
            task.tally.sent.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let _permit = self.permits.acquire().await.expect("semaphore open");
        let blob = self
            .src
            .open_blob(&task.src_host, &task.src_repo, &task.blob)
            .await?;
        let source_error = SourceError::default();
        let body = blob.map(self.counter(task, source_error.clone())).boxed();
        let pushed = match session {
            None => {
                self.dst
                    .push_blob(&task.dst_host, &task.dst_repo, digest, size, body)
                    .await
            }
            Some(s) => self.dst.upload_monolithic(s, digest, size, body).await,
        };
        if let Some(e) = source_error.lock().expect("error slot").take() {
            return Err(e);
        }
        pushed?;
        task.tally.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Counts every chunk for the report and progress; turns a source
    /// error into a broken body and keeps the error in `slot`.
    fn counter(
        &self,
        task: &BlobTask,
        slot: SourceError,
    ) -> impl FnMut(Result<Bytes>) -> std::io::Result<Bytes> + Send + 'static {
        let (events, image, tally) = (self.events.clone(), task.image, task.tally.clone());
        move |item| match item {
            Ok(chunk) => {
                tally
                    .bytes_sent
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                events.bytes_sent(image, chunk.len() as u64);
                Ok(chunk)
            }
            Err(e) => {
                slot.lock().expect("error slot").replace(e);
                Err(std::io::Error::other("the source blob failed"))
            }
        }
    }
}

/// The upload only sees that its body broke; the source's own error
/// (digest mismatch, network, a read error) is kept here to say what really
/// happened.
type SourceError = Arc<Mutex<Option<TransferError>>>;

/// Holds back each chunk until the next item arrives, so that a stream
/// whose last item is a verification error never delivers its final chunk:
/// an upload of unverified content then always ends short and fails,
/// instead of relying on the destination to check the digest.
pub(crate) struct HoldLast<S> {
    inner: S,
    held: Option<Bytes>,
    /// The inner stream ended: it is not polled again (a stream may panic
    /// when polled after its end).
    ended: bool,
}

impl<S> HoldLast<S> {
    pub(crate) fn new(inner: S) -> Self {
        HoldLast {
            inner,
            held: None,
            ended: false,
        }
    }
}

impl<S, E> Stream for HoldLast<S>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
{
    type Item = std::result::Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(self.held.take().map(Ok));
        }
        loop {
            match self.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(previous) = self.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    self.held = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    self.ended = true;
                    return Poll::Ready(self.held.take().map(Ok));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    #[tokio::test]
    async fn the_last_chunk_waits_for_the_end() {
        let ok = stream::iter(vec![
            Ok::<_, String>(Bytes::from("a")),
            Ok(Bytes::from("b")),
        ]);
        let all: Vec<_> = HoldLast::new(ok).collect().await;
        assert_eq!(all, vec![Ok(Bytes::from("a")), Ok(Bytes::from("b"))]);

        // Read to its end, the inner stream is not polled after its own
        // end (`unfold`, like a download, panics when it is).
        let once = stream::unfold(0, |n| async move {
            (n < 1).then(|| (Ok::<_, String>(Bytes::from("a")), n + 1))
        });
        let mut held = HoldLast::new(Box::pin(once));
        assert_eq!(held.next().await, Some(Ok(Bytes::from("a"))));
        assert_eq!(held.next().await, None);
        assert_eq!(held.next().await, None);

        let bad = stream::iter(vec![
            Ok(Bytes::from("a")),
            Ok(Bytes::from("b")),
            Err("mismatch".to_string()),
        ]);
        let all: Vec<_> = HoldLast::new(bad).collect().await;
        assert_eq!(all, vec![Ok(Bytes::from("a")), Err("mismatch".to_string())]);
    }
}
