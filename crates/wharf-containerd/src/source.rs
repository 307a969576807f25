//! Reading and writing the files wharf looks at, with limits that keep a
//! wrong path (a disk image, a log, a device) from being slurped into memory.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Largest configuration file wharf reads. Real containerd configs are a few
/// KiB; anything near this limit is almost certainly the wrong file.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Read a UTF-8 text file of at most [`MAX_FILE_BYTES`].
///
/// Refuses directories, oversized files and binary content with a message
/// that says which and why, instead of failing somewhere inside a parser.
pub fn read_text_file(path: &Path) -> Result<String> {
    let meta = fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    if meta.is_dir() {
        return Err(unreadable(path, "is a directory, expected a file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(unreadable(
            path,
            format!(
                "is {} bytes; refusing files over {} bytes (1 MiB): this is not a containerd configuration file",
                meta.len(),
                MAX_FILE_BYTES
            ),
        ));
    }
    let bytes = read_at_most(path, MAX_FILE_BYTES)?;
    decode_text(path, bytes)
}

/// Reads through `take` so a file that grows (or a FIFO) cannot exceed the limit.
fn read_at_most(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(unreadable(path, "grew past the 1 MiB limit while reading"));
    }
    Ok(bytes)
}

fn decode_text(path: &Path, bytes: Vec<u8>) -> Result<String> {
    if bytes.contains(&0) {
        return Err(unreadable(
            path,
            "contains NUL bytes: this is binary data, not a TOML file",
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        unreadable(
            path,
            format!(
                "is not valid UTF-8 (first bad byte at offset {}): TOML files must be UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

fn unreadable(path: &Path, reason: impl Into<String>) -> Error {
    Error::Unreadable {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Replace `path` with `contents` atomically: readers see the old file or
/// the new one, never a half-written file (containerd re-reads hosts.toml on
/// every pull, so a torn write would be picked up immediately).
///
/// Keeps the permissions of an existing file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let temp = temp_path_beside(path);
    let result = write_then_rename(path, &temp, contents);
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_dir(&dir);
    Ok(())
}

fn write_then_rename(path: &Path, temp: &Path, contents: &[u8]) -> Result<()> {
    let io_err = |source| Error::Io {
        path: temp.to_owned(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .map_err(io_err)?;
    file.write_all(contents).map_err(io_err)?;
    if let Ok(meta) = fs::metadata(path) {
        file.set_permissions(meta.permissions()).map_err(io_err)?;
    }
    file.sync_all().map_err(io_err)?;
    drop(file);
    fs::rename(temp, path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn temp_path_beside(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    parent_dir(path).join(format!(".{name}.wharf-tmp-{}-{n}", std::process::id()))
}

/// Best effort: persist the rename itself. Failure only weakens durability.
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Maps byte offsets to 1-based line and column (columns count characters,
/// which is what editors show).
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, line_starts }
    }

    /// 1-based (line, column) of a byte offset; offsets past the end clamp.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = char_count_until(&self.text[start..], offset - start) + 1;
        (line + 1, column)
    }
}

/// Characters in `s` before byte `end`, tolerating an `end` inside a character.
fn char_count_until(s: &str, end: usize) -> usize {
    s.char_indices().take_while(|(i, _)| *i < end).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_counts_from_one() {
        let idx = LineIndex::new("a = 1\nbé = 2\n");
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(6), (2, 1));
        // 'é' is two bytes; the '=' after "bé " is the 4th character.
        assert_eq!(idx.position(10), (2, 4));
        assert_eq!(idx.position(999), (3, 1));
    }
}
