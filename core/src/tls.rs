//! TLS set-up shared by every component that speaks TLS: servers (the syslog
//! source, the HTTP source) and clients (the HTTP sink).
//!
//! Certificates and keys are loaded while the config is validated, so a missing
//! or bad file is a config error naming its YAML path, never a failure later at
//! run time. Everything uses rustls with the *ring* provider chosen explicitly:
//! the cloud SDKs enable rustls' aws-lc-rs provider as well, and with two
//! providers compiled in rustls cannot pick a process default by itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use rustls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use serde::Deserialize;

use crate::config::{join, ConfigError};

/// `tls:` of a server: its certificate and key, and optional client verification.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsOptions {
    /// PEM file with the server certificate, then any intermediates.
    pub crt_file: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file of CA certificates; when set, every client must present a
    /// certificate signed by one of them (mutual TLS).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `tls:` of a client: which servers to trust and an optional client certificate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsOptions {
    /// PEM file of CA certificates to trust instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file with a client certificate (mutual TLS); needs `key_file`.
    #[serde(default)]
    pub crt_file: Option<PathBuf>,
    /// PEM file with the client certificate's private key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Verify the server's certificate and name (default true). Turning it off
    /// accepts any server: only for tests.
    #[serde(default = "default_verify")]
    pub verify: bool,
}

fn default_verify() -> bool {
    true
}

/// The crypto provider every TLS config of sediment uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Builds a rustls server configuration; errors name `path.<field>`.
pub fn server_config(o: &ServerTlsOptions, path: &str) -> Result<Arc<ServerConfig>, ConfigError> {
    let at = |field: &str| join(path, field);
    let certs = certificates(&o.crt_file).map_err(|m| ConfigError::new(at("crt_file"), m))?;
    let key = private_key(&o.key_file).map_err(|m| ConfigError::new(at("key_file"), m))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(path, format!("cannot set up TLS: {e}")))?;
    let builder = match &o.ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let roots = root_store(ca_file).map_err(|m| ConfigError::new(at("ca_file"), m))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
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

/// Builds a rustls client configuration; errors name `path.<field>`.
///
/// Without `ca_file` the server is checked against the system's trust store
/// (`/etc/ssl/certs` and the like) plus Mozilla's roots.
pub fn client_config(o: &ClientTlsOptions, path: &str) -> Result<ClientConfig, ConfigError> {
    let at = |field: &str| join(path, field);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(path, format!("cannot set up TLS: {e}")))?;
    let builder = if !o.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let roots = match &o.ca_file {
            Some(ca_file) => root_store(ca_file).map_err(|m| ConfigError::new(at("ca_file"), m))?,
            None => system_roots(),
        };
        builder.with_root_certificates(roots)
    };
    match (&o.crt_file, &o.key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(crt), Some(key)) => {
            let certs = certificates(crt).map_err(|m| ConfigError::new(at("crt_file"), m))?;
            let key = private_key(key).map_err(|m| ConfigError::new(at("key_file"), m))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                ConfigError::new(
                    at("key_file"),
                    format!("does not match the certificate in crt_file: {e}"),
                )
            })
        }
        (Some(_), None) => Err(ConfigError::new(
            at("key_file"),
            "is required with crt_file (the client certificate's private key)",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            at("crt_file"),
            "is required with key_file (the client certificate)",
        )),
    }
}

/// Every certificate of a PEM file; at least one.
pub fn certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM in {}: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", file.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn private_key(file: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(file)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("no private key in {}: {e}", file.display()))
}

fn root_store(ca_file: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots
            .add(cert)
            .map_err(|e| format!("invalid CA certificate in {}: {e}", ca_file.display()))?;
    }
    Ok(roots)
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // Certificates the system trusts (a company CA, say); unreadable ones are skipped.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    roots
}

fn read(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

/// `verify: false`: accepts any certificate, still checks handshake signatures.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
