//! Shared code for the end-to-end tests: a generator for real container
//! images, process guards, a handle on a running `wharf serve`, a small
//! registry API client, an isolated containerd and a network namespace helper.
//!
//! Every test binary includes this module but uses a different subset of it.
#![allow(dead_code)]

pub mod api;
pub mod containerd;
pub mod image;
pub mod net;
pub mod netns;
pub mod process;
pub mod redirector;
pub mod server;
pub mod standin;
pub mod tls;
pub mod tools;
