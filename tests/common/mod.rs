//! Shared end-to-end helpers: run the real `sediment` binary on free ports with
//! temporary folders, talk to it over real HTTP, and read what lands in the archive.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod pki;
pub mod raw_http;
pub mod receiver;

/// The binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sediment"))
}

/// `../shared/data/loghub` from the repository root.
pub fn loghub() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/loghub")
}

/// The first `n` lines of a loghub file.
pub fn loghub_lines(system: &str, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(loghub().join(format!("{system}_2k.log")))
        .expect("loghub sample present");
    text.lines().take(n).map(str::to_owned).collect()
}

/// The ten loghub systems.
pub const SYSTEMS: &[&str] = &[
    "Android",
    "Apache",
    "HDFS",
    "Hadoop",
    "HealthApp",
    "Linux",
    "OpenSSH",
    "OpenStack",
    "Spark",
    "Zookeeper",
];

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A sediment process with its own folders.
pub struct Sediment {
    pub child: Child,
    pub root: PathBuf,
    pub http_port: u16,
    pub api_port: u16,
    pub config: PathBuf,
}

/// What a test puts in the config around the fixed parts.
pub struct Setup {
    pub root: PathBuf,
    /// YAML of `sources`, `transforms` and `sinks`; `{HTTP}` and `{ROOT}` are replaced.
    pub topology: String,
    pub extra_env: Vec<(String, String)>,
    pub stdout: Stdio,
    /// Fixed ports (to restart on the same ones); free ports when `None`.
    pub ports: Option<(u16, u16)>,
    /// `shutdown_timeout` of the config.
    pub shutdown_timeout: &'static str,
    /// Run under this `RLIMIT_NOFILE` (soft and hard), through `prlimit`.
    pub fd_limit: Option<u64>,
}

/// The usual topology: http → hour_partition → file.
pub fn default_topology() -> String {
    "
sources:
  http_in: {type: http, address: '127.0.0.1:{HTTP}'}
transforms:
  hourly: {type: hour_partition, inputs: [http_in], late_after: 10m}
sinks:
  archive: {type: file, inputs: [hourly], path: '{ROOT}/archive', account_id: acme}
"
    .to_owned()
}

impl Setup {
    pub fn new(root: &Path) -> Setup {
        Setup {
            root: root.to_owned(),
            topology: default_topology(),
            extra_env: Vec::new(),
            stdout: Stdio::null(),
            ports: None,
            shutdown_timeout: "30s",
            fd_limit: None,
        }
    }

    /// Runs sediment with at most `n` open file descriptors.
    pub fn fd_limit(mut self, n: u64) -> Setup {
        self.fd_limit = Some(n);
        self
    }

    /// Sets `shutdown_timeout`.
    pub fn shutdown_timeout(mut self, timeout: &'static str) -> Setup {
        self.shutdown_timeout = timeout;
        self
    }

    /// Listens on these HTTP and API ports instead of free ones.
    pub fn ports(mut self, http: u16, api: u16) -> Setup {
        self.ports = Some((http, api));
        self
    }

    pub fn topology(mut self, yaml: &str) -> Setup {
        self.topology = yaml.to_owned();
        self
    }

    pub fn stdout(mut self, s: Stdio) -> Setup {
        self.stdout = s;
        self
    }

    /// Writes the config and starts sediment; waits until `/health` is 200.
    pub fn start(self) -> Sediment {
        let mut s = self.spawn();
        s.wait_healthy();
        s
    }

    /// Writes the config and starts sediment, without waiting for it.
    pub fn spawn(self) -> Sediment {
        let (http_port, api_port) = self.ports.unwrap_or_else(|| (free_port(), free_port()));
        let config = self.root.join("pipeline.yaml");
        let topology = self
            .topology
            .replace("{HTTP}", &http_port.to_string())
            .replace("{ROOT}", &self.root.display().to_string());
        let text = format!(
            "data_dir: '{}/data'\nshutdown_timeout: {}\napi: {{address: '127.0.0.1:{api_port}'}}\n{topology}",
            self.root.display(),
            self.shutdown_timeout
        );
        std::fs::write(&config, text).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("sediment.log"))
            .unwrap();
        let mut command = match self.fd_limit {
            // prlimit sets the limit and then execs sediment: same process id.
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}")).arg("--").arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = command
            .args(["run", "--config"])
            .arg(&config)
            .envs(self.extra_env)
            .env("RUST_LOG", "info")
            .stdout(self.stdout)
            .stderr(log)
            .spawn()
            .expect("sediment starts");
        Sediment {
            child,
            root: self.root,
            http_port,
            api_port,
            config,
        }
    }
}

impl Sediment {
    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sediment exited early with {status}:\n{}", self.log());
            }
            if get(&format!("http://127.0.0.1:{}/health", self.api_port)).map(|(s, _)| s)
                == Some(200)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sediment did not become healthy:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("sediment.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub fn metrics(&self) -> String {
        get(&format!("http://127.0.0.1:{}/metrics", self.api_port))
            .expect("metrics answer")
            .1
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "sediment exited with {status}:\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sediment did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Peak resident memory so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Sediment {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// GET → (status, body), or None when the connection failed.
pub fn get(url: &str) -> Option<(u16, String)> {
    let mut r = agent().get(url).call().ok()?;
    Some((
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    ))
}

/// POST `body` with headers → (status, body, headers), or Err for a connection failure.
pub fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String, HashMap<String, String>), String> {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.send(body).map_err(|e| e.to_string())?;
    let h = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    Ok((
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
        h,
    ))
}

/// POST NDJSON; returns the status.
pub fn post_ndjson(url: &str, events: &[Value]) -> Result<u16, String> {
    let mut body = Vec::new();
    for e in events {
        serde_json::to_writer(&mut body, e).unwrap();
        body.push(b'\n');
    }
    post(url, &[("content-type", "application/x-ndjson")], &body).map(|r| r.0)
}

/// Every archive object below `dir`: key → events, read with a standard gzip decoder.
pub fn read_archive(dir: &Path) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let key = p.strip_prefix(dir).unwrap().display().to_string();
                let mut text = String::new();
                flate2::read::MultiGzDecoder::new(std::fs::File::open(&p).unwrap())
                    .read_to_string(&mut text)
                    .unwrap();
                let events = text
                    .lines()
                    .map(|l| serde_json::from_str(l).expect("every line is JSON"))
                    .collect();
                out.push((key, events));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The value of one metric sample, by name and exact label set (the exposition sorts labels by name).
pub fn metric(metrics: &str, name: &str, labels: &str) -> Option<u64> {
    let prefix = format!("{name}{{{labels}}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Compliance: a component reports the received and sent event counts it handled.
pub fn assert_component_metrics(
    metrics: &str,
    id: &str,
    kind: &str,
    type_name: &str,
    received: u64,
    sent: u64,
) {
    let labels =
        format!("component_id=\"{id}\",component_kind=\"{kind}\",component_type=\"{type_name}\"");
    for (name, expected) in [
        ("sediment_component_received_events_total", received),
        ("sediment_component_sent_events_total", sent),
    ] {
        assert_eq!(
            metric(metrics, name, &labels),
            Some(expected),
            "{name}{{{labels}}}"
        );
    }
}
