//! Failed-login rate limiting, per user name and per client address.
//!
//! A few failures are free (typos happen); after that each further failure
//! locks the key out for twice as long as the previous one, up to a cap.
//! While a key is locked, attempts are refused before any password is
//! checked, so a brute force costs the registry no bcrypt time.
//!
//! The caller passes the current time, which keeps the limiter a pure
//! state machine that tests drive without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
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

#[derive(Debug, Clone)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Why a login attempt was refused without checking the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedOut {
    pub retry_after: Duration,
}

#[derive(Debug, Default)]
pub struct LoginLimiter {
    policy: LimitPolicy,
    keys: Mutex<HashMap<Key, Failures>>,
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
            .filter_map(|k| keys.get(k)?.locked_until)
            .filter_map(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
            .max();
        match remaining {
            Some(retry_after) => Err(LockedOut { retry_after }),
            None => Ok(()),
        }
    }

    pub fn record_failure(&self, user: &str, address: IpAddr, now: Instant) {
        let mut keys = self.keys();
        let free = [
            (Key::User(user.to_string()), self.policy.user_free_failures),
            (Key::Address(address), self.policy.address_free_failures),
        ];
        for (key, free_failures) in free {
            if !keys.contains_key(&key) && keys.len() >= self.policy.capacity {
                self.make_room(&mut keys, now);
            }
            let entry = keys.entry(key).or_insert(Failures {
                count: 0,
                last: now,
                locked_until: None,
            });
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
        self.keys().remove(&Key::User(user.to_string()));
    }

    fn lockout(&self, beyond_free: u32) -> Duration {
        let factor = 2u32.saturating_pow(beyond_free.min(30));
        self.policy
            .base_lockout
            .saturating_mul(factor)
            .min(self.policy.max_lockout)
    }

    /// Drops forgotten keys, then the least recently failed one if needed.
    fn make_room(&self, keys: &mut HashMap<Key, Failures>, now: Instant) {
        let forget = self.policy.forget_after;
        keys.retain(|_, f| {
            now.saturating_duration_since(f.last) < forget
                || f.locked_until.is_some_and(|u| u > now)
        });
        if keys.len() >= self.policy.capacity {
            if let Some(oldest) = keys
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone())
            {
                keys.remove(&oldest);
            }
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
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
