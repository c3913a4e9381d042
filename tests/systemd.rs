//! deploy/systemd/sediment.service: `systemd-analyze verify` accepts the unit and
//! its drop-in (and does report a broken copy, so the check can fail), and the
//! real binary speaks `Type=notify`: `READY=1` on a fake `$NOTIFY_SOCKET` exactly
//! when `/health` turns 200, `STOPPING=1` when SIGTERM starts the shutdown.
//!
//! systemd itself is not PID 1 in the test container, so the unit's hardening is
//! checked statically (`verify`, `security --offline`), not by starting it.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd")
}

/// The unit (and drop-ins) copied into `dir`, ExecStart pointing at the binary
/// under test: `verify` insists that the executable exists.
fn unit_in(dir: &Path, with_drop_in: bool) -> PathBuf {
    let text = std::fs::read_to_string(deploy().join("sediment.service")).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/sediment run "));
    let unit = dir.join("sediment.service");
    let exec = binary().display().to_string();
    std::fs::write(&unit, text.replace("/usr/local/bin/sediment", &exec)).unwrap();
    if with_drop_in {
        let d = dir.join("sediment.service.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(
            deploy().join("sediment.service.d/privileged-port.conf"),
            d.join("privileged-port.conf"),
        )
        .unwrap();
    }
    unit
}

/// `systemd-analyze verify`: its exit code, and what it printed (it exits 0 on an
/// unknown key or a bad value, but says so on stderr).
fn verify(unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .current_dir(unit.parent().unwrap())
        .output()
        .expect("systemd-analyze runs (scripts/test installs systemd)");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

#[test]
fn the_unit_and_its_drop_in_pass_systemd_analyze_verify() {
    for with_drop_in in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let unit = unit_in(dir.path(), with_drop_in);
        let (ok, text) = verify(&unit);
        assert!(
            ok && text.trim().is_empty(),
            "drop-in {with_drop_in}: {text}"
        );
    }
    // The same check on a broken copy must complain: it is not a check that cannot fail.
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_in(dir.path(), true);
    let drop_in = dir.path().join("sediment.service.d/privileged-port.conf");
    let text = std::fs::read_to_string(&drop_in).unwrap();
    std::fs::write(&drop_in, text + "CapabilityBoundingSett=CAP_NET_RAW\n").unwrap();
    let (_, complaint) = verify(&unit);
    assert!(
        complaint.contains("Unknown key") && complaint.contains("CapabilityBoundingSett"),
        "{complaint}"
    );
}

#[test]
fn the_unit_asks_for_what_the_issue_lists() {
    let text = std::fs::read_to_string(deploy().join("sediment.service")).unwrap();
    let settings: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for wanted in [
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=sediment",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet=",
    ] {
        assert!(settings.contains(&wanted), "the unit lacks {wanted}");
    }
    assert!(
        !settings.iter().any(|l| l.starts_with("ExecReload=")),
        "sediment has no reload"
    );
    // TimeoutStopSec above the default shutdown_timeout (60s), so a stop can
    // upload the open hours before systemd sends SIGKILL.
    let stop = settings
        .iter()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec is set");
    let seconds: u64 = stop.trim_end_matches('s').parse().unwrap();
    assert!(seconds > 60, "TimeoutStopSec={stop}");
    // Only the drop-in grants a capability, and only this one.
    let drop_in =
        std::fs::read_to_string(deploy().join("sediment.service.d/privileged-port.conf")).unwrap();
    assert!(drop_in.contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"));
    // systemd's own exposure score of the unit (lower is better; "OK" is below 4.0).
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_in(dir.path(), false);
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for sediment.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    eprintln!("systemd-analyze security --offline: exposure {score}");
    assert!(score < 2.5, "exposure {score}:\n{report}");
}

/// One datagram from the fake notify socket, within `timeout`.
fn receive(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The status of `GET /health`.
fn health(sediment: &Sediment) -> Option<u16> {
    get(&format!("http://127.0.0.1:{}/health", sediment.api_port)).map(|(s, _)| s)
}

#[test]
fn ready_once_health_is_200_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let mut setup = Setup::new(dir.path());
    setup
        .extra_env
        .push(("NOTIFY_SOCKET".into(), socket_path.display().to_string()));
    let started = Instant::now();
    let mut sediment = setup.spawn();
    let ready = receive(&socket, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no notification within 30 s:\n{}", sediment.log()));
    // Sent right after /health turned 200, and not before.
    assert_eq!(
        health(&sediment),
        Some(200),
        "READY=1 before /health said 200"
    );
    let lines: Vec<&str> = ready.lines().collect();
    assert!(lines.contains(&"READY=1"), "{ready:?}");
    assert!(lines.contains(&"STATUS=running"), "{ready:?}");
    eprintln!("READY=1 after {:?}", started.elapsed());
    assert_eq!(
        post_ndjson(&sediment.url("/"), &[serde_json::json!({"message": "up"})]),
        Ok(200)
    );
    // Nothing more while it runs.
    assert_eq!(receive(&socket, Duration::from_millis(300)), None);

    let pid = sediment.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let stopping = receive(&socket, Duration::from_secs(10)).expect("STOPPING=1 after SIGTERM");
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(!stopping.contains("READY=1"), "{stopping:?}");
    // sediment then finishes and exits 0, with no further notification (a
    // second SIGTERM would mean "exit now": wait instead).
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = sediment.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit:\n{}", sediment.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}:\n{}", sediment.log());
    assert_eq!(receive(&socket, Duration::from_millis(100)), None);
    // The open hour was uploaded on the way out.
    let archived: usize = read_archive(&dir.path().join("archive"))
        .iter()
        .map(|(_, events)| events.len())
        .sum();
    assert_eq!(archived, 1);
}

#[test]
fn without_notify_socket_nothing_is_sent_and_sediment_runs() {
    // The same binary outside systemd: no $NOTIFY_SOCKET, no warning about it.
    let dir = tempfile::tempdir().unwrap();
    let sediment = Setup::new(dir.path()).start();
    let log = sediment.log();
    sediment.stop();
    assert!(!log.contains("NOTIFY_SOCKET"), "{log}");
}
