//! Generate and lint containerd registry configuration.
//!
//! containerd ignores configuration it does not understand, often without a
//! word. This crate writes `config.toml` and `hosts.toml` the way each
//! containerd release reads them, and lints existing files, naming the line,
//! what containerd will actually do, and the fix.
//!
//! - Generation: [`generate_hosts`], [`config_snippet`], [`patch_config`].
//! - Lint: [`lint_config`], [`lint_hosts_dir`], [`lint_setup`], or a
//!   configured [`Linter`].
//! - Output: [`render_human`], [`render_json`] / [`json_report`], [`has_errors`].
//! - What a pull will do: [`resolve_registry_hosts`] (the ordered hosts for
//!   a registry), [`parse_hosts_toml`], [`find_hosts_dir`].

mod config;
mod diagnostic;
mod error;
mod hosts;
mod lint;
mod mirror;
mod model;
mod names;
mod render;
mod source;
mod version;
mod view;

pub use config::{config_snippet, patch_config, validate_config_path, PatchOptions};
pub use diagnostic::{has_errors, sort_diagnostics, Code, Diagnostic, Position, Severity};
pub use error::{Error, Result};
pub use hosts::{
    generate_hosts, render_hosts_toml, ClientCert, HostSettings, HostsFile, HostsRequest,
};
pub use lint::{
    config_path_of, lint_config, lint_hosts_dir, lint_setup, HostEntry, Linter, OnlineCheck,
};
pub use mirror::{is_go_duration, Capability, MirrorUrl, Scheme};
pub use model::{default_sandbox_image, model_registry, IgnoredSetting, RegistryModel};
pub use names::{classify_dir_name, DirName, Namespace, DEFAULT_NAMESPACE};
pub use render::{json_report, render_human, render_json, JSON_FORMAT_VERSION};
pub use source::{read_text_file, write_atomic, MAX_FILE_BYTES};
pub use version::{
    ConfigVersion, ContainerdRelease, CRI_IMAGES_PLUGIN, CRI_RUNTIME_PLUGIN, CRI_V1_PLUGIN,
    CRI_V2_PLUGIN,
};
pub use view::{
    config_version_of, find_hosts_dir, is_localhost, legacy_mirror_hosts, legacy_mirrors_of,
    parse_hosts_toml, resolve_registry_hosts, ClientPair, HostConfig, HostSource, HostsDecodeError,
    HostsResolution, HostsToml, RegistryHost,
};
