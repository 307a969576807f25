//! Asking the disk to start writing an upload's bytes early, off the thread
//! that writes them.
//!
//! An upload that leaves all its bytes dirty in the page cache makes the
//! fsync that publishes the blob write them all at once (1 GiB push: see
//! BENCHMARKS.md), so uploads ask the kernel to start on every few MiB as
//! they go (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). That call blocks
//! whenever the disk's request queue is full (once for 0.47 s in a cold
//! 512 MiB pull through the cache, BENCHMARKS.md), and a writing thread
//! stuck in it holds up the whole upload: the client's bytes, and through a
//! pull-through cache everyone following the download. One thread per
//! storage root makes the calls instead; writers hand it ranges without
//! ever waiting, and a range it cannot take now is offered again, larger,
//! with the next one.

use std::fs::File;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Ranges waiting for the writeback thread. A few suffice: each covers
/// several MiB, and a writer whose range is refused offers it again later.
const QUEUE: usize = 8;

struct Range {
    file: Arc<File>,
    offset: u64,
    len: u64,
}

/// The writeback thread of one storage root, started on first use.
#[derive(Default)]
pub(crate) struct Writeback {
    queue: Mutex<Option<SyncSender<Range>>>,
}

impl Writeback {
    /// Ask for `len` bytes of `file` at `offset` to go to disk soon. Never
    /// blocks; `false` when the thread is busy (or could not be started)
    /// and the caller should offer the range again with its next one. Best
    /// effort throughout: the fsync at commit writes whatever is left.
    pub(crate) fn request(&self, file: &Arc<File>, offset: u64, len: u64) -> bool {
        let Some(queue) = self.queue() else {
            return false;
        };
        let range = Range {
            file: file.clone(),
            offset,
            len,
        };
        match queue.try_send(range) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    fn queue(&self) -> Option<SyncSender<Range>> {
        let mut queue = self.queue.lock().expect("writeback lock");
        if queue.is_none() {
            *queue = start();
        }
        queue.clone()
    }
}

/// Start the thread; it ends when the storage root's sender is dropped.
fn start() -> Option<SyncSender<Range>> {
    let (tx, rx) = sync_channel::<Range>(QUEUE);
    std::thread::Builder::new()
        .name("wharf-writeback".into())
        .spawn(move || {
            for range in rx {
                start_writeback(&range.file, range.offset, range.len);
            }
        })
        .ok()?;
    Some(tx)
}

/// Ask the kernel to start writing `len` bytes at `offset` to disk. An
/// error only means the final fsync does all the work.
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range takes a descriptor and integers and touches
    // no memory of ours; the descriptor stays open for the whole call.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};

    use super::*;

    #[test]
    fn ranges_are_taken_and_the_bytes_stay_as_written() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(256 * 1024).collect();
        file.write_all(&data).unwrap();
        let file = Arc::new(file);
        let writeback = Writeback::default();
        assert!(
            writeback.request(&file, 0, data.len() as u64),
            "a fresh writeback thread takes a range"
        );
        // Far more ranges than the queue holds: each call returns (taken
        // or refused), none waits for the disk.
        let taken = (0..1000)
            .filter(|i| writeback.request(&file, i * 256, 256))
            .count();
        assert!(taken >= 1, "the queue takes ranges");
        drop(writeback);
        let mut back = Vec::new();
        let mut f = &*file;
        f.rewind().unwrap();
        f.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }
}
