//! Writing the containers `auth.json` that podman, skopeo and buildah read
//! (containers-auth.json(5)): what `wharf login` and `wharf logout` change.
//!
//! The file is rewritten whole and atomically (a temp file beside it, mode
//! 0600, synced, renamed over it, the directory synced), and everything in
//! it that is not the entry being changed is kept as it was: other
//! registries, `credHelpers`, keys this crate does not know.
//!
//! Reading the file for requests is [`crate::credentials`]'s.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::credentials::normalize_host;
use crate::error::{Context, Error, ErrorKind, Result};

/// The file `wharf login` writes when no `--authfile` is given, as podman
/// chooses it: `$REGISTRY_AUTH_FILE`, else
/// `$XDG_RUNTIME_DIR/containers/auth.json`, else
/// `/run/containers/$UID/auth.json`. `var` reads the environment.
pub fn default_path(var: impl Fn(&str) -> Option<std::ffi::OsString>, uid: u32) -> PathBuf {
    let var = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(file) = var("REGISTRY_AUTH_FILE") {
        return file;
    }
    match var("XDG_RUNTIME_DIR") {
        Some(run) => run.join("containers/auth.json"),
        None => PathBuf::from(format!("/run/containers/{uid}/auth.json")),
    }
}

/// Store `username`/`password` for `host` in the auth file at `path`
/// (created with its directory when missing), replacing any entry for the
/// same registry under another spelling.
pub fn save(path: &Path, host: &str, username: &str, password: &str) -> Result<()> {
    let ctx = Context::new("save credentials for", host);
    let mut doc = read(path, &ctx)?;
    let auths = auths_mut(&mut doc, path, &ctx)?;
    let key = normalize_host(host);
    auths.retain(|k, _| normalize_host(k) != key);
    let secret = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    auths.insert(key, serde_json::json!({ "auth": secret }));
    write(path, &doc, &ctx)
}

/// Remove the entry for `host`; `Ok(false)` when there was none.
pub fn remove(path: &Path, host: &str) -> Result<bool> {
    let ctx = Context::new("remove credentials for", host);
    if !path.exists() {
        return Ok(false);
    }
    let mut doc = read(path, &ctx)?;
    let auths = auths_mut(&mut doc, path, &ctx)?;
    let key = normalize_host(host);
    let before = auths.len();
    auths.retain(|k, _| normalize_host(k) != key);
    if auths.len() == before {
        return Ok(false);
    }
    write(path, &doc, &ctx)?;
    Ok(true)
}

/// Remove every registry's entry; the number removed.
pub fn remove_all(path: &Path) -> Result<usize> {
    let ctx = Context::new("remove credentials for", "all registries");
    if !path.exists() {
        return Ok(0);
    }
    let mut doc = read(path, &ctx)?;
    let auths = auths_mut(&mut doc, path, &ctx)?;
    let removed = auths.len();
    if removed > 0 {
        auths.clear();
        write(path, &doc, &ctx)?;
    }
    Ok(removed)
}

fn config_error(ctx: &Context, message: String) -> Error {
    Error::new(ErrorKind::Config, ctx, message)
}

/// The file as JSON; an empty object when it does not exist.
fn read(path: &Path, ctx: &Context) -> Result<Value> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Value::Object(Map::new())),
        Err(e) => {
            return Err(config_error(
                ctx,
                format!("cannot read {}: {e}", path.display()),
            ))
        }
    };
    // serde_json's message names a position, never the content.
    serde_json::from_slice(&bytes).map_err(|e| {
        config_error(
            ctx,
            format!("{} is not a valid auth file: {e}", path.display()),
        )
    })
}

fn auths_mut<'a>(
    doc: &'a mut Value,
    path: &Path,
    ctx: &Context,
) -> Result<&'a mut Map<String, Value>> {
    let not_auth_file = || {
        config_error(
            ctx,
            format!(
                "{} is not an auth file (expected {{\"auths\": {{…}}}})",
                path.display()
            ),
        )
    };
    let top = doc.as_object_mut().ok_or_else(not_auth_file)?;
    top.entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(not_auth_file)
}

/// Temp file beside `path` (created 0600), synced, renamed over it, the
/// directory synced: readers see the old file or the new one, never a part.
fn write(path: &Path, doc: &Value, ctx: &Context) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| {
        config_error(ctx, format!("cannot {what} {}: {e}", path.display()))
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir).map_err(|e| fail("create the directory of", e))?;
    let mut text = serde_json::to_vec_pretty(doc).expect("JSON values serialise");
    text.push(b'\n');
    let mut temp = tempfile::Builder::new()
        .prefix(".auth.json.")
        .tempfile_in(&dir)
        .map_err(|e| fail("write", e))?;
    temp.write_all(&text)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| fail("write", e))?;
    temp.persist(path).map_err(|e| fail("replace", e.error))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("sync the directory of", e))
}

/// The directory and its missing parents, mode 0700 as podman makes them.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn default_path_follows_podman() {
        let at = |vars: &[(&str, &str)]| {
            let vars: HashMap<&str, &str> = vars.iter().copied().collect();
            default_path(|k| vars.get(k).map(OsString::from), 1000)
        };
        assert_eq!(
            at(&[
                ("REGISTRY_AUTH_FILE", "/a.json"),
                ("XDG_RUNTIME_DIR", "/run/user/1000")
            ]),
            PathBuf::from("/a.json")
        );
        assert_eq!(
            at(&[("XDG_RUNTIME_DIR", "/run/user/1000")]),
            PathBuf::from("/run/user/1000/containers/auth.json")
        );
        assert_eq!(
            at(&[("XDG_RUNTIME_DIR", "")]),
            PathBuf::from("/run/containers/1000/auth.json")
        );
    }

    #[test]
    fn save_keeps_other_entries_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/auth.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"auths":{"other.example":{"auth":"eDp5"},"HTTPS://R.example:5000/v1/":{"auth":"b2xkOm9sZA=="}},"credHelpers":{"h.example":"pass"}}"#,
        )
        .unwrap();
        save(&path, "r.example:5000", "alice", "s3cret:x").unwrap();
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let auths = doc["auths"].as_object().unwrap();
        assert_eq!(auths.len(), 2, "{doc}");
        assert_eq!(auths["other.example"]["auth"], "eDp5");
        assert_eq!(
            auths["r.example:5000"]["auth"],
            base64::engine::general_purpose::STANDARD.encode("alice:s3cret:x")
        );
        assert_eq!(doc["credHelpers"]["h.example"], "pass");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp file is left behind");

        assert!(remove(&path, "R.EXAMPLE:5000").unwrap());
        assert!(!remove(&path, "r.example:5000").unwrap());
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["auths"].as_object().unwrap().len(), 1);
        assert_eq!(remove_all(&path).unwrap(), 1);
        assert_eq!(remove_all(&path).unwrap(), 0);
    }

    #[test]
    fn creates_missing_file_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("containers/auth.json");
        save(&path, "docker.io", "u", "p").unwrap();
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(doc["auths"]["docker.io"]["auth"].is_string());
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_file_that_is_not_an_auth_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        for text in ["[1, 2]", "{\"auths\": 3}", "not json"] {
            std::fs::write(&path, text).unwrap();
            let err = save(&path, "r", "u", "p").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{text}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
    }
}
