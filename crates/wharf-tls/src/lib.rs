//! A local certificate authority and the server half of TLS for `wharf serve`.
//!
//! - [`ca`]: create a CA in a directory ([`init_ca`]) and issue server
//!   certificates from it ([`LocalCa::issue`]).
//! - [`acceptor`] / [`server_config`]: a rustls server configuration (TLS 1.2
//!   and 1.3, ALPN `h2` and `http/1.1`) whose certificate is re-read from disk
//!   when its files change, so a renewed certificate needs no restart.
//!
//! Nothing here speaks HTTP; the registry only receives a [`TlsAcceptor`].
//!
//! Architecture invariants:
//! - Private keys are written with mode 0600, atomically (temp file, fsync,
//!   rename), and never overwritten unless the caller asks for it.
//! - A reload never drops an established connection, and a bad new file
//!   keeps the previous certificate in service.

pub mod ca;
mod error;
mod files;
mod reload;
mod server;

pub use ca::{init_ca, CaPaths, IssuedCert, LocalCa, ServerNames};
pub use error::TlsError;
pub use reload::ReloadingCert;
pub use server::{acceptor, certificate_names, load_certified_key, server_config};
pub use tokio_rustls::TlsAcceptor;
