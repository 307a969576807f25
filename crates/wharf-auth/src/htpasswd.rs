//! htpasswd files holding bcrypt entries (`user:$2y$…`), the format Apache's
//! `htpasswd -B` and CNCF distribution use.
//!
//! Other hash kinds (MD5 `$apr1$`, `{SHA}`, crypt, plain text) are refused
//! at load: they are cheap to brute-force, and accepting them silently would
//! weaken every deployment that carried one over by accident.

use std::collections::HashMap;
use std::path::Path;

use crate::AuthError;

/// bcrypt cost of entries wharf writes (~250 ms per verification here, the
/// cache of successful verifications keeps that off steady traffic).
pub const DEFAULT_COST: u32 = bcrypt::DEFAULT_COST;

/// Longest password bcrypt can tell apart: it ignores every byte after the
/// 72nd, so a longer password would let in anything sharing its first 72
/// bytes. Longer passwords are refused when set and at login.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// Parsed entries: user name to bcrypt hash.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Htpasswd {
    entries: HashMap<String, String>,
}

impl std::fmt::Debug for Htpasswd {
    // Hashes are secrets too (they can be brute-forced offline).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut users: Vec<&String> = self.entries.keys().collect();
        users.sort();
        f.debug_struct("Htpasswd").field("users", &users).finish()
    }
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Htpasswd::parse(&text, path)
    }

    /// `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Htpasswd, AuthError> {
        let mut entries = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let refuse = |why: String| AuthError::Htpasswd {
                path: origin.to_path_buf(),
                line: index + 1,
                why,
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| refuse("expected `user:hash`".into()))?;
            if user.is_empty() {
                return Err(refuse("the user name is empty".into()));
            }
            if let Some(kind) = refused_hash_kind(hash) {
                return Err(refuse(format!(
                    "user {user:?} has a {kind} hash; only bcrypt ($2y$, $2b$, $2a$) is accepted: \
                     set the password again with `wharf auth htpasswd` or `htpasswd -B`"
                )));
            }
            if entries.insert(user.to_string(), hash.to_string()).is_some() {
                return Err(refuse(format!("user {user:?} appears twice")));
            }
        }
        Ok(Htpasswd { entries })
    }

    /// The stored hash for `user`.
    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.entries.get(user).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `None` for a bcrypt hash, else a name for what the hash is.
fn refused_hash_kind(hash: &str) -> Option<&'static str> {
    const BCRYPT: [&str; 3] = ["$2y$", "$2b$", "$2a$"];
    if BCRYPT.iter().any(|p| hash.starts_with(p)) {
        return None;
    }
    Some(if hash.starts_with("$apr1$") {
        "MD5 ($apr1$)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1 ({SHA})"
    } else if hash.starts_with("$1$") {
        "MD5-crypt ($1$)"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "SHA-crypt"
    } else if hash.is_empty() {
        "empty"
    } else {
        "crypt or plain-text"
    })
}

/// A new bcrypt entry hash for `password`; a password longer than
/// [`MAX_PASSWORD_BYTES`] is refused, never truncated.
pub fn hash_password(password: &str, cost: u32) -> Result<String, AuthError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::PasswordTooLong(password.len()));
    }
    bcrypt::hash(password, cost).map_err(|e| AuthError::Hash(e.to_string()))
}

/// A user name an htpasswd file can hold and a Basic header can carry.
pub fn validate_user_name(user: &str) -> Result<(), AuthError> {
    if user.is_empty()
        || user.contains(':')
        || user.chars().any(|c| c.is_control() || c.is_whitespace())
        || user == "anonymous"
    {
        return Err(AuthError::UserName(user.to_string()));
    }
    Ok(())
}

/// `text` with `user`'s entry set to `hash`: the line replaced in place when
/// the user exists, appended otherwise. Comments and other lines are kept.
pub fn upsert_entry(text: &str, user: &str, hash: &str) -> String {
    let mut out = String::with_capacity(text.len() + user.len() + hash.len() + 2);
    let mut replaced = false;
    for line in text.lines() {
        let is_user = line
            .trim()
            .split_once(':')
            .is_some_and(|(u, _)| u == user && !line.trim().starts_with('#'));
        if is_user && !replaced {
            out.push_str(&format!("{user}:{hash}\n"));
            replaced = true;
        } else if !is_user {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(&format!("{user}:{hash}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/wharf/htpasswd";
    // Shaped like a bcrypt entry; parsing does not verify it.
    const SECRET_2Y: &str = "$2y$04$0D5Mz1IAmsLC7AMIaWsMZuD1X.lLyDbcIvDOQyDW6a9Jc2R3AsyoO";

    fn parse(text: &str) -> Result<Htpasswd, AuthError> {
        Htpasswd::parse(text, Path::new(FILE))
    }

    #[test]
    fn parses_bcrypt_entries_comments_and_blank_lines() {
        let h = parse(&format!(
            "# users\n\nalice:{SECRET_2Y}\nbob:$2b$04$abc\ncarol:$2a$04$def\n"
        ))
        .unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h.hash_of("alice"), Some(SECRET_2Y));
        assert_eq!(h.hash_of("dave"), None);
    }

    #[test]
    fn refuses_other_hash_kinds_naming_file_and_line() {
        for (hash, kind) in [
            ("$apr1$abc$def", "MD5 ($apr1$)"),
            ("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("$1$abc$def", "MD5-crypt"),
            ("$6$abc$def", "SHA-crypt"),
            ("rqXexS6ZhobKA", "crypt or plain-text"),
            ("", "empty"),
        ] {
            let err = parse(&format!("alice:{SECRET_2Y}\nbob:{hash}\n")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(FILE), "{text}");
            assert!(text.contains("line 2"), "{text}");
            assert!(text.contains(kind), "{text}");
            assert!(text.contains("bob"), "{text}");
            if !hash.is_empty() {
                assert!(!text.contains(hash), "the hash must not be echoed: {text}");
            }
        }
    }

    #[test]
    fn refuses_lines_without_colon_and_duplicates() {
        let err = parse("alice\n").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("user:hash"), "{err}");
        let err = parse(&format!("a:{SECRET_2Y}\na:{SECRET_2Y}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("twice"), "{err}");
    }

    #[test]
    fn debug_shows_users_not_hashes() {
        let h = parse(&format!("alice:{SECRET_2Y}\n")).unwrap();
        let shown = format!("{h:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("$2y$"));
    }

    #[test]
    fn upsert_replaces_or_appends() {
        let text = "# comment\nalice:old\nbob:keep\n";
        assert_eq!(
            upsert_entry(text, "alice", "new"),
            "# comment\nalice:new\nbob:keep\n"
        );
        assert_eq!(
            upsert_entry(text, "carol", "h"),
            "# comment\nalice:old\nbob:keep\ncarol:h\n"
        );
        assert_eq!(upsert_entry("", "a", "h"), "a:h\n");
        assert_eq!(upsert_entry("a:x", "b", "h"), "a:x\nb:h\n");
    }

    #[test]
    fn hashed_passwords_verify_and_are_bcrypt() {
        let hash = hash_password("pw", 4).unwrap();
        assert!(refused_hash_kind(&hash).is_none(), "{hash}");
        assert!(bcrypt::verify("pw", &hash).unwrap());
        assert!(!bcrypt::verify("other", &hash).unwrap());
        // Apache writes $2y$ and older tools $2a$: the same algorithm.
        for prefix in ["$2y$", "$2a$"] {
            let renamed = format!("{prefix}{}", &hash[4..]);
            assert!(bcrypt::verify("pw", &renamed).unwrap(), "{renamed}");
        }
    }

    #[test]
    fn passwords_longer_than_bcrypt_reads_are_refused() {
        let longest = "x".repeat(MAX_PASSWORD_BYTES);
        assert!(hash_password(&longest, 4).is_ok());
        let longer = format!("{longest}y");
        let err = hash_password(&longer, 4).unwrap_err().to_string();
        assert!(err.contains("73 bytes") && err.contains("72"), "{err}");
        assert!(
            !err.contains(&longer),
            "the password must not be echoed: {err}"
        );
    }

    #[test]
    fn user_names() {
        assert!(validate_user_name("ci-bot").is_ok());
        for bad in ["", "a:b", "a b", "a\nb", "anonymous"] {
            assert!(validate_user_name(bad).is_err(), "{bad:?}");
        }
    }
}
