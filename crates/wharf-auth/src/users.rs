//! Password verification against an htpasswd file, reloaded when it
//! changes, with a small cache of successful verifications.
//!
//! bcrypt costs ~50–250 ms by design, and Basic auth sends the password on
//! every request: without the cache a `docker pull` of a 30-layer image
//! would spend seconds hashing. Only successes are cached, keyed by a
//! SHA-256 of (user, password, stored hash), so a password change (a new
//! hash) or a removed user invalidates the entry at once, and the cache
//! never holds a password in the clear.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::htpasswd::Htpasswd;
use crate::AuthError;

/// How long a successful verification is trusted without bcrypt.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Most successful verifications remembered at once.
pub const CACHE_CAPACITY: usize = 4096;

/// What identifies one version of the htpasswd file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        })
    }
}

struct Loaded {
    htpasswd: Htpasswd,
    stamp: Option<FileStamp>,
}

/// Users from one htpasswd file.
pub struct UserStore {
    path: PathBuf,
    loaded: Mutex<Loaded>,
    cache: Mutex<VerifyCache>,
    bcrypt_runs: AtomicU64,
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl UserStore {
    /// Loads `path`; a missing, unreadable or invalid file is an error.
    pub fn open(path: &Path) -> Result<UserStore, AuthError> {
        let stamp = FileStamp::of(path);
        let htpasswd = Htpasswd::load(path)?;
        Ok(UserStore {
            path: path.to_path_buf(),
            loaded: Mutex::new(Loaded { htpasswd, stamp }),
            cache: Mutex::new(VerifyCache::new(CACHE_CAPACITY, CACHE_TTL)),
            bcrypt_runs: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `password` is `user`'s. May run bcrypt: call it where
    /// blocking for a fraction of a second is acceptable. A password longer
    /// than bcrypt reads is wrong for every user (bcrypt would compare only
    /// its first 72 bytes); it is refused without running bcrypt, which
    /// tells nothing about the user name since it happens for all of them.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        if password.len() > crate::htpasswd::MAX_PASSWORD_BYTES {
            return false;
        }
        self.reload_if_changed();
        let hash = self.loaded().htpasswd.hash_of(user).map(str::to_string);
        let Some(hash) = hash else {
            // Spend the same time as for a real user, so response times do
            // not tell which user names exist.
            self.run_bcrypt(password, dummy_hash());
            return false;
        };
        let key = cache_key(user, password, &hash);
        let now = Instant::now();
        if self.cache().contains(&key, now) {
            return true;
        }
        let ok = self.run_bcrypt(password, &hash);
        if ok {
            self.cache().insert(key, now);
        }
        ok
    }

    /// How many bcrypt verifications ran (for tests and metrics: a cached
    /// or refused attempt does not count).
    pub fn bcrypt_runs(&self) -> u64 {
        self.bcrypt_runs.load(Ordering::Relaxed)
    }

    pub fn user_count(&self) -> usize {
        self.reload_if_changed();
        self.loaded().htpasswd.len()
    }

    fn run_bcrypt(&self, password: &str, hash: &str) -> bool {
        self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
        bcrypt::verify(password, hash).unwrap_or(false)
    }

    /// Reloads the file when its modification time, size or inode changed
    /// (editors and `wharf auth htpasswd` replace it by rename). A file that
    /// became invalid is reported and the previous users stay in force, so a
    /// half-edited file never locks everybody out.
    fn reload_if_changed(&self) {
        let stamp = FileStamp::of(&self.path);
        if stamp == self.loaded().stamp {
            return;
        }
        match Htpasswd::load(&self.path) {
            Ok(htpasswd) => {
                tracing::info!(path = %self.path.display(), users = htpasswd.len(), "htpasswd file reloaded");
                *self.loaded() = Loaded { htpasswd, stamp };
            }
            Err(e) => {
                tracing::warn!(error = %e, "htpasswd file changed but cannot be used; keeping the previous users");
                self.loaded().stamp = stamp;
            }
        }
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, VerifyCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn cache_key(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    // Lengths first, so no two different triples hash the same bytes.
    for part in [user, password, hash] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// A bcrypt hash of a random password, at the default cost, for unknown users.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let random = uuid::Uuid::new_v4().to_string();
        bcrypt::hash(random, crate::htpasswd::DEFAULT_COST).unwrap_or_default()
    })
}

/// Successful verifications with an expiry, bounded in size.
struct VerifyCache {
    entries: HashMap<[u8; 32], Instant>,
    capacity: usize,
    ttl: Duration,
}

impl VerifyCache {
    fn new(capacity: usize, ttl: Duration) -> VerifyCache {
        VerifyCache {
            entries: HashMap::new(),
            capacity,
            ttl,
        }
    }

    fn contains(&mut self, key: &[u8; 32], now: Instant) -> bool {
        match self.entries.get(key) {
            Some(expiry) if *expiry > now => true,
            Some(_) => {
                self.entries.remove(key);
                false
            }
            None => false,
        }
    }

    fn insert(&mut self, key: [u8; 32], now: Instant) {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, expiry| *expiry > now);
        }
        if self.entries.len() >= self.capacity {
            // Still full of live entries: drop the one closest to expiry.
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, expiry)| **expiry)
                .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, now + self.ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::htpasswd::hash_password;

    fn write(path: &Path, text: &str) {
        // Replace by rename, as editors and `wharf auth htpasswd` do.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn verifies_and_caches_only_successes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        write(
            &path,
            &format!("alice:{}\n", hash_password("pw", 4).unwrap()),
        );
        let users = UserStore::open(&path).unwrap();
        assert!(users.verify("alice", "pw"));
        assert_eq!(users.bcrypt_runs(), 1);
        assert!(users.verify("alice", "pw"));
        assert_eq!(
            users.bcrypt_runs(),
            1,
            "a repeated success must come from the cache"
        );
        assert!(!users.verify("alice", "wrong"));
        assert!(!users.verify("alice", "wrong"));
        assert_eq!(users.bcrypt_runs(), 3, "failures are never cached");
        assert!(!users.verify("nobody", "pw"));
        assert_eq!(
            users.bcrypt_runs(),
            4,
            "unknown users cost a bcrypt run too"
        );
    }

    #[test]
    fn a_password_longer_than_72_bytes_never_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let password = "p".repeat(72);
        // What another tool may have written: bcrypt of the first 72 bytes.
        let hash = bcrypt::hash(&password, 4).unwrap();
        write(&path, &format!("alice:{hash}\n"));
        let users = UserStore::open(&path).unwrap();
        assert!(users.verify("alice", &password));
        for extra in ["!", "anything else at all"] {
            assert!(
                !users.verify("alice", &format!("{password}{extra}")),
                "a password sharing the first 72 bytes must not log in"
            );
        }
        assert_eq!(users.bcrypt_runs(), 1, "refused without bcrypt");
    }

    #[test]
    fn reloads_a_changed_file_and_forgets_the_old_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        write(
            &path,
            &format!("alice:{}\n", hash_password("old", 4).unwrap()),
        );
        let users = UserStore::open(&path).unwrap();
        assert!(users.verify("alice", "old"));
        write(
            &path,
            &format!(
                "alice:{}\nbob:{}\n",
                hash_password("new", 4).unwrap(),
                hash_password("b", 4).unwrap()
            ),
        );
        assert!(
            !users.verify("alice", "old"),
            "the cached success must not outlive the entry"
        );
        assert!(users.verify("alice", "new"));
        assert!(users.verify("bob", "b"));
        assert_eq!(users.user_count(), 2);
    }

    #[test]
    fn an_invalid_new_file_keeps_the_previous_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        write(
            &path,
            &format!("alice:{}\n", hash_password("pw", 4).unwrap()),
        );
        let users = UserStore::open(&path).unwrap();
        write(&path, "alice:$apr1$x$y\n");
        assert!(users.verify("alice", "pw"));
        assert!(UserStore::open(&path).is_err());
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let mut cache = VerifyCache::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        cache.insert([1; 32], t0);
        assert!(cache.contains(&[1; 32], t0 + Duration::from_secs(9)));
        assert!(!cache.contains(&[1; 32], t0 + Duration::from_secs(10)));
        cache.insert([1; 32], t0);
        cache.insert([2; 32], t0 + Duration::from_secs(1));
        cache.insert([3; 32], t0 + Duration::from_secs(2));
        assert_eq!(cache.entries.len(), 2);
        assert!(
            !cache.contains(&[1; 32], t0 + Duration::from_secs(2)),
            "oldest evicted"
        );
        assert!(cache.contains(&[3; 32], t0 + Duration::from_secs(2)));
    }

    #[test]
    fn cache_keys_do_not_collide_on_concatenation() {
        assert_ne!(cache_key("ab", "c", "h"), cache_key("a", "bc", "h"));
    }
}
