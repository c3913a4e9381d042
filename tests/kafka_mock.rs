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

/// The sink id of replica `name` (`{test}_{replica}`): one per test, shared by its
/// replicas (commit metadata is per sink), apart from other tests' in the
/// process-wide metrics.
fn sink_of(name: &str) -> String {
    format!("archive_{}", name.split('_').next().unwrap())
}

/// Starts replica `name` (source id `kafka_{name}`) of group `g` archiving into `archive`.
fn replica(name: &str, bootstrap: &str, root: &Path, archive: &Path) -> Replica {
    replica_with(
        name,
        bootstrap,
        root,
        archive,
        "",
        ", late_flush_interval: 1s",
    )
}

/// [`replica`] with more source options (`source`: indented YAML lines) and
/// sink options (`sink`: `, key: value` pairs).
fn replica_with(
    name: &str,
    bootstrap: &str,
    root: &Path,
    archive: &Path,
    source: &str,
    sink: &str,
) -> Replica {
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
{source}transforms:
  hourly: {{type: hour_partition, inputs: [kafka_{name}], late_after: 10m}}
sinks:
  {sink_id}: {{type: file, inputs: [hourly], path: '{archive}', account_id: acme{sink}}}
",
        sink_id = sink_of(name),
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

/// Whether `replicas` together report every partition committed to its end.
fn at_ends(replicas: &[&Replica], produced: &Produced) -> bool {
    let committed: BTreeMap<i32, i64> = replicas.iter().flat_map(|r| r.committed()).collect();
    (0..4).all(|p| {
        let end = produced
            .keys()
            .filter(|k| k.0 == p)
            .map(|k| k.1)
            .max()
            .unwrap()
            + 1;
        committed.get(&p) == Some(&end)
    })
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

/// Records spread over three past hours, fixed when first asked for so that a
/// test crossing an hour boundary keeps its records in the same three.
fn three_hours(seq: u64) -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| hours_ago(4)) + (seq % 3) as i64 * 3600
}

#[test]
fn two_replicas_share_four_partitions_and_archive_every_record_once() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    let (root, archive) = dirs();
    let produced = produce_mock(&bootstrap, 0..4000, three_hours);
    let a = replica("share_a", &bootstrap, root.path(), &archive);
    let b = replica("share_b", &bootstrap, root.path(), &archive);
    wait_archived(&archive, produced.len(), Duration::from_secs(60), || {
        String::new()
    });
    // Each replica owns (and so reports the commit of) two partitions once b's join is through.
    wait_for("two partitions each", Duration::from_secs(30), || {
        let (ca, cb) = (a.committed(), b.committed());
        ca.len() == 2 && cb.len() == 2 && ca.keys().all(|p| !cb.contains_key(p))
    });
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
    assert_exactly_once(&read_objects(&archive), &produced, TOPIC);
}

/// With the default `late_flush_interval` (5 minutes) the sink would keep a
/// stream's records staged that long; a source at its `max_unstored_records`
/// asks for them to be stored at once, so it never waits for the interval,
/// and its objects are cut by that limit.
#[test]
fn a_source_at_its_limit_of_unstored_records_gets_them_stored_at_once() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    let (root, archive) = dirs();
    let produced = produce_mock(&bootstrap, 0..20_000, three_hours);
    let started = Instant::now();
    let a = replica_with(
        "unstored_a",
        &bootstrap,
        root.path(),
        &archive,
        "    max_unstored_records: 2000\n",
        ", late_flush_interval: 5m",
    );
    // All but the last records below the limit are stored without waiting
    // for the interval; those go out at the interval, or at shutdown.
    let prompt = produced.len() - 2000 - 500;
    wait_archived(&archive, prompt, Duration::from_secs(120), || {
        format!("{:?} committed", a.committed())
    });
    eprintln!(
        "{prompt} of 20,000 records archived in {:.1} s with late_flush_interval 5m",
        started.elapsed().as_secs_f64()
    );
    // Then every record is read (a source paused at its limit fetches no more;
    // records it never read would stay uncommitted, for the next owner), and
    // the last ones go out at shutdown.
    let received =
        sediment_core::metrics::ComponentMetrics::new("kafka_unstored_a", "source", "kafka")
            .received_events;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.get() < produced.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "{} of {} records read",
            received.get(),
            produced.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    a.stop();
    let objects = read_objects(&archive);
    // 4 partitions × 3 hours: more objects than that were cut by the limit.
    assert!(objects.len() > 12, "{} objects", objects.len());
    assert_exactly_once(&objects, &produced, TOPIC);
}

/// A counter of `sediment_kafka_rebalances_total` of replica `name`.
fn rebalances(name: &str, kind: &str) -> u64 {
    sediment_core::metrics::ComponentMetrics::new(&format!("kafka_{name}"), "source", "kafka")
        .kafka_rebalances(kind)
        .get()
}

/// Produces `seqs` in chunks of 500 from a thread, 150 ms apart.
fn produce_slowly(
    bootstrap: &str,
    seqs: std::ops::Range<u64>,
) -> std::thread::JoinHandle<Produced> {
    let bootstrap = bootstrap.to_owned();
    std::thread::spawn(move || {
        let mut all = Produced::new();
        let mut at = seqs.start;
        while at < seqs.end {
            let end = (at + 500).min(seqs.end);
            all.extend(produce_mock(&bootstrap, at..end, three_hours));
            at = end;
            std::thread::sleep(Duration::from_millis(150));
        }
        all
    })
}

#[test]
fn members_joining_and_leaving_while_consuming_lose_and_duplicate_nothing() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    let (root, archive) = dirs();
    let mut produced = produce_mock(&bootstrap, 0..2000, three_hours);
    let a = replica("join_a", &bootstrap, root.path(), &archive);
    wait_archived(
        &archive,
        produced.len(),
        Duration::from_secs(60),
        String::new,
    );
    let producing = produce_slowly(&bootstrap, 2000..12_000);
    std::thread::sleep(Duration::from_millis(500));
    let b = replica("join_b", &bootstrap, root.path(), &archive);
    wait_for("b's assignment", Duration::from_secs(30), || {
        rebalances("join_b", "assign") > 0
    });
    let c = replica("join_c", &bootstrap, root.path(), &archive);
    wait_for("c's assignment", Duration::from_secs(30), || {
        rebalances("join_c", "assign") > 0
    });
    // a leaves while records keep coming: its partitions move to b and c.
    a.stop();
    produced.extend(producing.join().unwrap());
    wait_archived(
        &archive,
        produced.len(),
        Duration::from_secs(60),
        String::new,
    );
    wait_for(
        "b and c committing all four partitions to their ends",
        Duration::from_secs(30),
        || at_ends(&[&b, &c], &produced),
    );
    b.stop();
    c.stop();
    for (p, (offset, _)) in group_commits(&bootstrap) {
        let end = produced
            .keys()
            .filter(|k| k.0 == p)
            .map(|k| k.1)
            .max()
            .unwrap()
            + 1;
        assert_eq!(
            offset,
            Offset::Offset(end),
            "partition {p} committed to its end"
        );
    }
    assert!(
        rebalances("join_a", "revoke") >= 2,
        "a gave partitions to b, then c, then left"
    );
    assert_exactly_once(&read_objects(&archive), &produced, TOPIC);
}

#[test]
fn the_group_leader_leaving_in_the_middle_of_a_rebalance() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    let (root, archive) = dirs();
    let mut produced = produce_mock(&bootstrap, 0..2000, three_hours);
    // a joins first, so it leads the group (it computes the assignments).
    let a = replica("leader_a", &bootstrap, root.path(), &archive);
    wait_for("a's assignment", Duration::from_secs(30), || {
        rebalances("leader_a", "assign") > 0
    });
    let b = replica("leader_b", &bootstrap, root.path(), &archive);
    wait_for("b's assignment", Duration::from_secs(30), || {
        rebalances("leader_b", "assign") > 0
    });
    wait_archived(
        &archive,
        produced.len(),
        Duration::from_secs(60),
        String::new,
    );
    let producing = produce_slowly(&bootstrap, 2000..8000);
    // c joins: a cooperative rebalance in two rounds. a leaves as soon as the
    // first round revoked something from it, before c is assigned anything.
    let revoked = rebalances("leader_a", "revoke") + rebalances("leader_b", "revoke");
    let c = replica("leader_c", &bootstrap, root.path(), &archive);
    wait_for("the first round's revoke", Duration::from_secs(30), || {
        rebalances("leader_a", "revoke") + rebalances("leader_b", "revoke") > revoked
    });
    let c_assigned_before_a_left = rebalances("leader_c", "assign");
    a.stop();
    produced.extend(producing.join().unwrap());
    wait_archived(
        &archive,
        produced.len(),
        Duration::from_secs(60),
        String::new,
    );
    wait_for(
        "b and c committing all four partitions to their ends",
        Duration::from_secs(30),
        || at_ends(&[&b, &c], &produced),
    );
    b.stop();
    c.stop();
    eprintln!("c had {c_assigned_before_a_left} partition(s) when the leader left");
    for (p, (offset, _)) in group_commits(&bootstrap) {
        let end = produced
            .keys()
            .filter(|k| k.0 == p)
            .map(|k| k.1)
            .max()
            .unwrap()
            + 1;
        assert_eq!(
            offset,
            Offset::Offset(end),
            "partition {p} committed to its end"
        );
    }
    assert_exactly_once(&read_objects(&archive), &produced, TOPIC);
}

#[test]
fn a_zombies_late_commit_is_refused_and_moves_no_offset() {
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    let (root, archive) = dirs();
    let produced = produce_mock(&bootstrap, 0..2000, three_hours);
    // The zombie: a plain member of the group that owns everything, reads, then
    // stops polling (a paused process) past its max poll interval.
    let zombie: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "g")
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("max.poll.interval.ms", "6000")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    zombie.subscribe(&[TOPIC]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut read = 0;
    while read < 100 {
        assert!(Instant::now() < deadline, "the zombie never read");
        match zombie.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => read += 1,
            Some(Err(e)) => eprintln!("zombie: {e}"),
            None => {}
        }
    }
    assert_eq!(zombie.assignment().unwrap().count(), 4);
    let s = replica("zombie_s", &bootstrap, root.path(), &archive);
    wait_archived(
        &archive,
        produced.len(),
        Duration::from_secs(60),
        String::new,
    );
    wait_for(
        "s committing all four partitions to their ends",
        Duration::from_secs(30),
        || s.committed().values().sum::<i64>() == produced.len() as i64,
    );
    // The zombie wakes and commits what it read long ago.
    let mut late = TopicPartitionList::new();
    for p in 0..4 {
        late.add_partition_offset(TOPIC, p, Offset::Offset(1))
            .unwrap();
    }
    let refused = zombie
        .commit(&late, rdkafka::consumer::CommitMode::Sync)
        .expect_err("a zombie's commit is refused");
    assert!(
        sediment_kafka::context::ownership_lost(&refused),
        "refused as ownership lost: {refused}"
    );
    for (p, (offset, _)) in group_commits(&bootstrap) {
        let end = produced
            .keys()
            .filter(|k| k.0 == p)
            .map(|k| k.1)
            .max()
            .unwrap()
            + 1;
        assert_eq!(
            offset,
            Offset::Offset(end),
            "partition {p} keeps s's commit"
        );
    }
    s.stop();
    drop(zombie);
    assert_exactly_once(&read_objects(&archive), &produced, TOPIC);
}

#[test]
fn the_next_owner_reads_the_commit_metadata_and_stores_nothing_twice() {
    use chrono::{Datelike, TimeZone, Utc};
    let mock = cluster();
    let bootstrap = mock.bootstrap_servers();
    let (root, archive) = dirs();
    // Two hours on either side of a midnight, so they live in different folders.
    let midnight = (hours_ago(0) / 86_400 - 2) * 86_400;
    let (before, after) = (midnight - 3600, midnight);
    // Per partition: 500 records of the hour before, then 500 alternating in
    // groups (offset 500 is `before`, 501 `after`, …).
    let hour_of = |seq: u64| {
        if seq < 2000 || (seq / 4) % 2 == 0 {
            before
        } else {
            after
        }
    };
    let produced = produce_mock(&bootstrap, 0..4000, hour_of);
    let to_before = produced.values().filter(|s| hour_of(**s) == before).count();
    // The day folder of `after` cannot be created: its objects wait (retried),
    // so commits stop at the first batch holding one of its records, while the
    // hour before is stored further.
    let day = Utc.timestamp_opt(after, 0).unwrap();
    let folder = archive.join(format!(
        "year={}/month={:02}/day={:02}",
        day.year(),
        day.month(),
        day.day()
    ));
    std::fs::create_dir_all(folder.parent().unwrap()).unwrap();
    std::fs::write(&folder, b"in the way").unwrap();
    let a = replica("meta_a", &bootstrap, root.path(), &archive);
    wait_archived(&archive, to_before, Duration::from_secs(60), String::new);
    std::thread::sleep(Duration::from_millis(2500)); // a commit or two
    a.stop();
    let commits = group_commits(&bootstrap);
    for (p, (offset, metadata)) in &commits {
        let Offset::Offset(o) = offset else {
            panic!("partition {p} committed nothing: {offset:?}")
        };
        assert!(
            *o <= 501,
            "partition {p}: the commit waits for the hour after: {o}"
        );
        let stored = sediment_core::stream::decode(metadata);
        let beyond = stored["archive_meta"][&before];
        assert!(
            beyond >= *o && beyond > 501,
            "partition {p}: {metadata} tells the hour before is stored beyond the commit {o}"
        );
    }
    std::fs::remove_file(&folder).unwrap();
    let skipped = sediment_core::metrics::ComponentMetrics::new("archive_meta", "sink", "file")
        .discarded("already_stored", "");
    let skipped_before = skipped.get();
    let b = replica("meta_b", &bootstrap, root.path(), &archive);
    wait_archived(
        &archive,
        produced.len(),
        Duration::from_secs(60),
        String::new,
    );
    wait_for(
        "b committing all four partitions",
        Duration::from_secs(20),
        || b.committed().values().sum::<i64>() == produced.len() as i64,
    );
    b.stop();
    // b read from the commits again and left out, before staging, what the
    // metadata said is stored (the rest of what a stored is cut at upload).
    let by_metadata: u64 = commits
        .iter()
        .map(|(p, (o, metadata))| {
            let Offset::Offset(o) = o else { unreachable!() };
            let beyond = sediment_core::stream::decode(metadata)["archive_meta"][&before];
            produced
                .iter()
                .filter(|((pp, off), s)| {
                    pp == p && off >= o && *off <= beyond && hour_of(**s) == before
                })
                .count() as u64
        })
        .sum();
    assert!(by_metadata > 0);
    // (At least those: once b has listed an hour's objects at its first upload,
    // what it reads later of that hour is left out too.)
    let skipped = skipped.get() - skipped_before;
    assert!(
        skipped >= by_metadata,
        "b skipped {skipped} records, the metadata says {by_metadata} are stored"
    );
    assert_exactly_once(&read_objects(&archive), &produced, TOPIC);
}
