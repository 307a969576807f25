//! Authentication and authorisation for the wharf registry, as pure logic:
//! no HTTP server lives here.
//!
//! - [`users`]: passwords checked against an htpasswd file of bcrypt
//!   entries, reloaded when it changes, successes cached briefly.
//! - [`ratelimit`]: failed logins per user name and per client address,
//!   with exponential lockout.
//! - [`access`]: `[[access]]` rules and their evaluation.
//! - [`token`]: the Docker registry token protocol (ES256 JWTs).
//!
//! Architecture invariants:
//! - Secrets (passwords, hashes, tokens, keys) never appear in a `Debug`
//!   output, an error message or a log line.
//! - Writes (push, delete) always need an authenticated user.

pub mod access;
pub mod htpasswd;
pub mod ratelimit;
pub mod token;
pub mod users;

use std::path::PathBuf;

pub use access::{AccessPolicy, AccessRule, Action, Actions, RepoPattern, Subject};
pub use htpasswd::Htpasswd;
pub use ratelimit::{LimitPolicy, LockedOut, LoginLimiter, Refused, Reservation};
pub use token::{
    write_private, Claims, IssuedToken, ResourceActions, Scope, TokenKey, TokenRejected,
    TokenService,
};
pub use users::UserStore;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {why}", path = path.display())]
    Htpasswd {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("access rule: {0}")]
    Rule(String),
    #[error("token key: {0}")]
    Key(String),
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("the password is {0} bytes long; bcrypt uses only the first {max}, so it is refused rather than cut short", max = htpasswd::MAX_PASSWORD_BYTES)]
    PasswordTooLong(usize),
    #[error("{0:?} cannot be a user name: it must be non-empty, without ':', spaces or control characters, and not \"anonymous\"")]
    UserName(String),
}
