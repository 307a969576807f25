//! Failed-login rate limiting, per user name and per client address.
//!
//! A few failures are free (typos happen); after that each further failure
//! locks the key out for twice as long as the previous one, up to a cap.
//! While a key is locked, attempts are refused before any password is
//! checked, so a brute force costs the registry no bcrypt time.
//!
//! Checking and counting are one step: [`LoginLimiter::reserve`] counts an
//! attempt as in flight, under the same lock as the lockout check, before
//! its password is checked. A key admits only as many attempts in flight as
//! it has failures left before its next lockout (one at a time once it has
//! been locked), so a burst of parallel guesses gets no more checks than the
//! same guesses one after the other; the rest are told to wait
//! ([`Refused::Busy`]) until an attempt in flight ends.
//!
//! The caller passes the current time, which keeps the limiter a pure
//! state machine that tests drive without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Thresholds and lockout lengths.
#[derive(Debug, Clone)]
pub struct LimitPolicy {
    /// Failures per user name before the first lockout.
    pub user_free_failures: u32,
    /// Failures per client address before the first lockout. Higher than per
    /// user: many people may share one address behind NAT.
    pub address_free_failures: u32,
    /// The first lockout; each further failure doubles it.
    pub base_lockout: Duration,
    pub max_lockout: Duration,
    /// A key with no failure for this long starts again from zero.
    pub forget_after: Duration,
    /// Most keys tracked at once (memory stays bounded under a spray).
    pub capacity: usize,
}

impl Default for LimitPolicy {
    fn default() -> LimitPolicy {
        LimitPolicy {
            user_free_failures: 5,
            address_free_failures: 10,
            base_lockout: Duration::from_secs(1),
            max_lockout: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(15 * 60),
            capacity: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

impl Key {
    /// Both keys of one attempt, each with its free failures.
    fn pair(user: &str, address: IpAddr, policy: &LimitPolicy) -> [(Key, u32); 2] {
        [
            (Key::User(user.to_string()), policy.user_free_failures),
            (Key::Address(address), policy.address_free_failures),
        ]
    }
}

type Keys = HashMap<Key, Failures>;

/// A correct password clears the user name's failures (see
/// [`LoginLimiter::record_success`]).
fn clear_user(keys: &mut Keys, user: &str) {
    let key = Key::User(user.to_string());
    if let Some(f) = keys.get_mut(&key) {
        // Attempts still in flight keep the entry that counts them.
        f.count = 0;
        f.locked_until = None;
        if f.is_idle() {
            keys.remove(&key);
        }
    }
}

#[derive(Debug, Clone)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
    /// Attempts reserved and not finished yet.
    in_flight: u32,
}

impl Failures {
    fn new(now: Instant) -> Failures {
        Failures {
            count: 0,
            last: now,
            locked_until: None,
            in_flight: 0,
        }
    }

    /// Whether one more attempt may be in flight. As many may be as the key
    /// has failures left before its next lockout, and one at a time beyond
    /// the free ones (its failure locks the key again).
    fn admits_another(&self, free_failures: u32, now: Instant, forget_after: Duration) -> bool {
        let forgotten = now.saturating_duration_since(self.last) >= forget_after;
        let count = if forgotten { 0 } else { self.count };
        self.in_flight < free_failures.saturating_sub(count).max(1)
    }

    fn is_idle(&self) -> bool {
        self.count == 0 && self.in_flight == 0 && self.locked_until.is_none()
    }

    fn locked_for(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }
}

/// Why a login attempt was refused without checking the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedOut {
    pub retry_after: Duration,
}

/// Why [`LoginLimiter::reserve`] did not admit an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The user name or the address is locked out.
    LockedOut(LockedOut),
    /// As many attempts as the key may still fail are being checked: wait
    /// until one ends, then ask again.
    Busy,
}

/// An admitted login attempt, counted as in flight until it ends with
/// [`Reservation::succeeded`] or [`Reservation::failed`]; dropped without
/// an outcome (the check could not run), it only stops counting.
#[derive(Debug)]
pub struct Reservation {
    limiter: Arc<LoginLimiter>,
    user: String,
    address: IpAddr,
    open: bool,
}

impl Reservation {
    /// The password was right: the user name's failures are cleared.
    pub fn succeeded(mut self) {
        self.open = false;
        self.limiter.finish(&self.user, self.address, None);
    }

    /// The password was wrong: counted against the user name and address.
    pub fn failed(mut self, now: Instant) {
        self.open = false;
        self.limiter.finish(&self.user, self.address, Some(now));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.open {
            self.limiter.release(&self.user, self.address);
        }
    }
}

#[derive(Debug, Default)]
pub struct LoginLimiter {
    policy: LimitPolicy,
    keys: Mutex<Keys>,
}

impl LoginLimiter {
    pub fn new(policy: LimitPolicy) -> LoginLimiter {
        LoginLimiter {
            policy,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// `Err` when either the user name or the address is locked out now.
    pub fn check(&self, user: &str, address: IpAddr, now: Instant) -> Result<(), LockedOut> {
        let keys = self.keys();
        let remaining = [Key::User(user.to_string()), Key::Address(address)]
            .iter()
            .filter_map(|k| keys.get(k)?.locked_for(now))
            .max();
        match remaining {
            Some(retry_after) => Err(LockedOut { retry_after }),
            None => Ok(()),
        }
    }

    /// Admit one attempt to check a password, or say why not. The lockout
    /// check and the count of attempts in flight happen under one lock, so
    /// parallel attempts cannot all pass the check before any failure is
    /// recorded.
    pub fn reserve(
        self: &Arc<Self>,
        user: &str,
        address: IpAddr,
        now: Instant,
    ) -> Result<Reservation, Refused> {
        let mut keys = self.keys();
        let pair = Key::pair(user, address, &self.policy);
        let locked = pair
            .iter()
            .filter_map(|(k, _)| keys.get(k)?.locked_for(now))
            .max();
        if let Some(retry_after) = locked {
            return Err(Refused::LockedOut(LockedOut { retry_after }));
        }
        let forget = self.policy.forget_after;
        let full = pair.iter().any(|(k, free)| {
            keys.get(k)
                .is_some_and(|f| !f.admits_another(*free, now, forget))
        });
        if full {
            return Err(Refused::Busy);
        }
        for (key, _) in pair {
            self.entry(&mut keys, key, now).in_flight += 1;
        }
        Ok(Reservation {
            limiter: self.clone(),
            user: user.to_string(),
            address,
            open: true,
        })
    }

    pub fn record_failure(&self, user: &str, address: IpAddr, now: Instant) {
        self.count_failure(&mut self.keys(), user, address, now);
    }

    fn count_failure(&self, keys: &mut Keys, user: &str, address: IpAddr, now: Instant) {
        for (key, free_failures) in Key::pair(user, address, &self.policy) {
            let entry = self.entry(keys, key, now);
            if now.saturating_duration_since(entry.last) >= self.policy.forget_after {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
            if entry.count >= free_failures {
                entry.locked_until = Some(now + self.lockout(entry.count - free_failures));
            }
        }
    }

    /// A correct password clears the user name's failures. The address keeps
    /// its count: one valid account must not reset a spray against others.
    pub fn record_success(&self, user: &str) {
        clear_user(&mut self.keys(), user);
    }

    /// The attempts in flight for `user` and `address`.
    #[cfg(test)]
    fn in_flight(&self, user: &str, address: IpAddr) -> [u32; 2] {
        let keys = self.keys();
        Key::pair(user, address, &self.policy).map(|(k, _)| keys.get(&k).map_or(0, |f| f.in_flight))
    }

    /// One reserved attempt ended: `failed_at` is when it failed, `None`
    /// for a success. One step under the lock, so no other attempt is
    /// admitted between the end of this one and the count of its outcome.
    fn finish(&self, user: &str, address: IpAddr, failed_at: Option<Instant>) {
        let mut keys = self.keys();
        self.release_locked(&mut keys, user, address);
        match failed_at {
            Some(now) => self.count_failure(&mut keys, user, address, now),
            None => clear_user(&mut keys, user),
        }
    }

    fn release(&self, user: &str, address: IpAddr) {
        self.release_locked(&mut self.keys(), user, address);
    }

    fn release_locked(&self, keys: &mut Keys, user: &str, address: IpAddr) {
        for (key, _) in Key::pair(user, address, &self.policy) {
            if let Some(f) = keys.get_mut(&key) {
                f.in_flight = f.in_flight.saturating_sub(1);
                if f.is_idle() {
                    keys.remove(&key);
                }
            }
        }
    }

    /// The entry for `key`, created (room made first) when missing.
    fn entry<'k>(&self, keys: &'k mut Keys, key: Key, now: Instant) -> &'k mut Failures {
        if !keys.contains_key(&key) && keys.len() >= self.policy.capacity {
            self.make_room(keys, now);
        }
        keys.entry(key).or_insert_with(|| Failures::new(now))
    }

    fn lockout(&self, beyond_free: u32) -> Duration {
        let factor = 2u32.saturating_pow(beyond_free.min(30));
        self.policy
            .base_lockout
            .saturating_mul(factor)
            .min(self.policy.max_lockout)
    }

    /// Drops forgotten keys, then the least recently failed one if needed.
    fn make_room(&self, keys: &mut Keys, now: Instant) {
        let forget = self.policy.forget_after;
        keys.retain(|_, f| {
            now.saturating_duration_since(f.last) < forget
                || f.locked_until.is_some_and(|u| u > now)
                || f.in_flight > 0
        });
        if keys.len() >= self.policy.capacity {
            if let Some(oldest) = keys
                .iter()
                .filter(|(_, f)| f.in_flight == 0)
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone())
            {
                keys.remove(&oldest);
            }
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn five_failures_lock_the_user_then_lockouts_double() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..4 {
            limiter.record_failure("alice", A, t0);
            assert!(limiter.check("alice", A, t0).is_ok(), "failure {i} is free");
        }
        limiter.record_failure("alice", A, t0);
        assert_eq!(
            limiter.check("alice", B, t0),
            Err(LockedOut {
                retry_after: secs(1)
            }),
            "the user is locked from any address"
        );
        assert!(limiter.check("alice", A, t0 + secs(1)).is_ok());
        limiter.record_failure("alice", A, t0 + secs(1));
        assert_eq!(
            limiter
                .check("alice", B, t0 + secs(1))
                .unwrap_err()
                .retry_after,
            secs(2)
        );
        limiter.record_failure("alice", A, t0 + secs(3));
        assert_eq!(
            limiter
                .check("alice", B, t0 + secs(3))
                .unwrap_err()
                .retry_after,
            secs(4)
        );
        assert!(
            limiter.check("bob", B, t0 + secs(3)).is_ok(),
            "others are unaffected"
        );
    }

    #[test]
    fn lockout_is_capped() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..60 {
            limiter.record_failure("alice", A, t0);
        }
        assert_eq!(
            limiter.check("alice", B, t0).unwrap_err().retry_after,
            LimitPolicy::default().max_lockout
        );
    }

    #[test]
    fn one_address_spraying_many_users_gets_locked() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(limiter.check(&format!("user{i}"), A, t0).is_ok());
            limiter.record_failure(&format!("user{i}"), A, t0);
        }
        assert!(
            limiter.check("fresh", A, t0).is_err(),
            "the address is locked"
        );
        assert!(
            limiter.check("fresh", B, t0).is_ok(),
            "other addresses are not"
        );
    }

    #[test]
    fn success_clears_the_user_but_not_the_address() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..9 {
            limiter.record_failure("alice", A, t0);
        }
        limiter.record_success("alice");
        assert!(limiter.check("alice", B, t0).is_ok());
        limiter.record_failure("bob", A, t0);
        assert!(
            limiter.check("carol", A, t0).is_err(),
            "tenth failure from A locks A"
        );
    }

    #[test]
    fn old_failures_are_forgotten() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            limiter.record_failure("alice", A, t0);
        }
        let later = t0 + LimitPolicy::default().forget_after;
        limiter.record_failure("alice", A, later);
        assert!(
            limiter.check("alice", B, later).is_ok(),
            "count restarted at one"
        );
    }

    fn limiter() -> Arc<LoginLimiter> {
        Arc::new(LoginLimiter::default())
    }

    #[test]
    fn parallel_attempts_get_no_more_checks_than_failures_left() {
        let limiter = limiter();
        let t0 = Instant::now();
        let free = LimitPolicy::default().user_free_failures;
        let admitted: Vec<Reservation> = (0..64)
            .filter_map(|_| limiter.reserve("alice", A, t0).ok())
            .collect();
        assert_eq!(admitted.len() as u32, free, "one check per free failure");
        assert_eq!(limiter.reserve("alice", B, t0).unwrap_err(), Refused::Busy);
        assert!(
            limiter.reserve("bob", B, t0).is_ok(),
            "other users and addresses are not held up"
        );
        for r in admitted {
            r.failed(t0);
        }
        assert!(matches!(
            limiter.reserve("alice", A, t0),
            Err(Refused::LockedOut(_))
        ));
        // Past the lockout: one attempt at a time, its failure locks again.
        let t1 = t0 + secs(1);
        let one = limiter.reserve("alice", A, t1).expect("lockout over");
        assert_eq!(limiter.reserve("alice", A, t1).unwrap_err(), Refused::Busy);
        one.failed(t1);
        assert!(matches!(
            limiter.reserve("alice", A, t1),
            Err(Refused::LockedOut(_))
        ));
    }

    #[test]
    fn a_success_clears_the_count_and_dropped_reservations_release() {
        let limiter = limiter();
        let t0 = Instant::now();
        for _ in 0..4 {
            limiter.reserve("alice", A, t0).unwrap().failed(t0);
        }
        let only = limiter.reserve("alice", A, t0).unwrap();
        assert_eq!(limiter.reserve("alice", A, t0).unwrap_err(), Refused::Busy);
        only.succeeded();
        let many: Vec<Reservation> = (0..5)
            .map(|_| limiter.reserve("alice", B, t0).unwrap())
            .collect();
        assert_eq!(limiter.in_flight("alice", B), [5, 5]);
        drop(many);
        assert_eq!(limiter.in_flight("alice", B), [0, 0]);
        assert!(
            limiter.check("alice", B, t0).is_ok(),
            "no outcome, no failure"
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = LoginLimiter::new(LimitPolicy {
            capacity: 8,
            ..LimitPolicy::default()
        });
        let t0 = Instant::now();
        for i in 0..100u32 {
            limiter.record_failure(&format!("u{i}"), A, t0 + Duration::from_millis(i.into()));
        }
        assert!(limiter.keys().len() <= 8);
    }
}
