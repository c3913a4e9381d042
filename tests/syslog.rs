//! End to end: real syslog senders (util-linux `logger`, rsyslog over TCP and TLS)
//! into the real binary, and `kill -9` in the middle of a TCP stream. Every test
//! asserts on what lands in the archive.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::{certificates, Certs};
use common::*;
use serde_json::Value;

/// `syslog sources → hour_partition → file`, with each `(id, options)` a source on a free port.
fn topology(sources: &[(&str, String)]) -> (String, HashMap<String, u16>) {
    let mut yaml = String::from("sources:\n");
    let mut ports = HashMap::new();
    for (id, options) in sources {
        let port = free_port();
        ports.insert(id.to_string(), port);
        yaml += &format!("  {id}: {{type: syslog, address: '127.0.0.1:{port}', {options}}}\n");
    }
    let ids: Vec<&str> = sources.iter().map(|(id, _)| *id).collect();
    yaml += &format!(
        "transforms:\n  hourly: {{type: hour_partition, inputs: [{}], late_after: 10m}}\n\
         sinks:\n  archive: {{type: file, inputs: [hourly], path: '{{ROOT}}/archive', account_id: acme}}\n",
        ids.join(", ")
    );
    (yaml, ports)
}

/// `sediment_component_received_events_total` of the syslog source `id`.
fn received(sediment: &Sediment, id: &str) -> u64 {
    let labels =
        format!("component_id=\"{id}\",component_kind=\"source\",component_type=\"syslog\"");
    metric(
        &sediment.metrics(),
        "sediment_component_received_events_total",
        &labels,
    )
    .unwrap_or(0)
}

/// Waits until source `id` has received at least `n` events.
fn wait_received(sediment: &Sediment, id: &str, n: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = received(sediment, id);
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} received {got} of {n} events in {timeout:?}:\n{}",
            sediment.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every archived event, in archive order.
fn archived(root: &Path) -> Vec<Value> {
    read_archive(&root.join("archive"))
        .into_iter()
        .flat_map(|(_, events)| events)
        .collect()
}

/// This machine's host name, as senders put it in their headers.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// Asserts that `events` (those of one sender) carry exactly `lines`, each once.
fn assert_exactly_once(events: &[&Value], lines: &[String], what: &str) {
    let mut got: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got.len(), want.len(), "{what}: event count");
    assert!(
        got == want,
        "{what}: archived messages differ from the lines sent"
    );
}

/// Asserts the header fields every event of one sender shares.
fn assert_headers(events: &[&Value], app: &str, since_ms: i64, until_ms: i64, what: &str) {
    let host = hostname();
    for e in events {
        let h = e["host"].as_str().unwrap();
        assert!(
            h == host || h.starts_with(&format!("{host}.")),
            "{what}: host {h} is not {host}"
        );
        assert_eq!(e["app"], app, "{what}");
        assert_eq!(e["_meta"]["source_type"], "syslog", "{what}");
        assert_eq!(e["_meta"]["syslog"]["peer"], "127.0.0.1", "{what}");
        assert!(
            e["_meta"]["syslog"].get("parse_error").is_none(),
            "{what}: {e}"
        );
        let ts = chrono::DateTime::parse_from_rfc3339(e["_ts"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        assert!(
            (since_ms..=until_ms).contains(&ts),
            "{what}: _ts {} is outside the sending window",
            e["_ts"]
        );
    }
}

/// Runs `logger` with `args` on `file`, in UTC (RFC 3164 timestamps carry no zone).
fn logger(port: u16, args: &[&str], file: &Path) {
    let status = Command::new("logger")
        .env("TZ", "UTC")
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .arg("-f")
        .arg(file)
        .status()
        .expect("logger (util-linux) is installed");
    assert!(status.success(), "logger {args:?} failed: {status}");
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[test]
fn logger_lines_arrive_exactly_once_over_tcp_and_udp() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, ports) = topology(&[
        ("syslog_tcp", "mode: tcp".into()),
        ("syslog_udp", "mode: udp, receive_buffer_bytes: 4MiB".into()),
    ]);
    let sediment = Setup::new(dir.path()).topology(&yaml).start();
    let (tcp, udp) = (ports["syslog_tcp"], ports["syslog_udp"]);
    let linux = loghub_lines("Linux", 2000);
    let ssh = loghub_lines("OpenSSH", 2000);
    let since = now_ms() / 1000 * 1000;

    // TCP: the loghub files as they are (CRLF line ends, no final newline).
    let file = |system: &str| loghub().join(format!("{system}_2k.log"));
    logger(
        tcp,
        &["--tcp", "--rfc5424", "--octet-count", "-t", "linux5424"],
        &file("Linux"),
    );
    logger(
        tcp,
        &["--tcp", "--rfc3164", "-t", "ssh3164"],
        &file("OpenSSH"),
    );
    wait_received(&sediment, "syslog_tcp", 4000, Duration::from_secs(60));

    // UDP cannot push back: send 100 lines at a time and let each batch arrive,
    // so that a slow debug build on a busy machine loses nothing to full buffers.
    let mut sent = 0;
    for (lines, args) in [
        (&ssh, ["--udp", "--rfc5424", "-t", "ssh5424"]),
        (&linux, ["--udp", "--rfc3164", "-t", "linux3164"]),
    ] {
        for chunk in lines.chunks(100) {
            let path = dir.path().join("chunk.log");
            std::fs::write(&path, chunk.join("\n") + "\n").unwrap();
            logger(udp, &args, &path);
            sent += chunk.len() as u64;
            wait_received(&sediment, "syslog_udp", sent, Duration::from_secs(30));
        }
    }
    let until = now_ms() + 1000;
    let metrics = sediment.metrics();
    sediment.stop();

    let events = archived(dir.path());
    assert_eq!(events.len(), 8000, "no other event was archived");
    let of = |app: &str| -> Vec<&Value> { events.iter().filter(|e| e["app"] == app).collect() };
    for (app, lines, version) in [
        ("linux5424", &linux, 1),
        ("ssh3164", &ssh, 0),
        ("ssh5424", &ssh, 1),
        ("linux3164", &linux, 0),
    ] {
        let mine = of(app);
        assert_exactly_once(&mine, lines, app);
        assert_headers(&mine, app, since, until, app);
        for e in &mine {
            assert_eq!(
                (&e["level"], &e["_meta"]["syslog"]["facility"]),
                (&Value::from("notice"), &Value::from("user")),
                "{app}"
            );
            let syslog = &e["_meta"]["syslog"];
            if version == 1 {
                assert_eq!(syslog["version"], 1, "{app}");
                // logger's own structured data, parsed.
                assert_eq!(
                    syslog["structured_data"]["timeQuality"]["tzKnown"], "1",
                    "{app}: {e}"
                );
            } else {
                assert_eq!(syslog["version"], Value::Null, "{app}");
            }
        }
    }
    for id in ["syslog_tcp", "syslog_udp"] {
        assert_component_metrics(&metrics, id, "source", "syslog", 4000, 4000);
        let labels =
            format!("component_id=\"{id}\",component_kind=\"source\",component_type=\"syslog\"");
        assert_eq!(
            metric(&metrics, "sediment_syslog_parse_errors_total", &labels),
            Some(0)
        );
    }
}

/// An rsyslogd run with its own config, stopped (by its pid file) when dropped.
struct Rsyslog {
    child: Child,
    pid_file: PathBuf,
}

impl Rsyslog {
    /// Starts rsyslogd forwarding the lines of `input` (read by imfile, tagged
    /// `tag`) to 127.0.0.1:`port`, octet-counted RFC 5424, through `tls` settings if any.
    fn start(dir: &Path, input: &Path, tag: &str, port: u16, tls: Option<&Certs>) -> Rsyslog {
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        let (global_tls, action_tls) = match tls {
            Some(c) => (
                format!(
                    "defaultNetstreamDriver=\"gtls\" defaultNetstreamDriverCAFile=\"{}\" \
                     defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\"",
                    c.ca.display(),
                    c.client.display(),
                    c.client_key.display()
                ),
                "StreamDriver=\"gtls\" StreamDriverMode=\"1\" StreamDriverAuthMode=\"x509/name\" \
                 StreamDriverPermittedPeers=\"localhost\""
                    .to_owned(),
            ),
            None => (String::new(), String::new()),
        };
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}" {global_tls})
module(load="imfile" mode="polling" pollingInterval="1")
input(type="imfile" file="{input}" tag="{tag}" facility="local3" severity="info" ruleset="forward")
ruleset(name="forward") {{
  action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
         TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format" {action_tls}
         action.resumeRetryCount="-1" action.resumeInterval="1")
}}
"#,
                work = work.display(),
                input = input.display(),
            ),
        )
        .unwrap();
        let pid_file = dir.join("rsyslogd.pid");
        let log = std::fs::File::create(dir.join("rsyslogd.log")).unwrap();
        // Debian puts it in /usr/sbin, which a non-login PATH may lack.
        let rsyslogd = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("rsyslogd");
        let child = Command::new(rsyslogd)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(&pid_file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("rsyslogd is installed (scripts/test installs it)");
        Rsyslog { child, pid_file }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .unwrap_or(self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rsyslog forwards a file of loghub lines; every line arrives exactly once.
fn rsyslog_run(tls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let options = if tls {
        format!(
            "mode: tls, tls: {{crt_file: '{}', key_file: '{}', ca_file: '{}'}}",
            certs.server.display(),
            certs.server_key.display(),
            certs.ca.display()
        )
    } else {
        "mode: tcp".to_owned()
    };
    let (yaml, ports) = topology(&[("syslog_in", options)]);
    let sediment = Setup::new(dir.path()).topology(&yaml).start();
    let lines: Vec<String> = loghub_lines("Linux", 2000)
        .into_iter()
        .chain(loghub_lines("OpenSSH", 2000))
        .collect();
    let input = dir.path().join("input.log");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let since = now_ms() / 1000 * 1000;
    let rsyslog = Rsyslog::start(
        dir.path(),
        &input,
        "loghub",
        ports["syslog_in"],
        tls.then_some(&certs),
    );
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_received(
            &sediment,
            "syslog_in",
            lines.len() as u64,
            Duration::from_secs(90),
        )
    }));
    if waited.is_err() {
        let log = std::fs::read_to_string(dir.path().join("rsyslogd.log")).unwrap_or_default();
        panic!("rsyslog did not deliver every line; rsyslogd said:\n{log}");
    }
    drop(rsyslog);
    let until = now_ms() + 1000;
    sediment.stop();

    let events = archived(dir.path());
    let mine: Vec<&Value> = events.iter().collect();
    let what = if tls {
        "rsyslog over TLS"
    } else {
        "rsyslog over TCP"
    };
    assert_exactly_once(&mine, &lines, what);
    assert_headers(&mine, "loghub", since, until, what);
    for e in &mine {
        assert_eq!(
            (&e["level"], &e["_meta"]["syslog"]["facility"]),
            (&Value::from("info"), &Value::from("local3")),
            "{what}"
        );
        assert_eq!(e["_meta"]["syslog"]["version"], 1, "{what}");
    }
}

#[test]
fn rsyslog_forwards_every_line_once_over_tcp() {
    rsyslog_run(false);
}

#[test]
fn rsyslog_forwards_every_line_once_over_mutual_tls() {
    rsyslog_run(true);
}

/// Writes "seq N" messages `from..to` over one TCP connection (octet-counted RFC
/// 5424, all with timestamp `ts`), `pace` between blocks of 100; returns at the
/// first write error. `progress` holds the next seq to write.
fn numbered(
    port: u16,
    from: u64,
    to: u64,
    ts: String,
    pace: Duration,
    progress: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut n = from;
        while n < to {
            let end = (n + 100).min(to);
            let mut block = Vec::new();
            for seq in n..end {
                let msg = format!("<134>1 {ts} numbered seqclient - - - seq {seq}");
                block.extend_from_slice(format!("{} {msg}", msg.len()).as_bytes());
            }
            if stream.write_all(&block).is_err() {
                return;
            }
            n = end;
            progress.store(n, Ordering::SeqCst);
            std::thread::sleep(pace);
        }
    })
}

fn seqs(root: &Path) -> Vec<u64> {
    let mut seqs: Vec<u64> = archived(root)
        .iter()
        .map(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .strip_prefix("seq ")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    seqs.sort_unstable();
    seqs
}

#[test]
fn kill_9_mid_stream_leaves_a_gap_free_prefix_and_the_resent_rest_lands_once() {
    const TOTAL: u64 = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let (yaml, ports) = topology(&[("syslog_in", "mode: tcp".into())]);
    let port = ports["syslog_in"];
    // One timestamp for the whole stream: one hour, one staging segment.
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);

    let sediment = Setup::new(dir.path()).topology(&yaml).start();
    let progress = Arc::new(AtomicU64::new(0));
    let client = numbered(
        port,
        0,
        TOTAL,
        ts.clone(),
        Duration::from_millis(5),
        progress.clone(),
    );
    wait_received(&sediment, "syslog_in", 5_000, Duration::from_secs(60));
    sediment.kill9();
    let written_before_kill = progress.load(Ordering::SeqCst);
    client.join().unwrap();
    assert!(
        written_before_kill < TOTAL,
        "the stream was still running at kill -9 ({written_before_kill} written)"
    );

    // A clean run archives what the crash left staged.
    Setup::new(dir.path()).topology(&yaml).start().stop();
    let prefix = seqs(dir.path());
    let kept = prefix.len() as u64;
    assert!(kept > 0, "batches committed before the kill survive it");
    assert!(
        prefix.iter().copied().eq(0..kept),
        "the archive holds a gap-free, duplicate-free prefix (0..{kept}): first difference at {:?}",
        prefix.iter().zip(0..).find(|(s, i)| **s != *i)
    );

    // The sender resends from where the archive ends.
    let sediment = Setup::new(dir.path()).topology(&yaml).start();
    numbered(
        port,
        kept,
        TOTAL,
        ts,
        Duration::ZERO,
        Arc::new(AtomicU64::new(0)),
    )
    .join()
    .unwrap();
    wait_received(
        &sediment,
        "syslog_in",
        TOTAL - kept,
        Duration::from_secs(60),
    );
    sediment.stop();
    let all = seqs(dir.path());
    assert!(
        all.iter().copied().eq(0..TOTAL),
        "every seq is archived exactly once after the resend"
    );
    eprintln!(
        "kill -9 after {written_before_kill} written: {kept} survived, {} resent",
        TOTAL - kept
    );
}
