//! Where the doctor's picture of containerd comes from: the running
//! containerd itself (asked over its socket), or a model of the release
//! when nothing answers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use wharf_containerd::ContainerdRelease;
use wharf_cri::Loaded;

/// What the doctor knows about the runtime before reading any file.
#[derive(Debug, Clone)]
pub enum Runtime {
    /// containerd answered on its socket.
    Asked {
        socket: PathBuf,
        loaded: Box<Loaded>,
        /// The release its version names, or the nearest known.
        release: Option<ContainerdRelease>,
        /// Set when the release is one wharf has never seen.
        release_note: Option<String>,
    },
    /// Nothing (usable) answered; the release is modelled.
    Modelled {
        release: Option<ContainerdRelease>,
        /// Why the runtime was not asked, or what asking it gave.
        why: String,
        /// containerd answered but cannot pull for the kubelet (no CRI).
        no_cri: bool,
    },
}

impl Runtime {
    /// Ask containerd on `address` (when given); fall back to modelling
    /// `release` and say why.
    pub async fn discover(
        address: Option<&Path>,
        release: Option<ContainerdRelease>,
        timeout: Duration,
    ) -> Runtime {
        let Some(socket) = address else {
            return Runtime::Modelled {
                release,
                why: "no containerd socket given".to_owned(),
                no_cri: false,
            };
        };
        match wharf_cri::ask(socket, timeout).await {
            Ok(loaded) => {
                let known = ContainerdRelease::nearest_known(&loaded.runtime_version);
                let (release, release_note) = match known {
                    Some((r, note)) => (Some(r), note),
                    None => (
                        release,
                        Some(format!(
                            "{} reports version {:?}, which names no containerd release: modelled {}",
                            loaded.runtime_name,
                            loaded.runtime_version,
                            release.map_or("the file's own version".to_owned(), |r| r.to_string())
                        )),
                    ),
                };
                Runtime::Asked {
                    socket: socket.to_owned(),
                    loaded: Box::new(loaded),
                    release,
                    release_note,
                }
            }
            Err(e) => Runtime::Modelled {
                release,
                why: format!("{e} ({})", e.hint()),
                no_cri: matches!(e, wharf_cri::CriError::Unimplemented { .. }),
            },
        }
    }

    pub fn release(&self) -> Option<ContainerdRelease> {
        match self {
            Runtime::Asked { release, .. } | Runtime::Modelled { release, .. } => *release,
        }
    }

    /// Set when containerd answers without the CRI: the kubelet cannot pull.
    pub fn no_cri(&self) -> Option<&str> {
        match self {
            Runtime::Modelled {
                no_cri: true, why, ..
            } => Some(why),
            _ => None,
        }
    }

    pub fn loaded(&self) -> Option<&Loaded> {
        match self {
            Runtime::Asked { loaded, .. } => Some(loaded),
            Runtime::Modelled { .. } => None,
        }
    }

    /// For the report: how the doctor knows what it says about containerd.
    pub fn describe(&self) -> RuntimeSource {
        match self {
            Runtime::Asked {
                socket,
                loaded,
                release_note,
                ..
            } => RuntimeSource {
                asked: true,
                summary: format!(
                    "asked {} {} on {} ({})",
                    loaded.runtime_name,
                    loaded.runtime_version,
                    socket.display(),
                    loaded.registry_source
                ),
                warning: release_note.clone(),
            },
            Runtime::Modelled { release, why, .. } => RuntimeSource {
                asked: false,
                summary: match release {
                    Some(r) => format!("modelled containerd {r} from config.toml, not asked: {why}"),
                    None => format!(
                        "modelled from config.toml for its own version (containerd release unknown), \
                         not asked: {why}"
                    ),
                },
                warning: release
                    .filter(|r| r.is_newer_than_known())
                    .map(|r| format!("containerd {r} is newer than the releases wharf has checked")),
            },
        }
    }
}

/// How the report's view of containerd was obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeSource {
    /// true: the running containerd answered; false: modelled from files.
    pub asked: bool,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}
