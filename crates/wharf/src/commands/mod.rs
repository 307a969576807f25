//! One module per command. Each takes its parsed arguments and returns
//! `anyhow::Result<ExitCode>`; `main` hands that to [`crate::exit::finish`].
//! Shared flags live in [`crate::flags`], printing in [`crate::output`],
//! settings files in [`crate::settings`].

pub mod auth;
pub mod ca;
pub mod containerd;
pub mod copy;
pub mod doctor;
pub mod fsck;
pub mod gc;
pub mod images;
pub mod load;
pub mod login;
pub mod save;
pub mod serve;
pub mod warm;

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use wharf_transfer::{parse_list, parse_sync_file, Input};

use crate::exit::usage;

/// What a command's async work is like; it decides the runtime's threads.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    /// The registry: a worker per core and two more (`SERVE_EXTRA_WORKERS`).
    Serve,
    /// Moving images: a worker per core, at most eight; transfers are I/O
    /// bound beyond that.
    Transfer,
    /// A few requests in a row: one thread.
    Requests,
}

/// Workers the registry runs beyond one per core. A request's small-file
/// reads (the tag and revision links: a `stat`, sometimes an `open` and a
/// `read`) run on the worker itself, because handing each to the blocking
/// pool cost more than the read; a worker waiting in the kernel on a cold
/// lookup would otherwise leave its core idle. Measured on 2 cores with
/// everything cached: 2 more workers served 11–13 % more manifest GETs and
/// 5 % more blob HEADs at the same push and pull rates, for 7 MiB more
/// resident; 4 more served another 3 % of GETs but pulled 4 % slower
/// and held 12 MiB more (BENCHMARKS.md).
const SERVE_EXTRA_WORKERS: usize = 2;

/// The one place a tokio runtime is built.
pub fn runtime(work: Work) -> anyhow::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut builder = match work {
        Work::Requests => tokio::runtime::Builder::new_current_thread(),
        Work::Serve => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(cores + SERVE_EXTRA_WORKERS);
            b
        }
        Work::Transfer => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(cores.min(8));
            b
        }
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Largest list or sync file read (a list of references is small).
const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

/// A file the user named, or stdin for `-`, read whole (up to a bound).
pub fn read_input(path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_INPUT_BYTES)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_INPUT_BYTES).read_to_string(&mut text))
    };
    read.map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(text)
}

/// The images of a list (one a line, `#` comments) or of a TOML sync file
/// (`*.toml`), as `sync` and `warm` take them.
pub fn read_image_list(path: &Path) -> anyhow::Result<Input> {
    let text = read_input(path)?;
    if path.extension().is_some_and(|e| e == "toml") {
        parse_sync_file(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
    } else {
        Ok(parse_list(&text))
    }
}
