//! What wharf's integration tests share, one of each: the wharf registry
//! served in-process ([`wharf`]), Debian's `docker-registry` as a child
//! process ([`docker_registry`]), a Docker token server ([`token`]), a
//! loopback-only network namespace ([`netns`]), a deterministic image
//! factory ([`image`]), and the small things every suite needs: free ports
//! ([`net`]), bounded polling ([`wait`]), digests and test bytes
//! ([`digest`]), reaped child processes ([`process`]), external tools run
//! with bounded time ([`tools`]) and a loopback PKI made with `openssl`
//! ([`pki`]).
//!
//! Every server binds 127.0.0.1 on a port the OS picks and stops when its
//! handle is dropped; every child process is killed by its PID. The crate
//! is a dev-dependency only: no library crate depends on it otherwise.

pub mod digest;
pub mod docker_registry;
pub mod image;
pub mod net;
pub mod netns;
pub mod pki;
pub mod process;
pub mod token;
pub mod tools;
pub mod wait;
pub mod wharf;

pub use digest::{digest_hex, pseudo_random, sha256_digest, sha512_digest};
pub use docker_registry::{DockerAuth, DockerRegistry};
pub use net::free_port;
pub use netns::in_private_netns;
pub use token::{TokenPolicy, TokenServer};
pub use wait::{eventually, wait_for};
pub use wharf::WharfRegistry;
