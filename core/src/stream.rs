//! Replayable streams: events that carry their position in a source that can
//! replay them (a Kafka partition), and what archive sinks have stored of each.
//!
//! An event of such a source carries a [`Position`]: its stream (one Kafka
//! partition), its offset, and the generation of this process's ownership of
//! the stream (bumped at every assignment). Archive sinks keep those events
//! apart per stream, name their objects after the first offset they hold,
//! acknowledge them only once they are in storage, and record here, per
//! stream and hour, the last offset stored ([`Progress::stored`]). The source
//! commits a stream's offset only as far as every sink has stored, and puts
//! the per-hour table beyond that offset into the commit's metadata, so that
//! the next owner of the stream — on another machine, without this disk —
//! skips what is already stored ([`Progress::seed`]) instead of storing it
//! twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// One replayable stream: a Kafka topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// `{topic}-{partition}`: what object names carry.
    pub name: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The key of `_meta` whose object holds the record's `offset` in an
    /// archive line (`kafka`: `_meta.kafka.offset`).
    pub meta_key: &'static str,
}

impl StreamId {
    /// The stream of Kafka `topic`'s `partition`.
    pub fn kafka(topic: &str, partition: i32) -> StreamId {
        StreamId {
            name: format!("{topic}-{partition}"),
            topic: topic.to_owned(),
            partition,
            meta_key: "kafka",
        }
    }

    /// The offset an archive line of this stream carries.
    pub fn offset_of(&self, line: &serde_json::Value) -> Option<i64> {
        line.get(crate::event::META_FIELD)?
            .get(self.meta_key)?
            .get("offset")?
            .as_i64()
    }
}

/// Where an event sits in its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The stream.
    pub stream: Arc<StreamId>,
    /// The record's offset.
    pub offset: i64,
    /// The generation of this process's ownership of the stream when the
    /// record was read; events of an older generation are not stored.
    pub generation: u64,
}

/// What every archive sink has stored, per stream and hour: the highest offset
/// of that hour in storage. Records of an hour at or below it are not stored again.
pub type Stored = BTreeMap<String, BTreeMap<i64, i64>>;

#[derive(Debug, Default)]
struct StreamState {
    generation: u64,
    owned: bool,
    /// Per sink, per hour (start, seconds): the highest offset stored.
    stored: Stored,
}

/// The table of streams of one topology, shared by its sources and sinks
/// through [`crate::component::BuildContext::progress`].
#[derive(Debug, Default)]
pub struct Progress {
    streams: Mutex<HashMap<String, StreamState>>,
    /// How many times a source asked for its records to be stored now.
    stored_wanted: AtomicU64,
}

impl Progress {
    fn with<T>(&self, stream: &str, f: impl FnOnce(&mut StreamState) -> T) -> T {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        f(streams.entry(stream.to_owned()).or_default())
    }

    /// This process now owns `stream`, whose last commit said `stored`;
    /// returns the generation its events carry.
    pub fn seed(&self, stream: &str, stored: Stored) -> u64 {
        self.with(stream, |s| {
            s.generation += 1;
            s.owned = true;
            for (sink, hours) in stored {
                let mine = s.stored.entry(sink).or_default();
                for (hour, offset) in hours {
                    let at = mine.entry(hour).or_insert(offset);
                    *at = (*at).max(offset);
                }
            }
            s.generation
        })
    }

    /// A source waits for storage (its limit of records sent and not yet
    /// stored is reached): archive sinks store what they hold of streams at
    /// their next check, instead of at their files' deadlines.
    pub fn want_stored(&self) {
        self.stored_wanted.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times a source asked to store now: a sink that sees it change
    /// uploads its stream files.
    pub fn stored_wanted(&self) -> u64 {
        self.stored_wanted.load(Ordering::Relaxed)
    }

    /// This process no longer owns `stream`: nothing of it is stored or committed from now on.
    pub fn revoke(&self, stream: &str) {
        self.with(stream, |s| {
            s.owned = false;
            s.generation += 1;
        });
    }

    /// Whether events of `generation` may still be stored.
    pub fn current(&self, stream: &str, generation: u64) -> bool {
        self.with(stream, |s| s.owned && s.generation == generation)
    }

    /// The highest offset of `hour` that `sink` has stored of `stream`.
    pub fn stored(&self, sink: &str, stream: &str, hour: i64) -> Option<i64> {
        self.with(stream, |s| {
            s.stored.get(sink).and_then(|h| h.get(&hour)).copied()
        })
    }

    /// `sink` stored `stream`'s records of `hour` up to `offset`.
    pub fn record(&self, sink: &str, stream: &str, hour: i64, offset: i64) {
        self.with(stream, |s| {
            let at = s
                .stored
                .entry(sink.to_owned())
                .or_default()
                .entry(hour)
                .or_insert(offset);
            *at = (*at).max(offset);
        });
    }

    /// What to tell the next owner when committing `stream` at `offset` (records
    /// below it are stored): the per-hour offsets at or above it, as a commit's
    /// metadata text; entries below `offset` are forgotten.
    pub fn commit_metadata(&self, stream: &str, offset: i64) -> String {
        self.with(stream, |s| {
            for hours in s.stored.values_mut() {
                hours.retain(|_, o| *o >= offset);
            }
            s.stored.retain(|_, hours| !hours.is_empty());
            encode(&s.stored)
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Metadata {
    /// Format version.
    v: u32,
    /// Per sink: `[[hour, offset], …]`.
    stored: BTreeMap<String, Vec<(i64, i64)>>,
}

/// The commit metadata text for `stored`.
pub fn encode(stored: &Stored) -> String {
    let m = Metadata {
        v: 1,
        stored: stored
            .iter()
            .map(|(sink, hours)| (sink.clone(), hours.iter().map(|(h, o)| (*h, *o)).collect()))
            .collect(),
    };
    serde_json::to_string(&m).expect("the metadata serialises")
}

/// Reads a commit's metadata; anything else (empty, another tool's) is no knowledge.
pub fn decode(text: &str) -> Stored {
    match serde_json::from_str::<Metadata>(text) {
        Ok(m) if m.v == 1 => m
            .stored
            .into_iter()
            .map(|(sink, hours)| (sink, hours.into_iter().collect()))
            .collect(),
        _ => Stored::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_owner_learns_what_is_stored_beyond_the_commit() {
        let p = Progress::default();
        let g = p.seed("t-0", Stored::new());
        assert!(p.current("t-0", g));
        p.record("archive", "t-0", 3600, 40);
        p.record("archive", "t-0", 7200, 90);
        p.record("archive", "t-0", 3600, 20);
        let meta = p.commit_metadata("t-0", 50);
        // Hour 3600 is stored up to 40 < 50: below the commit, not needed.
        assert_eq!(
            decode(&meta),
            Stored::from([("archive".into(), BTreeMap::from([(7200, 90)]))])
        );

        let next = Progress::default();
        let g2 = next.seed("t-0", decode(&meta));
        assert_eq!(next.stored("archive", "t-0", 7200), Some(90));
        assert_eq!(next.stored("archive", "t-0", 3600), None);
        next.revoke("t-0");
        assert!(!next.current("t-0", g2), "a revoked stream stores nothing");
        assert!(decode("not ours").is_empty());
    }
}
