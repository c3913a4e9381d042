//! TLS mode against a rustls client: a client certificate signed by `ca_file` is
//! required; a client without one is refused and counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::AsyncWriteExt;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::Running;

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client: (String, String),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let dir = tempfile::tempdir().unwrap();
    let (server, server_key) = leaf("localhost");
    for (name, pem) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server),
        ("server-key.pem", server_key),
    ] {
        std::fs::write(dir.path().join(name), pem).unwrap();
    }
    Pki {
        dir,
        ca_pem: ca.pem(),
        client: leaf("client"),
    }
}

async fn send(address: std::net::SocketAddr, pki: &Pki, with_cert: bool, line: &str) {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_cert {
        let cert = CertificateDer::from_pem_slice(pki.client.0.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(pki.client.1.as_bytes()).unwrap();
        builder.with_client_auth_cert(vec![cert], key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    // Without a client certificate, TLS 1.3 reports the refusal only on a later
    // read or write, so errors after the handshake are expected here.
    if let Ok(mut tls) = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        let _ = tls.write_all(line.as_bytes()).await;
        let _ = tls.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_requires_a_client_certificate_signed_by_the_ca() {
    let pki = pki();
    let d = pki.dir.path().display();
    let yaml = format!(
        "mode: tls\naddress: 127.0.0.1:0\n\
         tls: {{crt_file: '{d}/server.pem', key_file: '{d}/server-key.pem', ca_file: '{d}/ca.pem'}}"
    );
    let source = Running::start("t_tls", &yaml, 8).await;
    send(source.address, &pki, true, "<13>1 - h a - - - over tls\n").await;
    send(
        source.address,
        &pki,
        false,
        "<13>1 - h a - - - no client certificate\n",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while source.metrics.errors("tls_handshake").get() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (events, metrics) = source.stop().await;
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["over tls"]);
    assert_eq!(metrics.errors("tls_handshake").get(), 1);
}
