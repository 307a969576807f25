//! The summary of the commands that move images (copy, sync, load, save):
//! failures and notes on stderr, one line each; then a table or the JSON
//! document on stdout.

use std::io::Write;

use wharf_transfer::{ImageReport, Status};

use super::{print_json, short_digest, stdout, Format, Table};

/// Which command's summary: they differ in what a row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    Copy,
    Sync,
    Load,
    /// Images written into a bundle: no destination per image, and
    /// "saved" only when the bundle itself was written.
    Save {
        written: bool,
    },
}

impl TransferKind {
    pub fn command(self) -> &'static str {
        match self {
            TransferKind::Copy => "copy",
            TransferKind::Sync => "sync",
            TransferKind::Load => "load",
            TransferKind::Save { .. } => "save",
        }
    }
}

/// Failures and notes on stderr; then the summary on stdout.
pub fn print_transfer(
    kind: TransferKind,
    format: Format,
    dry_run: bool,
    reports: &[ImageReport],
    notes: &[String],
) -> std::io::Result<()> {
    for r in reports {
        for note in &r.notes {
            eprintln!("note: {}: {note}", r.source);
        }
        if let Some(error) = &r.error {
            eprintln!("error: {}: {error}", r.source);
        }
    }
    print_hints(reports);
    match format {
        Format::Json => print_json(
            kind.command(),
            serde_json::json!({
                "dry_run": dry_run,
                "summary": totals(reports),
                "notes": notes,
                "images": reports,
            }),
        ),
        Format::Text => write_text(&mut stdout(), kind, dry_run, reports),
    }
}

/// After the errors, a blank line and each distinct next step once.
fn print_hints(reports: &[ImageReport]) {
    let mut hints: Vec<&str> = Vec::new();
    for hint in reports.iter().filter_map(ImageReport::hint) {
        if !hints.contains(&hint) {
            hints.push(hint);
        }
    }
    if !hints.is_empty() {
        eprintln!();
    }
    for hint in hints {
        eprintln!("hint: {hint}");
    }
}

fn totals(reports: &[ImageReport]) -> serde_json::Value {
    let count = |s: Status| reports.iter().filter(|r| r.status == s).count();
    serde_json::json!({
        "images": reports.len(),
        "copied": count(Status::Copied),
        "up_to_date": count(Status::UpToDate),
        "planned": count(Status::Planned),
        "failed": count(Status::Failed),
        "bytes_sent": reports.iter().map(|r| r.bytes_sent).sum::<u64>(),
    })
}

fn write_text(
    out: &mut impl Write,
    kind: TransferKind,
    dry_run: bool,
    reports: &[ImageReport],
) -> std::io::Result<()> {
    let table = match kind {
        TransferKind::Save { written } => save_table(reports, written),
        _ => transfer_table(reports, dry_run),
    };
    table.write(out)?;
    let bytes: u64 = reports.iter().map(|r| r.bytes_sent).sum();
    let failed = reports.iter().filter(|r| r.is_failed()).count();
    let verb = match kind {
        TransferKind::Save { .. } => "written",
        _ if dry_run => "to send",
        _ => "sent",
    };
    writeln!(
        out,
        "{} images, {failed} failed, {} {verb}",
        reports.len(),
        indicatif::HumanBytes(bytes)
    )
}

/// Where each image landed beside what moved: the one string a node pulls.
fn transfer_table(reports: &[ImageReport], dry_run: bool) -> Table {
    let sent = if dry_run { "TO SEND" } else { "SENT" };
    let mut table = Table::new(&[
        "IMAGE",
        "DESTINATION",
        "DIGEST",
        sent,
        "SKIPPED",
        "MOUNTED",
        "STATUS",
    ]);
    for r in reports {
        table.row(vec![
            r.source.clone(),
            r.destination.clone().unwrap_or_else(|| "-".into()),
            digest_cell(r),
            indicatif::HumanBytes(r.bytes_sent).to_string(),
            r.blobs_skipped.to_string(),
            r.blobs_mounted.to_string(),
            r.status.as_str().to_string(),
        ]);
    }
    table
}

/// A bundle has no per-image destination: what each image added to it.
fn save_table(reports: &[ImageReport], written: bool) -> Table {
    let mut table = Table::new(&["IMAGE", "DIGEST", "WRITTEN", "SHARED", "STATUS"]);
    for r in reports {
        let status = match r.status {
            Status::Failed => "failed",
            _ if !written => "not written",
            _ => "saved",
        };
        table.row(vec![
            r.source.clone(),
            digest_cell(r),
            indicatif::HumanBytes(r.bytes_sent).to_string(),
            r.blobs_skipped.to_string(),
            status.to_string(),
        ]);
    }
    table
}

fn digest_cell(r: &ImageReport) -> String {
    r.digest
        .as_ref()
        .map_or("-".into(), |d| short_digest(&d.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(kind: TransferKind, reports: &[ImageReport]) -> String {
        let mut out = Vec::new();
        write_text(&mut out, kind, false, reports).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_table_names_every_image_and_where_it_landed() {
        let mut ok = ImageReport::new(
            "registry.k8s.io/pause:3.10",
            Some("127.0.0.1:5000/registry.k8s.io/pause:3.10".into()),
        );
        ok.bytes_sent = 2048;
        let failed = ImageReport::failed("b", "invalid", "nope".into());
        let text = text(TransferKind::Copy, &[ok, failed]);
        assert!(text.contains("DESTINATION"), "{text}");
        assert!(
            text.contains("127.0.0.1:5000/registry.k8s.io/pause:3.10"),
            "{text}"
        );
        assert!(text.contains("2.00 KiB"), "{text}");
        assert!(text.contains("2 images, 1 failed, 2.00 KiB sent"), "{text}");
    }

    #[test]
    fn save_says_saved_and_written_not_copied_and_sent() {
        let mut r = ImageReport::new("docker.io/library/alpine:3.21", Some("b.tar".into()));
        r.bytes_sent = 4096;
        let saved = text(
            TransferKind::Save { written: true },
            std::slice::from_ref(&r),
        );
        assert!(
            saved.contains("saved") && saved.contains("WRITTEN"),
            "{saved}"
        );
        assert!(
            !saved.contains("copied") && !saved.contains("MOUNTED"),
            "{saved}"
        );
        assert!(
            saved.contains("1 images, 0 failed, 4.00 KiB written"),
            "{saved}"
        );
        let unwritten = text(TransferKind::Save { written: false }, &[r]);
        assert!(unwritten.contains("not written"), "{unwritten}");
    }
}
