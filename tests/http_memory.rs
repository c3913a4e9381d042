//! Issue 11 (Hardening I), items 1, 2, 3 and 5 against the real binary: what
//! one request, many requests and slow or hostile clients can make the HTTP
//! source hold, measured from `/proc/PID/status`.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{post, read_archive, Setup};

/// The issue's bound for the default config, in KiB.
const RSS_BOUND_KIB: u64 = 200 * 1024;

/// Posts until the answer is not a 503; returns the final status and body.
fn post_until_taken(url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        match post(url, headers, body) {
            Ok((503, _, _)) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Ok((status, text, _)) => return (status, text),
            Err(e) => panic!("no answer: {e}"),
        }
    }
}

/// Item 1: 16 bodies of 10 MiB of one-character lines at once, the default
/// config. Each is refused whole (413: more lines than max_events_per_request,
/// or 503 while the memory budget is spent) and the process stays bounded.
#[test]
fn sixteen_concurrent_10_mib_bodies_of_tiny_lines_stay_under_200_mib() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::new(dir.path()).start();
    let body = Arc::new("a\n".repeat(5 << 20).into_bytes());
    let url = s.url("/");
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (body, url) = (body.clone(), url.clone());
            std::thread::spawn(move || {
                post(&url, &[("content-type", "text/plain")], &body)
                    .map(|r| (r.0, r.1))
                    .unwrap_or((0, String::new()))
            })
        })
        .collect();
    let answers: Vec<(u16, String)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let peak = s.peak_rss_kib();
    for (status, text) in &answers {
        assert!(
            *status == 413 || *status == 503,
            "refused whole, got {status}: {text}"
        );
        if *status == 413 {
            assert!(text.contains("max_events_per_request"), "{text}");
        }
    }
    assert!(
        answers.iter().any(|a| a.0 == 413),
        "at least one was read and refused"
    );
    eprintln!("16 x 10 MiB of tiny lines: peak RSS {} MiB", peak / 1024);
    assert!(peak <= RSS_BOUND_KIB, "peak RSS {peak} KiB");
    s.stop();
    assert!(read_archive(&dir.path().join("archive")).is_empty());
}

/// Item 1: bodies larger than one batch are staged in bounded chunks: every
/// accepted line is archived exactly once, a body with a bad last line is
/// refused whole with nothing of it archived, and memory stays bounded.
#[test]
fn large_bodies_are_staged_in_chunks_all_or_nothing() {
    const LINES: usize = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::new(dir.path()).start();
    let url = s.url("/");
    let body_of = |tag: &str| -> Vec<u8> {
        (0..LINES)
            .map(|i| format!("{{\"r\":\"{tag}\",\"n\":{i}}}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let mut bad = body_of("bad");
    bad.truncate(bad.len() - 2); // the last line loses its closing brace
    bad.push(b'\n');
    let bad_answer = post(&url, &[("content-type", "application/x-ndjson")], &bad).unwrap();
    assert_eq!(bad_answer.0, 400, "{}", bad_answer.1);
    assert!(
        bad_answer.1.contains(&format!("line {LINES}:")),
        "{}",
        bad_answer.1
    );
    let clients: Vec<_> = (0..6)
        .map(|k| {
            let (url, body) = (url.clone(), body_of(&format!("r{k}")));
            std::thread::spawn(move || {
                post_until_taken(&url, &[("content-type", "application/x-ndjson")], &body)
            })
        })
        .collect();
    for c in clients {
        let (status, text) = c.join().unwrap();
        assert_eq!(status, 200, "{text}");
        assert!(text.contains(&format!("\"accepted\":{LINES}")), "{text}");
    }
    let peak = s.peak_rss_kib();
    s.stop();
    let mut per_tag: HashMap<String, Vec<u64>> = HashMap::new();
    for (_, events) in read_archive(&dir.path().join("archive")) {
        for e in events {
            per_tag
                .entry(e["r"].as_str().unwrap().to_owned())
                .or_default()
                .push(e["n"].as_u64().unwrap());
        }
    }
    assert!(!per_tag.contains_key("bad"), "nothing of the refused body");
    assert_eq!(per_tag.len(), 6);
    for (tag, mut ns) in per_tag {
        ns.sort_unstable();
        assert_eq!(
            ns,
            (0..LINES as u64).collect::<Vec<_>>(),
            "{tag}: every line once"
        );
    }
    eprintln!("6 x {LINES} lines in chunks: peak RSS {} MiB", peak / 1024);
    assert!(peak <= RSS_BOUND_KIB, "peak RSS {peak} KiB");
}

/// Item 3: clients that send a header and then trickle their body hold no
/// in-flight slot: with all 16 of them trickling, another client's request is
/// answered at once, and the tricklers get 408 after request_timeout.
#[test]
fn trickling_bodies_do_not_starve_others_and_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::new(dir.path())
        .topology(
            "
sources:
  http_in: {type: http, address: '127.0.0.1:{HTTP}', request_timeout: 3s}
sinks:
  archive: {type: file, inputs: [http_in], path: '{ROOT}/archive', account_id: acme}
",
        )
        .start();
    let stop = Arc::new(AtomicBool::new(false));
    let port = s.http_port;
    let tricklers: Vec<_> = (0..16)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                c.write_all(
                    b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: 100000\r\n\r\n",
                )
                .unwrap();
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(10) {
                    if c.write_all(b"a").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut answer = Vec::new();
                let _ = c.read_to_end(&mut answer);
                (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (status, text, _) =
        post(&s.url("/"), &[("content-type", "text/plain")], b"hello\n").unwrap();
    let waited = started.elapsed();
    assert_eq!(status, 200, "{text}");
    eprintln!("a request beside 16 tricklers waited {waited:?}");
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    for t in tricklers {
        let (answer, after) = t.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
        assert!(after < Duration::from_secs(6), "timed out after {after:?}");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(s.metrics().contains("error_type=\"body_timeout\""));
    s.stop();
}

/// Item 2: hundreds of clients posting without pause: memory levels off at a
/// bound set by the config instead of climbing.
#[test]
fn sustained_overload_plateaus() {
    const POSTERS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::new(dir.path()).start();
    let stop = Arc::new(AtomicBool::new(false));
    let body: Arc<Vec<u8>> = Arc::new(
        (0..1000)
            .map(|i| format!("{{\"message\":\"GET /index.html 200 {i}\",\"level\":\"info\"}}\n"))
            .collect::<String>()
            .into_bytes(),
    );
    let posters: Vec<_> = (0..POSTERS)
        .map(|_| {
            let (stop, body, url) = (stop.clone(), body.clone(), s.url("/"));
            std::thread::spawn(move || {
                let mut answers = HashMap::<u16, u64>::new();
                while !stop.load(Ordering::Relaxed) {
                    let status = post(&url, &[("content-type", "application/x-ndjson")], &body)
                        .map(|r| r.0)
                        .unwrap_or(0);
                    *answers.entry(status).or_default() += 1;
                }
                answers
            })
        })
        .collect();
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(18) {
        std::thread::sleep(Duration::from_millis(500));
        samples.push(s.rss_kib());
    }
    stop.store(true, Ordering::Relaxed);
    let mut answers = HashMap::<u16, u64>::new();
    for p in posters {
        for (k, v) in p.join().unwrap() {
            *answers.entry(k).or_default() += v;
        }
    }
    let third = samples.len() / 3;
    let early = *samples[third..2 * third].iter().max().unwrap();
    let late = *samples[2 * third..].iter().max().unwrap();
    eprintln!(
        "{POSTERS} posters: answers {answers:?}; RSS middle third max {} MiB, last third max {} MiB, peak {} MiB",
        early / 1024,
        late / 1024,
        s.peak_rss_kib() / 1024
    );
    assert!(answers.get(&200).copied().unwrap_or(0) > 0, "{answers:?}");
    assert!(
        late <= early + early / 10 + 8 * 1024,
        "still climbing: {early} KiB then {late} KiB"
    );
    assert!(
        s.peak_rss_kib() <= RSS_BOUND_KIB,
        "peak {} KiB",
        s.peak_rss_kib()
    );
    s.stop();
}

/// Item 5: one request whose lines fall in thousands of distinct hours is
/// refused at once with the reason, and does not hold up another client.
#[test]
fn a_request_spanning_thousands_of_hours_is_refused_and_blocks_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::new(dir.path()).start();
    let start = 1_700_000_000i64;
    let body: String = (0..3000)
        .map(|h| format!("{{\"timestamp\":{},\"m\":\"x\"}}\n", start + h * 3600))
        .collect();
    let url = s.url("/");
    let wide = {
        let url = url.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = post(
                &url,
                &[("content-type", "application/x-ndjson")],
                body.as_bytes(),
            )
            .unwrap();
            (r.0, r.1, started.elapsed())
        })
    };
    let started = Instant::now();
    let one = post(
        &url,
        &[("content-type", "application/x-ndjson")],
        b"{\"m\":\"one\"}\n",
    )
    .unwrap();
    let waited = started.elapsed();
    let (status, text, took) = wide.join().unwrap();
    eprintln!("3,000 hours refused in {took:?}; a one-line request waited {waited:?}");
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("more than 48 distinct hours (max_hours_per_request)"),
        "{text}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(one.0, 200, "{}", one.1);
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    s.stop();
}

/// Item 1, all or nothing: a large request whose later chunks cannot get into
/// the pipeline (a second sink, an HTTP forwarder, is stuck on a receiver that
/// never answers) gets 503, and none of its chunks — not even those the archive
/// sink had already taken — appears in the archive; the held parts are deleted.
#[test]
fn a_large_request_failing_part_way_leaves_nothing_in_the_archive() {
    const LINES: usize = 30_000;
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for c in silent.incoming() {
            kept.push(c);
        }
    });
    let topology = format!(
        "
sources:
  http_in: {{type: http, address: '127.0.0.1:{{HTTP}}', request_timeout: 2s}}
sinks:
  archive: {{type: file, inputs: [http_in], path: '{{ROOT}}/archive', account_id: acme}}
  forward: {{type: http, inputs: [http_in], uri: 'http://127.0.0.1:{silent_port}/', request: {{timeout: 60s}}}}
"
    );
    let s = Setup::new(dir.path())
        .topology(&topology)
        .shutdown_timeout("2s")
        .start();
    let body: String = (0..LINES)
        .map(|i| format!("{{\"r\":\"big\",\"n\":{i}}}\n"))
        .collect();
    let (status, text, _) = post(
        &s.url("/"),
        &[("content-type", "application/x-ndjson")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 503, "{text}");
    let groups = dir.path().join("data/archive/groups");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&groups).unwrap().count() > 0 {
        assert!(Instant::now() < deadline, "held parts were not deleted");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.kill9();
    // The next start seals and uploads whatever was staged.
    let s = Setup::new(dir.path())
        .topology(
            "
sources:
  http_in: {type: http, address: '127.0.0.1:{HTTP}'}
sinks:
  archive: {type: file, inputs: [http_in], path: '{ROOT}/archive', account_id: acme}
",
        )
        .start();
    s.stop();
    let archived: usize = read_archive(&dir.path().join("archive"))
        .iter()
        .map(|(_, events)| events.iter().filter(|e| e["r"] == "big").count())
        .sum();
    assert_eq!(archived, 0, "nothing of the failed request is archived");
}
