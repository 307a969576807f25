//! Copying images between registries, digest for digest: `wharf copy` and
//! `wharf sync`.
//!
//! - [`input`] reads what to copy (a list or a TOML sync file) and turns it
//!   into [`ImageJob`]s, listing and filtering tags at the source;
//! - [`Transfer`] copies jobs in parallel from a [`Source`] (a registry,
//!   or a bundle, layout or archive that `wharf-bundle` reads): manifests
//!   byte for byte, each distinct blob streamed once (verified on the way,
//!   mounted where it is needed again), nothing rewritten unless the
//!   destination refuses a partial index;
//! - progress goes to an [`Events`] implementation; the crate prints nothing.
//!
//! A rerun with nothing new costs one manifest HEAD per image at each
//! registry (plus one ping per registry): the digests match and the image
//! stops there.

mod blobs;
mod copy;
pub mod destination;
mod error;
pub mod input;
pub mod platform;
mod report;
mod source;

pub use copy::{
    filtered_index, resolve_tree, unique_blobs, ImageJob, Options, Transfer, TreeNode, DEFAULT_JOBS,
};
pub use destination::{check_collisions, DestinationMap};
pub use error::{Result, TransferError};
pub use input::{parse_list, parse_sync_file, plan_jobs, Input, Request, TagFilter, TagSelection};
pub use platform::PlatformSpec;
pub use report::{Events, ImageReport, NoEvents, Status, REPORT_VERSION};
pub use source::{Source, SourceBlob};
