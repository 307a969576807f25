//! Registry storage: content-addressed blobs, resumable uploads, manifests,
//! tags and referrers, behind one small [`Backend`] interface.
//!
//! Architecture invariants:
//! - This crate knows nothing of HTTP. It speaks in repository names, digests
//!   and byte streams.
//! - A blob becomes visible under a digest only after the bytes the backend
//!   holds were hashed and matched that digest ([`Store::finish_upload`]).
//! - Every visible object is written atomically (temp file, fsync, rename,
//!   fsync directory on the filesystem backend): a crash at any moment leaves
//!   either the old or the new object, never a torn one.
//! - Manifests are stored exactly as pushed, with the media type they were
//!   pushed with; nothing is ever converted.

mod backend;
mod duration;
mod error;
mod fs;
mod fsck;
mod gc;
pub mod layout;
mod stamped;
mod store;
pub mod testsuite;
mod writeback;

pub use backend::{AppendOutcome, Backend, ByteStream, Durability, UploadReader, WriteObserver};
pub use duration::SettingDuration;
pub use error::{StorageError, StorageResult};
pub use fs::FsBackend;
pub use fsck::{FsckReport, Problem};
pub use gc::{GcOptions, GcReport, Glob, PatternError, Removed, RemovedObject, RetentionRule};
pub use store::{
    bounded_referrer, ManifestPut, ManifestPutOptions, ReferrerPage, StorageUsage, Store,
    StoredManifest, TagPage, UploadStatus, UploadWatcher, REFERRERS_PAGE_BYTES,
    REFERRER_ANNOTATIONS_MAX_BYTES,
};
