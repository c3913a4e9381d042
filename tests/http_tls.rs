//! HTTPS on the HTTP source (issue 11 item 7), against the real binary with curl
//! and Python's `requests`: a server certificate alone, then mutual TLS where a
//! client without a certificate is refused; failed handshakes are counted and
//! logged once a minute.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pki::{certificates, Certs};
use common::{metric, read_archive, Sediment, Setup};

const LABELS: &str = "component_id=\"http_in\",component_kind=\"source\",component_type=\"http\"";

fn start(dir: &Path, certs: &Certs, client_ca: bool) -> Sediment {
    let ca = if client_ca {
        format!(", ca_file: '{}'", certs.ca.display())
    } else {
        String::new()
    };
    Setup::new(dir)
        .topology(&format!(
            "
sources:
  http_in:
    type: http
    address: '127.0.0.1:{{HTTP}}'
    tls: {{crt_file: '{}', key_file: '{}'{ca}}}
transforms:
  hourly: {{type: hour_partition, inputs: [http_in], late_after: 10m}}
sinks:
  archive: {{type: file, inputs: [hourly], path: '{{ROOT}}/archive', account_id: acme}}
",
            certs.server.display(),
            certs.server_key.display()
        ))
        .start()
}

/// curl POSTs one NDJSON line over HTTPS; (exit code, stdout + stderr).
fn curl(s: &Sediment, certs: &Certs, client_cert: bool, message: &str) -> (i32, String) {
    let port = s.http_port;
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&certs.ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["-H", "Content-Type: application/x-ndjson"])
        .args(["--data-binary", &format!("{{\"message\":\"{message}\"}}")]);
    if client_cert {
        cmd.arg("--cert")
            .arg(&certs.client)
            .arg("--key")
            .arg(&certs.client_key);
    }
    let out = cmd
        .arg(format!("https://localhost:{port}/"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Python `requests` POSTs one line; prints `status body` or `error <exception>`.
fn python(s: &Sediment, certs: &Certs, client_cert: bool, message: &str) -> String {
    let script = r#"
import sys, requests
url, ca, message, cert, key = sys.argv[1:6]
try:
    r = requests.post(url, data=('{"message":"%s"}\n' % message).encode(), verify=ca,
                      cert=(cert, key) if cert else None,
                      headers={"Content-Type": "application/x-ndjson"}, timeout=10)
    print(r.status_code, r.text)
except requests.exceptions.RequestException as e:
    print("error", type(e).__name__, e)
"#;
    let (cert, key) = if client_cert {
        (
            certs.client.display().to_string(),
            certs.client_key.display().to_string(),
        )
    } else {
        (String::new(), String::new())
    };
    // `localhost` is in the certificate; 127.0.0.1 too, but say the name as curl does.
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(format!("https://localhost:{}/", s.http_port))
        .arg(&certs.ca)
        .args([message, &cert, &key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn handshake_failures(s: &Sediment) -> u64 {
    let labels = format!("{LABELS},error_type=\"tls_handshake\"");
    metric(&s.metrics(), "sediment_component_errors_total", &labels).unwrap_or(0)
}

fn archived_messages(s: Sediment) -> Vec<String> {
    let root = s.root.clone();
    s.stop();
    let mut m: Vec<String> = read_archive(&root.join("archive"))
        .into_iter()
        .flat_map(|(_, events)| events)
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    m.sort();
    m
}

#[test]
fn https_with_a_server_certificate_takes_curl_and_python_requests() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let s = start(dir.path(), &certs, false);
    assert_eq!(
        curl(&s, &certs, false, "via curl"),
        (0, "{\"accepted\":1}".into())
    );
    assert_eq!(
        python(&s, &certs, false, "via requests"),
        "200 {\"accepted\":1}"
    );
    // Plain HTTP to the HTTPS port is not served, and counted as a failed handshake.
    let plain = common::post(&s.url("/"), &[], b"{\"message\":\"plain\"}\n");
    assert!(plain.is_err(), "{plain:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while handshake_failures(&s) < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(handshake_failures(&s), 1);
    assert_eq!(archived_messages(s), ["via curl", "via requests"]);
}

#[test]
fn mutual_tls_refuses_a_client_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let s = start(dir.path(), &certs, true);
    assert_eq!(
        curl(&s, &certs, true, "curl with a certificate"),
        (0, "{\"accepted\":1}".into())
    );
    assert_eq!(
        python(&s, &certs, true, "requests with a certificate"),
        "200 {\"accepted\":1}"
    );
    let (code, text) = curl(&s, &certs, false, "curl without a certificate");
    assert_ne!(code, 0, "curl without a client certificate: {text}");
    eprintln!("curl without a certificate: exit {code}: {text}");
    let refused = python(&s, &certs, false, "requests without a certificate");
    assert!(refused.starts_with("error "), "{refused}");
    eprintln!("requests without a certificate: {refused}");

    let deadline = Instant::now() + Duration::from_secs(5);
    while handshake_failures(&s) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(handshake_failures(&s), 2);
    let log = s.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TLS handshakes failed"))
        .collect();
    assert_eq!(warnings.len(), 1, "one WARN a minute: {warnings:?}");
    assert!(warnings[0].contains("failures=1"), "{}", warnings[0]);
    assert_eq!(
        archived_messages(s),
        ["curl with a certificate", "requests with a certificate"]
    );
}
