//! Small files read on every request (tag links, revision links), kept in
//! memory with the identity of the file they came from.
//!
//! A cached copy is served only after a `stat` of the path shows the very
//! same file: device, inode, size, modification and change times. Every
//! file the filesystem backend publishes is a new inode renamed into place,
//! so a tag moved, a manifest deleted or a link rewritten — by this process
//! or another one sharing the root, a collector included — shows up as a
//! different stamp (or no file) and is read again. One `stat` replaces an
//! open, a read and a close, which on the manifest GET path was most of the
//! storage's cost.
//!
//! A file is kept only once it has been settled for [`SETTLED`]: its change
//! time lies that far in the past when it is read. Timestamps are coarse (a
//! clock tick), so a file replaced within the same tick by one of the same
//! size on a reused inode could otherwise carry an identical stamp; a file
//! created after the cached one was read has a change time later than that
//! read, which a settled entry's stamp cannot equal.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::fs::not_found_is_none;

/// Files larger than this are read every time.
const MAX_FILE: u64 = 4096;
/// Entries kept; the table starts over when it is full (a few MiB at most).
const MAX_ENTRIES: usize = 16 * 1024;
/// How long a file must have stayed unchanged before it is kept: twenty
/// ticks of the coarsest kernel clock (100 Hz) that stamps file times.
const SETTLED: Duration = Duration::from_millis(200);

/// What identifies one version of a file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Unchanged for [`SETTLED`] as of `now`.
    fn settled(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let (secs, nanos) = self.ctime;
        let (Ok(secs), Ok(nanos)) = (u64::try_from(secs), u32::try_from(nanos)) else {
            return false;
        };
        Duration::new(secs, nanos.min(999_999_999)) + SETTLED <= now
    }
}

#[derive(Default)]
pub(crate) struct StampedFiles {
    map: Mutex<HashMap<PathBuf, (Stamp, Bytes)>>,
}

impl StampedFiles {
    /// The content of `path`, `None` when there is no such file.
    pub(crate) fn read(&self, path: &Path) -> io::Result<Option<Bytes>> {
        let Some(meta) = self.present(path, std::fs::metadata(path))? else {
            return Ok(None);
        };
        if meta.size() <= MAX_FILE {
            if let Some(bytes) = self.lookup(path, Stamp::of(&meta)) {
                return Ok(Some(bytes));
            }
        }
        self.read_file(path)
    }

    fn lookup(&self, path: &Path, stamp: Stamp) -> Option<Bytes> {
        let map = self.map.lock().expect("stamped files lock");
        let (kept, bytes) = map.get(path)?;
        (*kept == stamp).then(|| bytes.clone())
    }

    /// Read the file, and keep it when it is small and settled. The stamp
    /// is taken from the open file, so it belongs to the bytes read even if
    /// the path is replaced meanwhile.
    fn read_file(&self, path: &Path) -> io::Result<Option<Bytes>> {
        let Some(mut file) = self.present(path, File::open(path))? else {
            return Ok(None);
        };
        let meta = file.metadata()?;
        let mut content = Vec::with_capacity(meta.size() as usize);
        file.read_to_end(&mut content)?;
        let bytes = Bytes::from(content);
        let stamp = Stamp::of(&meta);
        if stamp.size <= MAX_FILE
            && bytes.len() as u64 == stamp.size
            && stamp.settled(SystemTime::now())
        {
            let mut map = self.map.lock().expect("stamped files lock");
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(path.to_path_buf(), (stamp, bytes.clone()));
        }
        Ok(Some(bytes))
    }

    /// `found` as an option: `None` when there is no file at `path`, which
    /// is then forgotten.
    fn present<T>(&self, path: &Path, found: io::Result<T>) -> io::Result<Option<T>> {
        let found = not_found_is_none(found)?;
        if found.is_none() {
            self.map.lock().expect("stamped files lock").remove(path);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Replace `path` the way the backend publishes files: a new inode
    /// renamed over the old one.
    fn replace(path: &Path, content: &[u8]) {
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, content).unwrap();
        fs::rename(&tmp, path).unwrap();
    }

    /// Make a file look settled: its times set a minute back (this also
    /// moves its change time to now, so the test sets it before reading).
    fn age(path: &Path) {
        let old = SystemTime::now() - Duration::from_secs(60);
        let f = File::options().write(true).open(path).unwrap();
        f.set_modified(old).unwrap();
    }

    #[test]
    fn a_fresh_file_is_read_every_time_and_a_replaced_one_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tag");
        fs::write(&path, b"sha256:aaaa").unwrap();
        let files = StampedFiles::default();
        assert_eq!(files.read(&path).unwrap().unwrap(), &b"sha256:aaaa"[..]);

        // Replaced by a new inode of the same size.
        replace(&path, b"sha256:bbbb");
        assert_eq!(files.read(&path).unwrap().unwrap(), &b"sha256:bbbb"[..]);
        fs::remove_file(&path).unwrap();
        assert_eq!(files.read(&path).unwrap(), None);
    }

    #[test]
    fn a_settled_file_is_kept_and_any_change_to_it_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tag");
        fs::write(&path, b"sha256:aaaa").unwrap();
        let files = StampedFiles::default();
        // Settled SETTLED after its change time, not before.
        let meta = fs::metadata(&path).unwrap();
        let changed = UNIX_EPOCH + Duration::new(meta.ctime() as u64, meta.ctime_nsec() as u32);
        assert!(!Stamp::of(&meta).settled(changed));
        assert!(!Stamp::of(&meta).settled(changed + SETTLED / 2));
        assert!(Stamp::of(&meta).settled(changed + SETTLED));

        // A settled entry put in place by hand, as a read SETTLED from now
        // would keep it; then served from memory while the stamp matches.
        files.map.lock().unwrap().insert(
            path.clone(),
            (Stamp::of(&meta), Bytes::from_static(b"kept copy!!")),
        );
        assert_eq!(files.read(&path).unwrap().unwrap(), &b"kept copy!!"[..]);

        // Rewritten in place (same inode, same size): new times, new stamp.
        age(&path);
        assert_eq!(files.read(&path).unwrap().unwrap(), &b"sha256:aaaa"[..]);
        // Replaced by a new inode: read again.
        replace(&path, b"sha256:cccc");
        assert_eq!(files.read(&path).unwrap().unwrap(), &b"sha256:cccc"[..]);
        // Deleted: gone, and forgotten.
        fs::remove_file(&path).unwrap();
        assert_eq!(files.read(&path).unwrap(), None);
        assert!(files.map.lock().unwrap().get(&path).is_none());
    }
}
