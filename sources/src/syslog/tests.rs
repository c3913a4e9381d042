//! The source as a whole: configuration, and real sockets on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sediment_core::clock::SystemClock;
use sediment_core::component::{BuildContext, Source};
use sediment_core::metrics::ComponentMetrics;
use sediment_core::{Batch, Output};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;

#[path = "tls_tests.rs"]
mod tls_tests;

fn options(yaml: &str) -> Result<SyslogSettings, Vec<String>> {
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    parse_typed::<SyslogOptions>("sources.syslog_in", value)
        .and_then(|o| validate("sources.syslog_in", o))
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

#[test]
fn config_round_trip_with_every_option() {
    let s = options(
        "mode: tcp\naddress: 127.0.0.1:5514\nmax_message_size: 8KiB\nconnection_limit: 10\nkeepalive: 60s\n\
         receive_buffer_bytes: 1MiB\npermit_origin: [10.0.0.0/8, 192.0.2.7, 'fd00::/8']\ntimezone: '+02:00'",
    )
    .unwrap();
    assert_eq!(s.mode, Mode::Tcp);
    assert_eq!(s.address, "127.0.0.1:5514".parse().unwrap());
    assert_eq!((s.max_message_size, s.connection_limit), (8192, 10));
    assert_eq!(s.keepalive, Some(Duration::from_secs(60)));
    assert_eq!(s.receive_buffer_bytes, Some(1 << 20));
    assert_eq!(s.timezone, TimeZone::Fixed(7200));
    assert!(s.permits("10.9.8.7".parse().unwrap()));
    assert!(
        s.permits("::ffff:10.9.8.7".parse().unwrap()),
        "IPv4-mapped peers match IPv4 ranges"
    );
    assert!(s.permits("192.0.2.7".parse().unwrap()));
    assert!(s.permits("fd00::1".parse().unwrap()));
    assert!(!s.permits("192.0.2.8".parse().unwrap()));

    let d = options("mode: udp").unwrap();
    assert_eq!(d.address, "0.0.0.0:514".parse().unwrap());
    assert_eq!(
        (d.max_message_size, d.connection_limit),
        (64 << 10, DEFAULT_CONNECTION_LIMIT)
    );
    assert_eq!(
        (d.keepalive, d.receive_buffer_bytes, d.timezone),
        (None, None, TimeZone::Utc)
    );
    assert!(
        d.permits("203.0.113.1".parse().unwrap()),
        "no permit_origin: everyone"
    );
}

#[test]
fn config_errors_name_the_yaml_path() {
    let errors = |yaml| options(yaml).unwrap_err();
    assert!(errors("mode: tcp\nadress: x")[0]
        .starts_with("sources.syslog_in.adress: unknown field `adress`; did you mean `address`?"));
    assert_eq!(
        errors("address: 127.0.0.1:1"),
        ["sources.syslog_in: missing field `mode`"]
    );
    assert!(errors("mode: sctp")[0].starts_with("sources.syslog_in.mode: unknown variant `sctp`"));
    assert_eq!(
        errors("mode: udp\nconnection_limit: 5\nkeepalive: 10s\npermit_origin: [10.0.0.0/33]\ntimezone: Mars/Base\nmax_message_size: 0"),
        [
            "sources.syslog_in.max_message_size: must be between 1 byte and 16MiB",
            "sources.syslog_in.connection_limit: applies to tcp and tls modes only",
            "sources.syslog_in.keepalive: applies to tcp and tls modes only",
            "sources.syslog_in.permit_origin[0]: invalid address or CIDR `10.0.0.0/33`: expected e.g. 10.0.0.0/8, 192.0.2.7 or fd00::/8",
            "sources.syslog_in.timezone: invalid time zone `Mars/Base`: expected `UTC`, `local` or an offset such as `+02:00`",
        ]
    );
    assert_eq!(
        errors("mode: tls"),
        ["sources.syslog_in.tls: is required in tls mode: set crt_file and key_file"]
    );
    assert_eq!(
        errors("mode: tcp\ntls: {crt_file: a, key_file: b}"),
        ["sources.syslog_in.tls: applies to tls mode only"]
    );
    let e = errors("mode: tls\ntls: {crt_file: a, key_file: b, ca: c}");
    assert_eq!(e, ["sources.syslog_in.tls.ca: unknown field `ca`, expected one of `crt_file`, `key_file`, `ca_file`"]);
    assert_eq!(
        errors("mode: tls\ntls: {crt_file: /nonexistent/server.pem, key_file: /nonexistent/key.pem}"),
        ["sources.syslog_in.tls.crt_file: cannot read /nonexistent/server.pem: No such file or directory (os error 2)"]
    );
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("junk.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let yaml = format!(
        "mode: tls\ntls: {{crt_file: '{0}', key_file: '{0}'}}",
        not_pem.display()
    );
    assert_eq!(
        errors(&yaml),
        [format!(
            "sources.syslog_in.tls.crt_file: no certificate in {}",
            not_pem.display()
        )]
    );
}

#[test]
fn idle_timeout_defaults_to_5m_and_applies_to_streams_only() {
    assert_eq!(
        options("mode: tcp").unwrap().idle_timeout,
        DEFAULT_IDLE_TIMEOUT
    );
    assert_eq!(
        options("mode: tcp\nidle_timeout: 30s")
            .unwrap()
            .idle_timeout,
        Duration::from_secs(30)
    );
    assert_eq!(
        options("mode: udp\nidle_timeout: 30s").unwrap_err(),
        ["sources.syslog_in.idle_timeout: applies to tcp and tls modes only"]
    );
    assert_eq!(
        options("mode: tcp\nidle_timeout: 0s").unwrap_err(),
        ["sources.syslog_in.idle_timeout: must be at least 1ms"]
    );
}

/// A started source and the receiving end of its output.
struct Running {
    address: std::net::SocketAddr,
    batches: mpsc::Receiver<Batch>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    metrics: ComponentMetrics,
}

impl Running {
    async fn start(id: &str, yaml: &str, capacity: usize) -> Running {
        let settings = options(yaml).unwrap();
        let metrics = ComponentMetrics::new(id, "source", "syslog");
        let cx = BuildContext {
            id: id.into(),
            metrics: metrics.clone(),
            data_dir: PathBuf::new(),
            clock: Arc::new(SystemClock),
            shutdown_timeout: Duration::from_secs(5),
            shutdown: Default::default(),
            progress: Default::default(),
        };
        let (source, address): (Box<dyn Source>, _) = if settings.mode == Mode::Udp {
            let s = udp::UdpSource::bind(settings, &cx).unwrap();
            let a = s.local_addr().unwrap();
            (Box::new(s), a)
        } else {
            let s = tcp::TcpSource::bind(settings, &cx).unwrap();
            let a = s.local_addr().unwrap();
            (Box::new(s), a)
        };
        let (tx, batches) = mpsc::channel(capacity);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(source.run(Output::new(vec![tx]), shutdown.clone()));
        Running {
            address,
            batches,
            shutdown,
            task,
            metrics,
        }
    }

    /// Stops the source and returns every event it sent, in order.
    async fn stop(mut self) -> (Vec<Value>, ComponentMetrics) {
        self.shutdown.cancel();
        let collect = async {
            let mut events = Vec::new();
            while let Some(batch) = self.batches.recv().await {
                events.extend(
                    batch
                        .events
                        .into_iter()
                        .map(|e| Value::Object(e.fields().into_owned())),
                );
                batch.ack.complete();
            }
            events
        };
        let events = tokio::time::timeout(Duration::from_secs(20), collect)
            .await
            .expect("the source stops");
        self.task.await.unwrap().unwrap();
        (events, self.metrics)
    }
}

fn messages(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_mixed_framing_truncation_and_a_partial_last_frame() {
    let source = Running::start(
        "t_tcp_mixed",
        "mode: tcp\naddress: 127.0.0.1:0\nmax_message_size: 64",
        8,
    )
    .await;
    let address = source.address;
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(address).unwrap();
        let long = format!("<13>1 - h app - - - {}", "x".repeat(100));
        let counted = "<14>1 - h app - - - counted";
        let stream = format!(
            "{} {counted}\n<14>Jun 15 11:59:00 h app: newline\n{} {long}\n{long}\n<14>1 - h app - - - cut off",
            counted.len(),
            long.len()
        );
        s.write_all(stream.as_bytes()).unwrap();
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (events, metrics) = source.stop().await;
    assert_eq!(messages(&events)[..2], ["counted", "newline"]);
    assert_eq!(events[2]["message"].as_str().unwrap().len(), 64 - 20);
    assert_eq!(events[2]["_meta"]["syslog"]["truncated"], true);
    assert_eq!(events[3]["message"].as_str().unwrap().len(), 64 - 20);
    assert_eq!(
        events[4]["message"], "cut off",
        "a partial frame at disconnect is kept"
    );
    assert_eq!(events.len(), 5);
    assert_eq!(metrics.errors("truncated").get(), 2);
    assert_eq!(
        (metrics.received_events.get(), metrics.sent_events.get()),
        (5, 5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_what_was_read_from_an_open_connection() {
    let source = Running::start("t_tcp_shutdown", "mode: tcp\naddress: 127.0.0.1:0", 8).await;
    let mut client = TcpStream::connect(source.address).unwrap();
    client
        .write_all(b"<13>1 - h a - - - one\n<13>1 - h a - - - two, no newline yet")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (events, _) = source.stop().await;
    assert_eq!(messages(&events), ["one", "two, no newline yet"]);
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pushes_back_instead_of_buffering() {
    // A pipeline that takes one batch and then nothing: the source must stop reading.
    let mut source = Running::start(
        "t_tcp_backpressure",
        "mode: tcp\naddress: 127.0.0.1:0\nreceive_buffer_bytes: 16KiB",
        1,
    )
    .await;
    let message = b"<13>1 - h a - - - a message of a few dozen bytes\n";
    let total = 100_000;
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (address, w) = (source.address, written.clone());
    let writer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(address).unwrap();
        socket2::SockRef::from(&s)
            .set_send_buffer_size(16 << 10)
            .unwrap();
        for _ in 0..total {
            s.write_all(message).unwrap();
            w.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    // Wait until the writer stalls.
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = written.load(std::sync::atomic::Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    assert!(
        last < total / 2,
        "the writer was stopped early ({last} of {total} written)"
    );
    // Drain the pipeline: everything written arrives, exactly once.
    let mut events = 0;
    while events < total {
        let batch = tokio::time::timeout(Duration::from_secs(20), source.batches.recv())
            .await
            .unwrap()
            .unwrap();
        events += batch.len();
        batch.ack.complete();
    }
    writer.join().unwrap();
    let (rest, metrics) = source.stop().await;
    assert_eq!(events + rest.len(), total);
    assert_eq!(metrics.received_events.get(), total as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_drops_and_counts_what_a_full_pipeline_cannot_take() {
    let source = Running::start(
        "t_udp_full",
        "mode: udp\naddress: 127.0.0.1:0\nreceive_buffer_bytes: 4MiB",
        1,
    )
    .await;
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..3000 {
        client
            .send_to(
                format!("<13>1 - h a - - - datagram {i}").as_bytes(),
                source.address,
            )
            .unwrap();
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (events, metrics) = source.stop().await;
    let dropped = metrics.discarded("queue_full", "").get();
    assert!(
        dropped > 0,
        "a one-batch pipeline that is never read must overflow"
    );
    assert_eq!(metrics.received_events.get(), events.len() as u64 + dropped);
    assert_eq!(metrics.sent_events.get(), events.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_origin_refuses_other_senders() {
    let yaml = "address: 127.0.0.1:0\npermit_origin: [10.0.0.0/8]";
    let source = Running::start("t_origin_tcp", &format!("mode: tcp\n{yaml}"), 8).await;
    let mut client = TcpStream::connect(source.address).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = client.write_all(b"<13>1 - h a - - - refused\n");
    let mut byte = [0u8; 1];
    assert!(
        matches!(client.read(&mut byte), Ok(0) | Err(_)),
        "the server closes the connection"
    );
    let (events, metrics) = source.stop().await;
    assert!(events.is_empty());
    assert_eq!(metrics.errors("origin_refused").get(), 1);

    let source = Running::start("t_origin_udp", &format!("mode: udp\n{yaml}"), 8).await;
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .send_to(b"<13>1 - h a - - - ignored", source.address)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while source.metrics.errors("origin_refused").get() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (events, metrics) = source.stop().await;
    assert!(events.is_empty());
    assert_eq!(metrics.errors("origin_refused").get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_flight_are_bounded_until_acknowledged() {
    let mut source = Running::start("t_in_flight", "mode: tcp\naddress: 127.0.0.1:0", 64).await;
    let total = 20_000;
    let address = source.address;
    let writer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(address).unwrap();
        let block: Vec<u8> = (0..total)
            .flat_map(|i| format!("<13>1 - h a - - - m{i}\n").into_bytes())
            .collect();
        s.write_all(&block).unwrap();
    });
    let mut held = Vec::new();
    while let Ok(Some(batch)) =
        tokio::time::timeout(Duration::from_millis(500), source.batches.recv()).await
    {
        held.push(batch);
    }
    assert_eq!(
        held.len(),
        pending::MAX_IN_FLIGHT_BATCHES,
        "no acknowledgement, no more batches"
    );
    let mut events: usize = held.iter().map(Batch::len).sum();
    held.into_iter().for_each(|b| b.ack.complete());
    while events < total {
        let batch = tokio::time::timeout(Duration::from_secs(20), source.batches.recv())
            .await
            .unwrap()
            .unwrap();
        events += batch.len();
        batch.ack.complete();
    }
    writer.join().unwrap();
    let (rest, metrics) = source.stop().await;
    assert_eq!(events + rest.len(), total);
    assert_eq!(metrics.errors("not_durable").get(), 0);
}
