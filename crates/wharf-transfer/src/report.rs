//! What happened to each image, and the events a front end draws progress
//! from. The library prints nothing.

use serde::Serialize;
use wharf_oci::Digest;

/// Version of the JSON document a front end prints from [`ImageReport`]s.
pub const REPORT_VERSION: u32 = 1;

/// How one image ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Manifests and blobs were written.
    Copied,
    /// The destination already had the same digest; nothing was written.
    UpToDate,
    /// `--dry-run`: what would be copied was worked out, nothing written.
    Planned,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Copied => "copied",
            Status::UpToDate => "up-to-date",
            Status::Planned => "planned",
            Status::Failed => "failed",
        }
    }
}

/// The outcome of one image of a run.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// The source as the user wrote it or as it was expanded (normalised).
    pub source: String,
    pub destination: Option<String>,
    /// The digest the destination now serves (the source's, unless a
    /// filtered index had to be written).
    pub digest: Option<Digest>,
    /// The source's digest, when different from `digest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    pub status: Status,
    /// Blob bytes uploaded (or that would be, with `--dry-run`).
    pub bytes_sent: u64,
    pub blobs_sent: u32,
    /// Blobs the destination already had.
    pub blobs_skipped: u32,
    /// Blobs linked from another repository of the destination.
    pub blobs_mounted: u32,
    pub manifests_written: u32,
    pub referrers_copied: u32,
    /// Things the user should know (filtered index written…).
    pub notes: Vec<String>,
    /// `cause: message` when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_cause: Option<&'static str>,
}

impl ImageReport {
    pub fn new(source: impl Into<String>, destination: Option<String>) -> ImageReport {
        ImageReport {
            source: source.into(),
            destination,
            digest: None,
            source_digest: None,
            status: Status::Copied,
            bytes_sent: 0,
            blobs_sent: 0,
            blobs_skipped: 0,
            blobs_mounted: 0,
            manifests_written: 0,
            referrers_copied: 0,
            notes: Vec::new(),
            error: None,
            error_cause: None,
        }
    }

    /// A report for an image that failed before anything was attempted.
    pub fn failed(source: impl Into<String>, cause: &'static str, message: String) -> ImageReport {
        let mut r = ImageReport::new(source, None);
        r.fail(cause, message);
        r
    }

    pub fn fail(&mut self, cause: &'static str, message: String) {
        self.status = Status::Failed;
        self.error_cause = Some(cause);
        self.error = Some(message);
    }

    pub fn is_failed(&self) -> bool {
        self.status == Status::Failed
    }

    /// What to do next about this image's failure, for a `hint:` line; one
    /// per kind of cause, so a front end can print each once per run.
    pub fn hint(&self) -> Option<&'static str> {
        hint_for(self.error_cause?)
    }
}

/// The next step for the common causes of a failed image; `None` where the
/// message itself is all there is to say.
fn hint_for(cause: &str) -> Option<&'static str> {
    match cause {
        "not-found" => Some(
            "check the repository and tag of each image named above: the registry has no manifest under that name",
        ),
        "unauthorized" => Some(
            "give credentials for that registry: --src-creds or --dest-creds USER:PASS, or log in with \
             `podman login HOST` or `docker login HOST` (wharf reads what they write)",
        ),
        "denied" => Some(
            "the credentials were accepted but do not allow this: ask for pull access at the source and push access at the destination",
        ),
        "network" => Some(
            "check the registry's host and port, and that this machine reaches it (a proxy or firewall in between?); \
             a registry on plain HTTP needs --insecure=HOST",
        ),
        _ => None,
    }
}

/// Progress of a run, called from many tasks at once: keep it cheap.
/// Images are named by their index in the job list given to the run.
pub trait Events: Send + Sync {
    /// The image's manifests are known; `bytes` is what it has to upload.
    fn image_planned(&self, _index: usize, _source: &str, _bytes: u64) {}
    /// `bytes` more blob bytes of the image went to the destination.
    fn bytes_sent(&self, _index: usize, _bytes: u64) {}
    /// A blob of `bytes` counted in `image_planned` did not have to move
    /// (the destination had it, or mounted it).
    fn bytes_not_needed(&self, _index: usize, _bytes: u64) {}
    fn image_finished(&self, _index: usize, _report: &ImageReport) {}
}

/// Events nobody listens to.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl Events for NoEvents {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_causes_come_with_a_hint_and_others_without() {
        for cause in ["not-found", "unauthorized", "denied", "network"] {
            let report = ImageReport::failed("a/b:1", cause, "message".to_owned());
            assert!(report.hint().is_some(), "{cause}");
        }
        let report = ImageReport::failed("a/b:1", "digest-mismatch", "message".to_owned());
        assert_eq!(report.hint(), None);
        assert_eq!(ImageReport::new("a/b:1", None).hint(), None);
    }
}
