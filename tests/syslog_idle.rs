//! Idle and never-handshaking connections against the real binary's syslog
//! source (issue 11 item 6): with every `connection_limit` slot held by idle TCP
//! connections, another sender gets in once `idle_timeout` closes them; in tls
//! mode, connections that never handshake give way to a real client at once
//! instead of after the 10 s handshake timeout; failed handshakes log one WARN.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::{certificates, Certs};
use common::raw_http::is_closed;
use common::{free_port, metric, Sediment, Setup};
use sediment_core::tls::rustls;

const LABELS: &str =
    "component_id=\"syslog_in\",component_kind=\"source\",component_type=\"syslog\"";

fn start(dir: &std::path::Path, port: u16, options: &str) -> Sediment {
    Setup::new(dir)
        .topology(&format!(
            "
sources:
  syslog_in: {{type: syslog, address: '127.0.0.1:{port}', {options}}}
transforms:
  hourly: {{type: hour_partition, inputs: [syslog_in], late_after: 10m}}
sinks:
  archive: {{type: file, inputs: [hourly], path: '{{ROOT}}/archive', account_id: acme}}
"
        ))
        .start()
}

fn received(s: &Sediment) -> u64 {
    metric(
        &s.metrics(),
        "sediment_component_received_events_total",
        LABELS,
    )
    .unwrap_or(0)
}

fn errors(s: &Sediment, error_type: &str) -> u64 {
    let labels = format!("{LABELS},error_type=\"{error_type}\"");
    metric(&s.metrics(), "sediment_component_errors_total", &labels).unwrap_or(0)
}

/// How long until the source has received `n` events (at most `max`).
fn wait_received(s: &Sediment, n: u64, max: Duration) -> Duration {
    let start = Instant::now();
    while received(s) < n {
        assert!(
            start.elapsed() < max,
            "{} of {n} events after {max:?}",
            received(s)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
fn idle_tcp_connections_are_closed_after_idle_timeout_and_free_their_slots() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = start(
        dir.path(),
        port,
        "mode: tcp, connection_limit: 4, idle_timeout: 1s",
    );
    let opened = Instant::now();
    // Three idle connections and one that sends a message every 300 ms.
    let mut idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let mut chatty = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(100));

    // Every slot is taken: this sender waits in the backlog until an idle one closes.
    let sent = Instant::now();
    let mut late = TcpStream::connect(("127.0.0.1", port)).unwrap();
    late.write_all(b"<13>1 - host app - - - from the fifth connection\n")
        .unwrap();

    let mut chatty_sent = 0;
    let mut closed_after = vec![None; idle.len()];
    let mut late_arrived = None;
    while sent.elapsed() < Duration::from_secs(3) {
        // The chatty messages sent so far arrived 300 ms ago; one more is the fifth's.
        if late_arrived.is_none() && received(&s) > chatty_sent {
            late_arrived = Some(sent.elapsed());
        }
        chatty
            .write_all(format!("<13>1 - host app - - - chatty {chatty_sent}\n").as_bytes())
            .unwrap();
        chatty_sent += 1;
        for (i, c) in idle.iter_mut().enumerate() {
            if closed_after[i].is_none() && is_closed(c) {
                closed_after[i] = Some(opened.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_received(&s, chatty_sent + 1, Duration::from_secs(5));
    eprintln!("idle connections closed after {closed_after:?}; the fifth connection's message arrived within {late_arrived:?} of being sent");
    let late_arrived = late_arrived.expect("the fifth connection's message arrived");
    assert!(
        late_arrived < Duration::from_millis(2500),
        "{late_arrived:?}"
    );
    for t in &closed_after {
        let t = t.expect("every idle connection is closed");
        assert!(
            t >= Duration::from_millis(900) && t < Duration::from_secs(2),
            "{t:?}"
        );
    }
    assert!(
        !is_closed(&mut chatty),
        "a connection that keeps sending stays open"
    );
    s.stop();
}

/// A TLS client that sends `message` and closes; returns once it is written.
fn send_tls(port: u16, certs: &Certs, message: &str) {
    let ca = std::fs::read(&certs.ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(sediment_core::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(message.as_bytes()).unwrap();
    tls.flush().unwrap();
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let _ = tls.read(&mut [0u8; 16]);
}

#[test]
fn connections_that_never_handshake_give_way_to_a_real_tls_client() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let port = free_port();
    let s = start(
        dir.path(),
        port,
        &format!(
            "mode: tls, connection_limit: 4, tls: {{crt_file: '{}', key_file: '{}'}}",
            certs.server.display(),
            certs.server_key.display()
        ),
    );
    // Four connections that never send a ClientHello hold every slot.
    let _silent: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    send_tls(
        port,
        &certs,
        "<13>1 - host app - - - over tls past silent connections\n",
    );
    let wait = wait_received(&s, 1, Duration::from_secs(8)) + start.elapsed();
    eprintln!(
        "a TLS client behind 4 never-handshaking connections: message received within {wait:?}"
    );
    assert!(
        wait < Duration::from_secs(3),
        "waited {wait:?} (the handshake timeout is 10 s)"
    );
    assert_eq!(errors(&s, "connection_limit"), 1, "one handshake gave way");

    // Garbage instead of a ClientHello: every failure counted, one WARN a minute.
    for _ in 0..5 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let _ = c.read(&mut [0u8; 64]);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while errors(&s, "tls_handshake") < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(errors(&s, "tls_handshake"), 5);
    let log = s.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TLS handshakes failed"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("failures=1"), "{}", warnings[0]);
    s.stop();
}
