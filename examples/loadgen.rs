//! Load generator for `scripts/bench`: POSTs NDJSON bodies built from
//! `../shared/data/loghub` over keep-alive connections and prints what was acknowledged.
//!
//! Usage: `loadgen URL CONNECTIONS SECONDS EVENTS_PER_BODY [CONTENT_ENCODING]`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bodies(events_per_body: usize) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/loghub");
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("loghub samples") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let app = path
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .split('_')
                .next()
                .unwrap()
                .to_lowercase();
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                lines.push((app.clone(), line.to_owned()));
            }
        }
    }
    let hour = chrono::Utc::now().timestamp() / 3600 * 3600;
    let levels = ["INFO", "WARN", "ERROR", "DEBUG"];
    (0..64)
        .map(|b| {
            let mut body = Vec::new();
            for i in 0..events_per_body {
                let n = b * events_per_body + i;
                let (app, line) = &lines[n % lines.len()];
                let ts = chrono::DateTime::from_timestamp(hour + (n as i64 % 3600), 0).unwrap().to_rfc3339();
                let event = serde_json::json!({"timestamp": ts, "app": app, "level": levels[n % 4], "message": line});
                serde_json::to_writer(&mut body, &event).unwrap();
                body.push(b'\n');
            }
            body
        })
        .collect()
}

/// CPU time (user + system) this process used, to show what the load itself costs.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: loadgen URL CONNECTIONS SECONDS EVENTS_PER_BODY");
        std::process::exit(2);
    }
    let url = args[1].clone();
    let connections: usize = args[2].parse().unwrap();
    let seconds: u64 = args[3].parse().unwrap();
    let per_body: usize = args[4].parse().unwrap();
    let bodies = Arc::new(bodies(per_body));
    let stop = Arc::new(AtomicBool::new(false));
    let (events, bytes, refused) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let (url, bodies, stop, events, bytes, refused) = (
                url.clone(),
                bodies.clone(),
                stop.clone(),
                events.clone(),
                bytes.clone(),
                refused.clone(),
            );
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let body = &bodies[i % bodies.len()];
                    i += connections;
                    match agent
                        .post(&url)
                        .header("content-type", "application/x-ndjson")
                        .send(&body[..])
                    {
                        Ok(mut r) if r.status() == 200 => {
                            let _ = r.body_mut().read_to_string();
                            events.fetch_add(per_body as u64, Ordering::Relaxed);
                            bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                        }
                        Ok(mut r) => {
                            let _ = r.body_mut().read_to_string();
                            refused.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"seconds\":{elapsed:.3},\"events\":{},\"bytes\":{},\"refused\":{},\"cpu_seconds\":{:.2}}}",
        events.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        own_cpu_seconds()
    );
}
