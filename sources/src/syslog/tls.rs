//! `tls:` of the syslog source: the shared server TLS options of
//! [`sediment_core::tls`], loaded at validation so that a bad file is a config error.

pub use sediment_core::tls::{server_config, ServerTlsOptions as TlsOptions};
