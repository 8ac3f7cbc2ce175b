//! The watch hub: delivers MVCC events to watchers with etcd's guarantees — ordered by revision,
//! no duplicates, no gaps, every event of one revision in one message, resumable, and progress
//! notifications only once everything before them was delivered.
//!
//! ```text
//!  apply ─commit─► notify(events) ──► synced watchers ──try_send──► stream channel (bounded)
//!                                         │ channel full
//!                                         ▼
//!  catch-up task ◄── unsynced watchers (started in the past, or fell behind: "victims")
//!       └── reads history from storage, one scan for all of them, then re-syncs them
//! ```
//!
//! * A watcher is **synced** when every revision up to the last notified one has been handed to
//!   its stream; `notify` then delivers new events directly (a watcher skips revisions below its
//!   `next_rev`, so nothing is sent twice).
//! * A synced watcher whose stream channel is full becomes **unsynced** at the revision it missed.
//!   A slow consumer therefore never blocks apply and never grows memory beyond its bounded
//!   channel: it catches up from stored history once it reads again.
//! * The catch-up task re-syncs a watcher only after delivering history up to at least the last
//!   notified revision, checked under the hub lock, so no revision falls between the two paths.
//! * A watcher whose next revision was compacted receives `compact_revision` and is cancelled.
//!
//! Deliberately not done here: `prev_kv` and fragmenting (the stream layer fills them in).

mod index;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::OwnedPermit;
use tokio::sync::{mpsc, Notify};

use self::index::WatcherIndex;
use super::{KeyRange, KvStore};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::Event;

/// Revisions read from history per catch-up round.
const CATCH_UP_CHUNK: i64 = 1000;

/// What the hub hands to a watch stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Events of one or more whole revisions, for one watcher.
    Events { watch_id: i64, revision: i64, events: Vec<Event> },
    /// The watcher's next revision was compacted; the watcher is gone.
    Compacted { watch_id: i64, compact_revision: i64 },
    /// Every event up to `revision` was delivered (`watch_id` -1: for the whole stream).
    Progress { watch_id: i64, revision: i64 },
    /// The stream's answer to a create request (sent by the stream itself, in order).
    Created { watch_id: i64, revision: i64 },
    /// The stream's answer to a cancel request, or a refused create.
    Canceled { watch_id: i64, revision: i64, reason: String },
}

/// A watch as a stream asks for it.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub stream: u64,
    pub watch_id: i64,
    pub range: KeyRange,
    /// First revision to deliver.
    pub start_rev: i64,
    pub no_put: bool,
    pub no_delete: bool,
    pub progress_notify: bool,
}

struct Watcher {
    spec: WatchSpec,
    next_rev: i64,
    synced: bool,
    tx: mpsc::Sender<Delivery>,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        let kv = ev.kv.as_ref().expect("events carry a key-value");
        let is_put = ev.r#type == EventType::Put as i32;
        let filtered = if is_put { self.spec.no_put } else { self.spec.no_delete };
        kv.mod_revision >= self.next_rev && !filtered && self.spec.range.contains(&kv.key)
    }
}

#[derive(Default)]
struct HubState {
    watchers: HashMap<u64, Watcher>,
    by_stream: HashMap<(u64, i64), u64>,
    synced: WatcherIndex,
    next_key: u64,
    /// Highest revision handed to `notify`.
    last_notified: i64,
    /// Streams waiting for an on-demand progress response.
    progress_wanted: HashMap<u64, mpsc::Sender<Delivery>>,
}

pub struct WatchHub {
    kv: Arc<KvStore>,
    state: Mutex<HubState>,
    wake: Notify,
    progress_interval: Duration,
}

impl WatchHub {
    /// A hub over `kv`; `progress_interval` is how often watchers that asked for progress
    /// notifications get one (etcd: 10 minutes).
    pub fn new(kv: Arc<KvStore>, progress_interval: Duration) -> Arc<Self> {
        let last_notified = kv.read().rev();
        let state = HubState { last_notified, ..Default::default() };
        Arc::new(Self { kv, state: Mutex::new(state), wake: Notify::new(), progress_interval })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().expect("watch hub lock")
    }

    /// Registers a watch and answers its creation through `created`, both under the hub lock:
    /// the `created` revision is the last revision handed to watchers, a `start_rev` of 0 means
    /// the one after it, and every later event reaches the channel after the answer — so a client
    /// resuming from the created revision misses nothing. Returns `false` (and answers nothing)
    /// if the stream already uses `watch_id`.
    pub fn watch(&self, mut spec: WatchSpec, tx: mpsc::Sender<Delivery>, created: OwnedPermit<Delivery>) -> bool {
        let mut st = self.lock();
        if st.by_stream.contains_key(&(spec.stream, spec.watch_id)) {
            return false;
        }
        let revision = st.last_notified;
        if spec.start_rev == 0 {
            spec.start_rev = revision + 1;
        }
        created.send(Delivery::Created { watch_id: spec.watch_id, revision });
        let key = st.next_key;
        st.next_key += 1;
        let synced = spec.start_rev > st.last_notified;
        if synced {
            st.synced.insert(key, &spec.range);
        }
        st.by_stream.insert((spec.stream, spec.watch_id), key);
        let next_rev = spec.start_rev;
        st.watchers.insert(key, Watcher { spec, next_rev, synced, tx });
        drop(st);
        if !synced {
            self.wake.notify_one();
        }
        true
    }

    /// The store was replaced by a snapshot: every watcher goes back to catching up from history
    /// at the revision it would have received next (and is canceled with `compact_revision` if
    /// that history is gone), as etcd's watchable store does on restore.
    pub fn restored(&self) {
        let current = self.kv.read().rev();
        let mut guard = self.lock();
        let st = &mut *guard;
        let delivered_up_to = st.last_notified;
        for (key, w) in st.watchers.iter_mut() {
            if w.synced {
                w.synced = false;
                w.next_rev = w.next_rev.max(delivered_up_to + 1);
                st.synced.remove(*key, &w.spec.range);
            }
        }
        st.last_notified = current;
        drop(guard);
        self.wake.notify_one();
    }

    /// Cancels a watch; `false` if the stream has no such watch.
    pub fn cancel(&self, stream: u64, watch_id: i64) -> bool {
        let mut st = self.lock();
        match st.by_stream.remove(&(stream, watch_id)) {
            Some(key) => {
                remove(&mut st, key);
                true
            }
            None => false,
        }
    }

    /// Drops every watch of a closed stream.
    pub fn close_stream(&self, stream: u64) {
        let mut st = self.lock();
        let keys: Vec<u64> = st.by_stream.iter().filter(|((s, _), _)| *s == stream).map(|(_, k)| *k).collect();
        for key in keys {
            remove(&mut st, key);
        }
        st.by_stream.retain(|(s, _), _| *s != stream);
        st.progress_wanted.remove(&stream);
    }

    /// Asks for a progress response on `stream` once all its watchers are caught up.
    pub fn request_progress(&self, stream: u64, tx: mpsc::Sender<Delivery>) {
        let mut st = self.lock();
        st.progress_wanted.insert(stream, tx);
        answer_progress(&mut st);
    }

    /// Delivers the events of newly applied revisions (ascending) to synced watchers.
    pub fn notify(&self, events: &[Event]) {
        let Some(last) = events.last() else { return };
        let last_rev = last.kv.as_ref().map(|kv| kv.mod_revision).unwrap_or(0);
        let mut st = self.lock();
        let mut batches: HashMap<u64, Vec<Event>> = HashMap::new();
        for ev in events {
            let kv = ev.kv.as_ref().expect("events carry a key-value");
            let HubState { synced, watchers, .. } = &mut *st;
            synced.matching(&kv.key, |key| {
                if watchers.get(&key).is_some_and(|w| w.wants(ev)) {
                    batches.entry(key).or_default().push(ev.clone());
                }
            });
        }
        let mut fell_behind = false;
        for (key, evs) in batches {
            let w = st.watchers.get_mut(&key).expect("indexed watchers exist");
            let first_rev = evs[0].kv.as_ref().map(|kv| kv.mod_revision).unwrap_or(0);
            let delivery = Delivery::Events { watch_id: w.spec.watch_id, revision: last_rev, events: evs };
            match w.tx.try_send(delivery) {
                Ok(()) => w.next_rev = last_rev + 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    w.next_rev = first_rev;
                    w.synced = false;
                    let range = w.spec.range.clone();
                    st.synced.remove(key, &range);
                    fell_behind = true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => remove(&mut st, key),
            }
        }
        st.last_notified = st.last_notified.max(last_rev);
        answer_progress(&mut st);
        drop(st);
        if fell_behind {
            self.wake.notify_one();
        }
    }

    /// Runs the catch-up loop forever: brings unsynced watchers up to date from history and sends
    /// periodic progress notifications. Spawn it once per hub.
    pub async fn run(self: Arc<Self>) {
        let mut last_progress = Instant::now();
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            while self.catch_up_round() {
                tokio::task::yield_now().await;
            }
            if last_progress.elapsed() >= self.progress_interval {
                self.send_periodic_progress();
                last_progress = Instant::now();
            }
        }
    }

    /// One bounded round of catch-up; returns `true` if more work is immediately available.
    fn catch_up_round(&self) -> bool {
        let pending: Vec<(u64, i64)> = {
            let st = self.lock();
            st.watchers.iter().filter(|(_, w)| !w.synced).map(|(k, w)| (*k, w.next_rev)).collect()
        };
        let Some(min_rev) = pending.iter().map(|(_, rev)| *rev).min() else { return false };
        let (current, compacted) = {
            let view = self.kv.read();
            (view.rev(), view.compact_rev())
        };
        // etcd's compacted revision is -1 before the first compaction; negative start revisions
        // below it are "compacted", others replay nothing (etcd's unsigned revision encoding).
        let compacted_for_watch = if compacted == 0 { -1 } else { compacted };
        let from = min_rev.max(compacted).max(1);
        let to = current.min(from.saturating_add(CATCH_UP_CHUNK - 1));
        let history = if from > to || from < compacted {
            Vec::new()
        } else {
            match self.kv.read().history(&KeyRange::From(vec![0]), from, to) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "watch catch-up could not read history");
                    return false;
                }
            }
        };
        let mut guard = self.lock();
        let st = &mut *guard;
        let mut more = false;
        for (key, _) in pending {
            let Some(w) = st.watchers.get_mut(&key) else { continue };
            if w.synced {
                continue;
            }
            if w.next_rev < compacted_for_watch {
                let compact_revision = compacted_for_watch;
                let delivery = Delivery::Compacted { watch_id: w.spec.watch_id, compact_revision };
                let stream_key = (w.spec.stream, w.spec.watch_id);
                if w.tx.try_send(delivery).is_ok() {
                    remove(st, key);
                    st.by_stream.remove(&stream_key);
                }
                continue;
            }
            if w.next_rev < 0 {
                w.next_rev = current + 1;
            } else if w.next_rev <= to {
                let evs: Vec<Event> = history.iter().filter(|ev| w.wants(ev)).cloned().collect();
                if !evs.is_empty() {
                    let delivery = Delivery::Events { watch_id: w.spec.watch_id, revision: current, events: evs };
                    if w.tx.try_send(delivery).is_err() {
                        continue; // still full (or closed: cleaned up when the stream ends)
                    }
                }
                w.next_rev = to + 1;
            }
            if w.next_rev > st.last_notified {
                w.synced = true;
                st.synced.insert(key, &w.spec.range);
            } else {
                more = true;
            }
        }
        answer_progress(st);
        more
    }

    fn send_periodic_progress(&self) {
        let st = self.lock();
        for w in st.watchers.values().filter(|w| w.synced && w.spec.progress_notify) {
            let delivery = Delivery::Progress { watch_id: w.spec.watch_id, revision: st.last_notified };
            // A full channel skips this notification, as etcd does; the next one will come.
            let _skipped = w.tx.try_send(delivery);
        }
    }

    /// Number of registered watchers (for status and tests).
    pub fn len(&self) -> usize {
        self.lock().watchers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn remove(st: &mut HubState, key: u64) {
    if let Some(w) = st.watchers.remove(&key) {
        if w.synced {
            st.synced.remove(key, &w.spec.range);
        }
    }
}

/// Sends the pending on-demand progress responses of streams whose watchers are all synced.
fn answer_progress(st: &mut HubState) {
    if st.progress_wanted.is_empty() {
        return;
    }
    let behind: HashSet<u64> = st.watchers.values().filter(|w| !w.synced).map(|w| w.spec.stream).collect();
    let revision = st.last_notified;
    st.progress_wanted.retain(|stream, tx| {
        if behind.contains(stream) {
            return true;
        }
        // A full channel keeps the request pending; a closed one drops it.
        match tx.try_send(Delivery::Progress { watch_id: -1, revision }) {
            Ok(()) => false,
            Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
}

#[cfg(test)]
mod tests;
