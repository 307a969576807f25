//! Helpers shared by the lint rules: positions from toml_edit spans and
//! "did you mean" suggestions.

use std::ops::Range;
use std::path::Path;

use toml_edit::{Item, TableLike};

use crate::diagnostic::{Code, Diagnostic, Position, Severity};
use crate::source::LineIndex;

/// A file being linted: its path, its text and a line index.
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    index: LineIndex<'a>,
}

impl<'a> Source<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Source {
            path,
            text,
            index: LineIndex::new(text),
        }
    }

    pub fn position(&self, span: Option<Range<usize>>) -> Option<Position> {
        span.map(|s| {
            let (line, column) = self.index.position(s.start);
            Position { line, column }
        })
    }

    /// A diagnostic pointing at `span` (or at the whole file when `None`).
    pub fn diag(
        &self,
        code: Code,
        severity: Severity,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::new(code, severity, self.path, message).at(self.position(span), Some(self.text))
    }

    pub fn line_text(&self, position: Option<Position>) -> Option<&'a str> {
        position.and_then(|p| self.text.lines().nth(p.line - 1))
    }
}

/// Span of `key` inside `table`: the key itself if toml_edit kept its
/// span (keys in headers and key/value pairs), else the value.
pub(crate) fn key_span(table: &dyn TableLike, key: &str) -> Option<Range<usize>> {
    let key_span = table.key(key).and_then(|k| k.span());
    key_span.or_else(|| table.get(key).and_then(Item::span))
}

/// Iterate a table-like item's entries (empty for anything else).
pub(crate) fn entries(item: &Item) -> Vec<(&str, &Item)> {
    item.as_table_like()
        .map(|t| t.iter().collect())
        .unwrap_or_default()
}

/// The closest candidate to `word`, if it is close enough to be a typo.
pub(crate) fn nearest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&word, c), *c))
        .filter(|(d, c)| *d <= 3 && *d < c.len().max(2) / 2 + 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// "Did you mean" text, or an empty string.
pub(crate) fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_keys_only() {
        let keys = ["config_path", "mirrors", "configs"];
        assert_eq!(nearest("config_paths", &keys), Some("config_path"));
        assert_eq!(nearest("mirror", &keys), Some("mirrors"));
        assert_eq!(nearest("sandbox_image", &keys), None);
    }
}
