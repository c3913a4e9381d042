//! `Idempotency-Key`: a request sent again after its answer was lost is taken
//! only once.
//!
//! sediment's own HTTP senders set the header — the `http` sink (one key per
//! request, the same on every retry) and `sediment restore --output URL` (a key
//! derived from where the request starts in the restore, the same when a
//! resumed restore sends it again). A `200` records the key with the number of
//! events accepted; a later request with the same key is answered that `200`
//! again, with `"duplicate": true`, and nothing is staged. A request with a key
//! still being processed waits for it (up to [`WAIT`]) and takes its outcome.
//! Failed requests record nothing, so their retries are processed as usual.
//!
//! Keys are remembered for [`TTL`], at most [`MAX_KEYS`] of them (the oldest
//! go first), and appended to `data_dir/<source>/idempotency.log` as they are
//! recorded, so a restart (even `kill -9`: the append reaches the page cache
//! before the `200` is sent) still knows them; the log is compacted at start.
//! Only a machine crash between the staging of a request and its key's append
//! can let a duplicate through.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a key is remembered.
pub const TTL: Duration = Duration::from_secs(24 * 3600);
/// Most keys remembered.
pub const MAX_KEYS: usize = 100_000;
/// Longest a key accepted (bytes of visible ASCII).
pub const MAX_KEY_LEN: usize = 200;
/// How long a request waits for another one with the same key.
pub const WAIT: Duration = Duration::from_secs(30);

/// The keys of one source.
#[derive(Debug)]
pub struct Keys {
    state: Mutex<State>,
    log: Option<Mutex<File>>,
    path: PathBuf,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Done keys, oldest first, with when they were recorded (seconds).
    order: VecDeque<(String, u64)>,
}

#[derive(Debug)]
enum Entry {
    InProgress(Arc<Notify>),
    Done(u64),
}

/// What a request with a key should do.
pub enum Begin<'a> {
    /// Process it; commit the guard on success.
    New(Guard<'a>),
    /// It was taken before: answer with this many events accepted.
    Duplicate(u64),
    /// Another request with the key is still being processed after [`WAIT`].
    Busy,
}

/// Held while a keyed request is processed; dropping it uncommitted forgets the key.
pub struct Guard<'a> {
    keys: &'a Keys,
    key: String,
    notify: Arc<Notify>,
    committed: bool,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A key as a client may send it: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
pub fn valid(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

impl Keys {
    /// The keys kept in `dir` (created), loaded from its log; a log that cannot be
    /// written leaves the keys in memory only, with a warning.
    pub fn open(dir: &Path, source: &str) -> Keys {
        let path = dir.join("idempotency.log");
        let mut state = State::default();
        let cutoff = now_secs().saturating_sub(TTL.as_secs());
        if let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                let mut parts = line.splitn(3, ' ');
                let (Some(at), Some(count), Some(key)) = (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let (Ok(at), Ok(count)) = (at.parse::<u64>(), count.parse::<u64>()) else {
                    continue;
                };
                if at >= cutoff && valid(key) {
                    state.insert_done(key.to_owned(), count, at);
                }
            }
        }
        let log = std::fs::create_dir_all(dir).and_then(|()| {
            // Compact: rewrite the live keys, then append from there.
            let tmp = dir.join("idempotency.log.tmp");
            let mut f = File::create(&tmp)?;
            for (key, at) in &state.order {
                if let Some(Entry::Done(count)) = state.entries.get(key) {
                    writeln!(f, "{at} {count} {key}")?;
                }
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            OpenOptions::new().append(true).open(&path)
        });
        let log = match log {
            Ok(f) => Some(Mutex::new(f)),
            Err(e) => {
                tracing::warn!(source = %source, path = %path.display(), error = %e, "cannot keep idempotency keys on disk; a restart forgets them");
                None
            }
        };
        Keys {
            state: Mutex::new(state),
            log,
            path,
        }
    }

    /// Starts a request with `key`, waiting for another one with it in progress.
    pub async fn begin(&self, key: &str) -> Begin<'_> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                match state.entries.get(key) {
                    Some(Entry::Done(count)) => return Begin::Duplicate(*count),
                    Some(Entry::InProgress(n)) => n.clone(),
                    None => {
                        let notify = Arc::new(Notify::new());
                        state
                            .entries
                            .insert(key.to_owned(), Entry::InProgress(notify.clone()));
                        return Begin::New(Guard {
                            keys: self,
                            key: key.to_owned(),
                            notify,
                            committed: false,
                        });
                    }
                }
            };
            let wait = notified.notified();
            // Re-check after registering, in case it finished in between.
            if !matches!(
                self.state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entries
                    .get(key),
                Some(Entry::InProgress(_))
            ) {
                continue;
            }
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                // Still in progress after WAIT: processing this one too could stage
                // the events twice; the sender is told to come back.
                return Begin::Busy;
            }
        }
    }

    /// Where the keys are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl State {
    fn insert_done(&mut self, key: String, count: u64, at: u64) {
        if let Some(Entry::Done(_)) = self.entries.get(&key) {
            return;
        }
        self.entries.insert(key.clone(), Entry::Done(count));
        self.order.push_back((key, at));
        let cutoff = now_secs().saturating_sub(TTL.as_secs());
        while self.order.len() > MAX_KEYS || self.order.front().is_some_and(|(_, t)| *t < cutoff) {
            if let Some((old, _)) = self.order.pop_front() {
                if matches!(self.entries.get(&old), Some(Entry::Done(_))) {
                    self.entries.remove(&old);
                }
            }
        }
    }
}

impl Guard<'_> {
    /// Records the key as taken, with `accepted` events.
    pub fn commit(mut self, accepted: u64) {
        let at = now_secs();
        if let Some(log) = &self.keys.log {
            let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = writeln!(f, "{at} {accepted} {}", self.key) {
                tracing::warn!(path = %self.keys.path.display(), error = %e, "cannot record an idempotency key on disk");
            }
        }
        let mut state = self.keys.state.lock().unwrap_or_else(|e| e.into_inner());
        state.entries.remove(&self.key);
        state.insert_done(std::mem::take(&mut self.key), accepted, at);
        self.committed = true;
        drop(state);
        self.notify.notify_waiters();
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let mut state = self.keys.state.lock().unwrap_or_else(|e| e.into_inner());
            state.entries.remove(&self.key);
            drop(state);
            self.notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_key_is_a_duplicate_a_failed_one_is_not_and_both_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::open(dir.path(), "in");
        match keys.begin("k1").await {
            Begin::New(g) => g.commit(5),
            _ => panic!("new key"),
        }
        assert!(matches!(keys.begin("k1").await, Begin::Duplicate(5)));
        match keys.begin("k2").await {
            Begin::New(g) => drop(g), // the request failed
            _ => panic!("new key"),
        }
        assert!(
            matches!(keys.begin("k2").await, Begin::New(_)),
            "a failed request's key is forgotten"
        );
        drop(keys);
        let again = Keys::open(dir.path(), "in");
        assert!(
            matches!(again.begin("k1").await, Begin::Duplicate(5)),
            "kept across a restart"
        );
    }

    #[tokio::test]
    async fn a_request_waits_for_one_in_progress_with_its_key() {
        let keys = Arc::new(Keys::open(tempfile::tempdir().unwrap().path(), "in"));
        let Begin::New(first) = keys.begin("k").await else {
            panic!()
        };
        let waiter = {
            let keys = keys.clone();
            tokio::spawn(async move { matches!(keys.begin("k").await, Begin::Duplicate(3)) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        first.commit(3);
        assert!(waiter.await.unwrap(), "the second took the first's outcome");
    }

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(valid("restore-abc-0-12"));
        assert!(!valid(""));
        assert!(!valid("has space"));
        assert!(!valid(&"k".repeat(201)));
    }
}
