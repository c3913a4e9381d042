//! `GET /health` is what load balancers and readiness probes trust: 200 means
//! every source accepts input. The API is served from the very start (its
//! metrics show the start-up), so until the topology is up it answers 503.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// The status of one `GET /health`, or `None` while nothing listens.
fn health(port: u16) -> Option<u16> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    c.write_all(b"GET /health HTTP/1.1\r\nHost: sediment\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut head = [0u8; 12];
    c.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[test]
fn health_is_200_only_once_the_sources_accept_input() {
    // Polled every millisecond from the moment sediment is spawned: the first
    // 200 must find the HTTP source listening, every time.
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let sediment = Setup::new(dir.path()).spawn();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut starting = 0;
        loop {
            match health(sediment.api_port) {
                Some(200) => break,
                Some(503) => starting += 1,
                Some(other) => panic!("/health answered {other}"),
                None => {}
            }
            assert!(
                Instant::now() < deadline,
                "never healthy:\n{}",
                sediment.log()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            TcpStream::connect(("127.0.0.1", sediment.http_port)).is_ok(),
            "round {round}: /health said 200 (after {starting} answers of 503) but the HTTP source refuses connections"
        );
        let event = serde_json::json!({"message": "first"});
        assert_eq!(post_ndjson(&sediment.url("/"), &[event]), Ok(200));
        sediment.stop();
    }
}
