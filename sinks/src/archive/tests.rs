//! The archive writer with the real file store and a clock the tests move:
//! hours are written when due, late events are batched into `.N` parts, large
//! hours are split at `max_object_size`, and acknowledgements wait for fsync.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sediment_core::clock::ManualClock;
use sediment_core::component::BuildContext;
use sediment_core::metrics::ComponentMetrics;
use sediment_core::{Ack, Batch, Event, Partition};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::file_store::FileStore;
use super::naming::{KeyTemplate, DEFAULT_KEY_TEMPLATE};
use super::{ArchiveSettings, ArchiveSink};
use sediment_core::component::Sink;

const HOUR: i64 = 1_763_780_400; // 2025-11-22T03:00:00Z
const LATE_AFTER: i64 = 600;

struct Harness {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    input: Option<mpsc::Sender<Batch>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn settings(max_object_size: u64) -> ArchiveSettings {
    ArchiveSettings {
        template: KeyTemplate::new(DEFAULT_KEY_TEMPLATE, "t").unwrap(),
        compression_level: 6,
        max_object_size,
        late_flush_interval: Duration::from_secs(60),
    }
}

async fn start(id: &str, max_object_size: u64, now: i64) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now * 1000);
    let cx = BuildContext {
        id: id.into(),
        metrics: ComponentMetrics::new(id, "sink", "file"),
        data_dir: dir.path().join("data"),
        clock: clock.clone(),
        shutdown_timeout: Duration::from_secs(10),
        shutdown: Default::default(),
        progress: Default::default(),
    };
    let store = Arc::new(FileStore::new(dir.path().join("archive")));
    let sink = Box::new(ArchiveSink::new(&cx, settings(max_object_size), store).unwrap());
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(sink.run(rx));
    Harness {
        dir,
        clock,
        input: Some(tx),
        task,
    }
}

impl Harness {
    /// Sends events of `hour` and waits for their acknowledgement.
    async fn send(&self, hour: i64, messages: &[String]) -> bool {
        let now = self.clock.now();
        let events = messages
            .iter()
            .map(|m| {
                let mut e = Event::stamp(
                    json!({"message": m}).as_object().unwrap().clone(),
                    &[],
                    hour * 1000 + 1,
                    &json!({}),
                );
                let close_at = hour + 3600 + LATE_AFTER;
                e.partition = Some(Partition {
                    hour_start: hour,
                    close_at,
                    late: now > close_at,
                });
                e
            })
            .collect();
        let (ack, waiter) = Ack::new();
        self.input
            .as_ref()
            .unwrap()
            .send(Batch::new(events, ack))
            .await
            .unwrap();
        waiter.delivered().await
    }

    fn objects(&self) -> Vec<(String, Vec<String>)> {
        let root = self.dir.path().join("archive");
        let mut out = Vec::new();
        for (i, part) in (0..).map(|p| {
            (
                p,
                KeyTemplate::new(DEFAULT_KEY_TEMPLATE, "t")
                    .unwrap()
                    .render(HOUR, p),
            )
        }) {
            let path = root.join(&part);
            if !path.exists() {
                if i > 20 {
                    break;
                }
                continue;
            }
            out.push((part, read_lines(&path)));
        }
        out
    }

    async fn wait_for_objects(&self, n: usize) -> Vec<(String, Vec<String>)> {
        for _ in 0..100 {
            let objects = self.objects();
            if objects.len() >= n {
                return objects;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "expected {n} objects, found {:?}",
            self.objects().iter().map(|o| &o.0).collect::<Vec<_>>()
        );
    }

    async fn close(mut self) -> Self {
        self.input = None;
        (&mut self.task).await.unwrap().unwrap();
        self
    }
}

trait Now {
    fn now(&self) -> i64;
}
impl Now for ManualClock {
    fn now(&self) -> i64 {
        sediment_core::clock::Clock::now_ms(self) / 1000
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["message"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn messages(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test]
async fn an_hour_is_written_when_due_and_late_events_are_batched_into_the_next_part() {
    let h = start("due", 1 << 30, HOUR + 1800).await;
    assert!(
        h.send(HOUR, &messages("a", 10)).await,
        "acknowledged once fsync'd"
    );
    assert!(h.send(HOUR, &messages("b", 10)).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        h.objects().is_empty(),
        "nothing is written before hour end + late_after"
    );

    h.clock.set((HOUR + 3600 + LATE_AFTER) * 1000);
    let objects = h.wait_for_objects(1).await;
    assert_eq!(
        objects[0].0,
        "year=2025/month=11/day=22/t.2025-11-22.0300.json.gz"
    );
    assert_eq!(
        objects[0].1,
        [messages("a", 10), messages("b", 10)].concat()
    );

    // Late arrivals for the written hour: batched, written once late_flush_interval passed.
    h.clock.advance(5_000);
    assert!(h.send(HOUR, &messages("late1", 3)).await);
    h.clock.advance(30_000);
    assert!(h.send(HOUR, &messages("late2", 3)).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        h.objects().len(),
        1,
        "late events wait for late_flush_interval"
    );
    h.clock.advance(30_000);
    let objects = h.wait_for_objects(2).await;
    assert_eq!(
        objects[1].0,
        "year=2025/month=11/day=22/t.2025-11-22.0300.1.json.gz"
    );
    assert_eq!(
        objects[1].1,
        [messages("late1", 3), messages("late2", 3)].concat(),
        "one object for both late batches"
    );
    h.close().await;
}

#[tokio::test]
async fn a_large_hour_continues_in_numbered_parts() {
    let h = start("parts", 64 * 1024, HOUR + 60).await;
    // Hard-to-compress lines: hex of a xorshift chain, ~1 KiB each, ~20 KiB compressed per batch.
    let mut x = 0x9e3779b97f4a7c15u64;
    let mut sent = Vec::new();
    for batch in 0..12 {
        let lines: Vec<String> = (0..40)
            .map(|i| {
                let s: String = (0..64)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        format!("{:016x}", x)
                    })
                    .collect();
                format!("{batch}-{i}-{s}")
            })
            .collect();
        assert!(h.send(HOUR, &lines).await);
        sent.extend(lines);
    }
    let h = h.close().await;
    let objects = h.objects();
    assert!(
        objects.len() >= 3,
        "{:?}",
        objects.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    let archived: Vec<String> = objects.iter().flat_map(|o| o.1.clone()).collect();
    assert_eq!(archived, sent, "every line once, in order across parts");
    for (key, _) in &objects[..objects.len() - 1] {
        let size = std::fs::metadata(h.dir.path().join("archive").join(key))
            .unwrap()
            .len();
        assert!(size >= 64 * 1024, "{key} was cut before max_object_size");
        assert!(
            size < 64 * 1024 + 48 * 1024,
            "{key} overshot max_object_size by more than one batch"
        );
    }
    assert!(
        !h.dir
            .path()
            .join("data/parts/staging")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "staging emptied at shutdown"
    );
}
