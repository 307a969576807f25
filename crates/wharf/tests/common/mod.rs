//! What only the binary's end-to-end tests share: the `wharf` binary run
//! as a command ([`cli`]) and as a server ([`server`], [`tls`]), a small
//! blocking registry API client, an isolated containerd driven through the
//! binary's own config commands, raw sockets for the server's limits, and
//! stand-ins for upstream registries. Images, processes, tools, network
//! namespaces and ports come from `wharf_testkit`.
//!
//! Every test binary includes this module but uses a different subset of it.
#![allow(dead_code)]

pub mod api;
pub mod cli;
pub mod containerd;
pub mod net;
pub mod redirector;
pub mod server;
pub mod standin;
pub mod tls;
