//! `tls:` — the server certificate, its key, and optional client-certificate
//! verification, loaded at validation so that a bad file is a config error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sediment_core::config::{join, ConfigError};
use serde::Deserialize;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// `tls:` options (mode `tls` only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// PEM file with the server certificate, then any intermediates.
    pub crt_file: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file of CA certificates; when set, every client must present a
    /// certificate signed by one of them (mutual TLS).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Builds the rustls server configuration; errors name `path.tls.<field>`.
pub fn server_config(o: &TlsOptions, path: &str) -> Result<Arc<ServerConfig>, ConfigError> {
    let at = |field: &str| join(path, field);
    let certs = certificates(&o.crt_file).map_err(|m| ConfigError::new(at("crt_file"), m))?;
    let key = read(&o.key_file)
        .and_then(|pem| {
            PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| format!("no private key in {}: {e}", o.key_file.display()))
        })
        .map_err(|m| ConfigError::new(at("key_file"), m))?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(path, format!("cannot set up TLS: {e}")))?;
    let builder = match &o.ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca_file).map_err(|m| ConfigError::new(at("ca_file"), m))? {
                roots.add(cert).map_err(|e| {
                    ConfigError::new(
                        at("ca_file"),
                        format!("invalid CA certificate in {}: {e}", ca_file.display()),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| {
                    ConfigError::new(
                        at("ca_file"),
                        format!("cannot verify clients with {}: {e}", ca_file.display()),
                    )
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        ConfigError::new(
            at("key_file"),
            format!(
                "{} does not match the certificate in {}: {e}",
                o.key_file.display(),
                o.crt_file.display()
            ),
        )
    })?;
    Ok(Arc::new(config))
}

fn read(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

fn certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM in {}: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", file.display()));
    }
    Ok(certs)
}
