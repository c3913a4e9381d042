//! Load generator for `scripts/bench-syslog`: sends RFC 5424 messages built from
//! `../shared/data/loghub` over TCP connections, octet-counted or newline-framed,
//! and prints what it wrote as JSON.
//!
//! Usage: `syslog_loadgen HOST:PORT CONNECTIONS MESSAGES [octet|newline]`

use std::io::Write;
use std::net::TcpStream;
use std::time::Instant;

/// Every loghub line as a framed RFC 5424 message, and where each one ends.
fn pool(octet_counted: bool) -> (Vec<u8>, Vec<usize>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/loghub");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("loghub samples")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    let now = chrono::Utc::now();
    let (mut bytes, mut ends) = (Vec::new(), Vec::new());
    let mut n: i64 = 0;
    for path in files {
        let app = path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .split('_')
            .next()
            .unwrap()
            .to_lowercase();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            // Spread over the last five minutes, with every severity.
            let ts = (now - chrono::Duration::milliseconds((n * 7919) % 300_000))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let pri = 16 * 8 + (n % 8);
            let msg = format!(
                "<{pri}>1 {ts} host-{} {app} {} - - {line}",
                n % 16,
                1000 + n % 50
            );
            if octet_counted {
                bytes.extend_from_slice(format!("{} {msg}", msg.len()).as_bytes());
            } else {
                bytes.extend_from_slice(msg.as_bytes());
                bytes.push(b'\n');
            }
            ends.push(bytes.len());
            n += 1;
        }
    }
    (bytes, ends)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: syslog_loadgen HOST:PORT CONNECTIONS MESSAGES [octet|newline]");
        std::process::exit(2);
    }
    let address = args[1].clone();
    let connections: usize = args[2].parse().expect("CONNECTIONS is a number");
    let messages: usize = args[3].parse().expect("MESSAGES is a number");
    let octet = args.get(4).is_none_or(|f| f != "newline");
    let (pool, ends) = pool(octet);
    let pool = std::sync::Arc::new((pool, ends));
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let (address, pool) = (address.clone(), pool.clone());
            let count = messages / connections + usize::from(c < messages % connections);
            std::thread::spawn(move || -> usize {
                let (bytes, ends) = &*pool;
                let mut stream = TcpStream::connect(&address).expect("sediment listens");
                let (whole, rest) = (count / ends.len(), count % ends.len());
                for _ in 0..whole {
                    stream.write_all(bytes).unwrap();
                }
                let tail = if rest == 0 { 0 } else { ends[rest - 1] };
                stream.write_all(&bytes[..tail]).unwrap();
                whole * bytes.len() + tail
            })
        })
        .collect();
    let bytes: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    println!(
        "{{\"seconds\":{:.3},\"messages\":{messages},\"bytes\":{bytes}}}",
        started.elapsed().as_secs_f64()
    );
}
