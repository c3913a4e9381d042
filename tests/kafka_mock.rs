//! The kafka source against librdkafka's mock cluster (in-process, no broker to
//! install): replicas are whole sediment topologies (the real kafka source, the
//! hour_partition transform and the file archive sink) on their own runtimes,
//! records are produced with rdkafka. Group membership: two replicas share 4
//! partitions; members joining and leaving while consuming; the group leader
//! leaving in the middle of a rebalance; a zombie's late commit refused; the
//! next owner reading the commit's metadata and storing nothing twice. Each
//! case checks the archive: every record once, by position and by `_id`.

mod cloud;
mod common;
mod kafka;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use sediment_core::clock::SystemClock;
use sediment_core::component::Registry;
use sediment_core::topology::RunningTopology;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "logs";

/// Delivery reports: seq → (partition, offset).
#[derive(Clone, Default)]
struct Deliveries(Arc<Mutex<(Produced, Vec<String>)>>);

impl ClientContext for Deliveries {}
impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<u64>;
    fn delivery(&self, result: &DeliveryResult<'_>, seq: Box<u64>) {
        let mut d = self.0.lock().unwrap();
        match result {
            Ok(m) => {
                d.0.insert((m.partition(), m.offset()), *seq);
            }
            Err((e, _)) => d.1.push(e.to_string()),
        }
    }
}

/// Produces `seqs` with rdkafka: record `seq` is loghub line [`line_of`], in
/// partition `seq % 4`, timestamped `hour_of(seq)` + `seq % 3600` seconds.
fn produce_mock(
    bootstrap: &str,
    seqs: std::ops::Range<u64>,
    hour_of: impl Fn(u64) -> i64,
) -> Produced {
    let lines = loghub_all();
    let deliveries = Deliveries::default();
    let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create_with_context(deliveries.clone())
        .unwrap();
    for seq in seqs {
        let ts = (hour_of(seq) + (seq % 3600) as i64) * 1000;
        let value = line_of(seq, &lines).to_owned();
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "seq",
            value: Some(seq.to_string().as_bytes()),
        });
        let mut record = BaseRecord::with_opaque_to(TOPIC, Box::new(seq))
            .payload(&value)
            .partition((seq % 4) as i32)
            .timestamp(ts)
            .headers(headers);
        loop {
            match producer.send::<(), String>(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();
    drop(producer);
    let d = deliveries.0.lock().unwrap();
    assert!(
        d.1.is_empty(),
        "deliveries failed: {:?}",
        &d.1[..d.1.len().min(3)]
    );
    d.0.clone()
}

/// A mock cluster with the 4-partition topic.
fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let c = MockCluster::new(1).unwrap();
    c.create_topic(TOPIC, 4, 1).unwrap();
    c
}

/// One sediment topology on its own runtime and thread.
struct Replica {
    name: String,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(sediment_transforms::factories())
        .register(sediment_sinks::factories())
        .register(sediment_kafka::factories());
    r
}

/// Starts replica `name` (source id `kafka_{name}`) of group `g` archiving into `archive`.
fn replica(name: &str, bootstrap: &str, root: &Path, archive: &Path) -> Replica {
    let text = format!(
        "
data_dir: '{root}/{name}'
shutdown_timeout: 8s
sources:
  kafka_{name}:
    type: kafka
    bootstrap_servers: '{bootstrap}'
    topics: [{TOPIC}]
    group_id: g
    client_id: {name}
    decoding: text
    librdkafka_options: {{session.timeout.ms: '6000', heartbeat.interval.ms: '300'}}
transforms:
  hourly: {{type: hour_partition, inputs: [kafka_{name}], late_after: 10m}}
sinks:
  archive: {{type: file, inputs: [hourly], path: '{archive}', account_id: acme, late_flush_interval: 1s}}
",
        root = root.display(),
        archive = archive.display()
    );
    let config =
        sediment_core::config::from_str(&text, Path::new("mock.yaml"), &registry(), |_| None)
            .unwrap_or_else(|e| panic!("{e}"));
    let stop = CancellationToken::new();
    let token = stop.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let topology = RunningTopology::start(config, Arc::new(SystemClock)).await?;
            topology.run_until(token).await
        })
    });
    Replica {
        name: name.to_owned(),
        stop,
        thread: Some(thread),
    }
}

impl Replica {
    /// Graceful stop: commits what is stored and leaves the group.
    fn stop(mut self) {
        self.stop.cancel();
        let result = self.thread.take().unwrap().join().unwrap();
        assert!(result.is_ok(), "{} stopped with {result:?}", self.name);
    }

    /// Partitions whose offsets this replica committed.
    fn committed(&self) -> BTreeMap<i32, i64> {
        committed_metric(&format!("kafka_{}", self.name))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `sediment_kafka_committed_offset` of source `id`, per partition.
fn committed_metric(id: &str) -> BTreeMap<i32, i64> {
    let text = sediment_core::metrics::Metrics::global().render();
    let mut out = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with("sediment_kafka_committed_offset{"))
    {
        if !l.contains(&format!("component_id=\"{id}\"")) {
            continue;
        }
        let p = l
            .split("partition=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let v = l.rsplit(' ').next().unwrap();
        out.insert(p.parse().unwrap(), v.parse().unwrap());
    }
    out
}

/// The group's committed offsets and metadata, as a fresh client reads them.
fn group_commits(bootstrap: &str) -> BTreeMap<i32, (Offset, String)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "g")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition(TOPIC, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| (e.partition(), (e.offset(), e.metadata().to_owned())))
        .collect()
}

/// Waits until `f` holds.
fn wait_for(what: &str, timeout: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dirs() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let archive = root.path().join("archive");
    (root, archive)
}

/// Records spread over three past hours.
fn three_hours(seq: u64) -> i64 {
    hours_ago(4) + (seq % 3) as i64 * 3600
}

#[test]
fn two_replicas_share_four_partitions_and_archive_every_record_once() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    let (root, archive) = dirs();
    let produced = produce_mock(&bootstrap, 0..4000, three_hours);
    let a = replica("a", &bootstrap, root.path(), &archive);
    let b = replica("b", &bootstrap, root.path(), &archive);
    wait_archived(&archive, produced.len(), Duration::from_secs(60), || {
        String::new()
    });
    // Commits follow storage: each replica commits the partitions it owns, together all four.
    wait_for(
        "commits of all four partitions",
        Duration::from_secs(20),
        || {
            let (ca, cb) = (a.committed(), b.committed());
            ca.len() + cb.len() == 4
                && ca
                    .keys()
                    .chain(cb.keys())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
                    == 4
        },
    );
    let (ca, cb) = (a.committed(), b.committed());
    assert_eq!(
        (ca.len(), cb.len()),
        (2, 2),
        "two partitions each: {ca:?} {cb:?}"
    );
    a.stop();
    b.stop();
    let commits = group_commits(&bootstrap);
    for (p, (offset, _)) in &commits {
        let end = produced
            .keys()
            .filter(|k| k.0 == *p)
            .map(|k| k.1)
            .max()
            .unwrap()
            + 1;
        assert_eq!(
            *offset,
            Offset::Offset(end),
            "partition {p} committed to its end"
        );
    }
    assert_exactly_once(&common::read_archive(&archive), &produced, TOPIC);
}
