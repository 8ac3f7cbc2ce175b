//! Watch validators, after etcd's robustness suite. For every watch session (one stream from its
//! start revision), against the events the linearized history produced ([`Replay`]):
//!
//! - **ordered**: event revisions never go down;
//! - **unique**: no (revision, key) twice;
//! - **atomic**: all events of one revision arrive in one response;
//! - **reliable**: between the start revision and the last revision the session saw (an event or
//!   a progress notification), it got exactly the history's events, none missing;
//! - **resumable**: a session that resumes a broken one starts right after the last revision the
//!   broken one saw, so the two read as one stream;
//! - **bookmarkable**: a progress notification at revision R comes after every event ≤ R;
//! - **prev_kv** and **is_create**: each event's previous value and creation flag equal the model's;
//! - **filters**: a `NOPUT`/`NODELETE` watch gets no event of the filtered kind.
//!
//! Sessions canceled for compaction are checked up to their end only; their watcher relists.
//!
//! What the server may legitimately do differently ([`Allowances`]):
//!
//! - A `prev_kv` is read when the event is sent, at `mod_revision - 1` (etcd's `v3rpc/watch.go`
//!   `sendLoop`); if a compaction at or above the event's revision took effect first, that read
//!   fails and the event goes without its previous value. A missing `prev_kv` is accepted only
//!   when such a compaction had been requested before the response arrived (typically a watcher
//!   restarted at the compact revision, whose first event's predecessor is gone).
//! - Compaction at C drops a tombstone at revision ≤ C (etcd's `mvcc/key_index.go` `keep`: "remove
//!   any tombstone"), so a watch started at exactly C — as a client does after a compaction cancel
//!   — cannot get a DELETE at C. Such a missing delete at a session's start revision is accepted
//!   when a compaction at or above it had been requested before the session ended.
//! - etcd 3.4 answers a progress request at once with the store's revision, even while the
//!   stream's watchers are still catching up (`v3rpc/watch.go`, `WatchRequest_ProgressRequest`;
//!   etcd-io/etcd#15220, fixed by #15237 after 3.4.23). For etcd the suite therefore treats a
//!   requested progress notification as no bookmark: it is not checked, it does not extend the
//!   reliable window, and the watcher resumes after its last event (see `traffic::Watcher`).

use std::collections::HashSet;

use crate::history::{Event, WatchSession};
use crate::replay::Replay;

#[derive(Default, Debug)]
pub struct WatchReport {
    pub sessions: usize,
    pub events: usize,
    pub progress_notifications: usize,
    pub failures: Vec<String>,
}

/// What the validators accept beyond etcd's documented guarantees (module docs).
#[derive(Clone, Debug, Default)]
pub struct Allowances {
    /// Compactions requested during the run: (invoke time, revision).
    pub compactions: Vec<(u64, i64)>,
    /// The server answers progress requests before unsynced watchers' events (etcd 3.4).
    pub progress_not_bookmark: bool,
}

impl Allowances {
    /// Whether a compaction at `rev` or above had been requested by `time` (so the predecessor
    /// of an event at `rev`, or a tombstone at `rev`, may be gone).
    fn prev_compacted(&self, rev: i64, time: u64) -> bool {
        self.compactions.iter().any(|&(call, c)| call <= time && c >= rev)
    }
}

pub fn validate(sessions: &[WatchSession], replay: &Replay, allow: &Allowances) -> WatchReport {
    let mut rep = WatchReport { sessions: sessions.len(), ..WatchReport::default() };
    let mut last_seen: std::collections::HashMap<&str, i64> = Default::default();
    for s in sessions {
        let prior = last_seen.get(s.watcher.as_str()).copied();
        if s.resumed {
            if let Some(p) = prior.filter(|p| s.start_rev != p + 1) {
                rep.failures
                    .push(format!("{}: resumable: resumed at {} after last revision {p}", s.watcher, s.start_rev));
            }
        }
        let last = session(s, replay, allow, &mut rep);
        last_seen.insert(&s.watcher, last.max(s.start_rev - 1));
    }
    rep
}

/// Validates one session; returns the last revision it saw.
fn session(s: &WatchSession, replay: &Replay, allow: &Allowances, rep: &mut WatchReport) -> i64 {
    let who = format!("{} (from {})", s.watcher, s.start_rev);
    let mut fail = |what: &str, detail: String| rep.failures.push(format!("{who}: {what}: {detail}"));
    let mut got: Vec<(&Event, u64)> = Vec::new();
    let mut seen = HashSet::new();
    let mut last_rev = s.start_rev - 1;
    // Ordering is between events only: etcd 3.4 may notify progress past events still queued.
    let mut last_event = s.start_rev - 1;
    let mut revs_done: HashSet<i64> = HashSet::new();
    let ended = s.responses.last().map_or(0, |r| r.time);
    let excused = |e: &Event| e.delete && e.rev == s.start_rev && allow.prev_compacted(e.rev, ended);
    for r in &s.responses {
        let mut in_this: HashSet<i64> = HashSet::new();
        for e in &r.events {
            if e.rev < last_event || e.rev < s.start_rev {
                fail("ordered", format!("{e} after revision {last_event}"));
            }
            last_event = e.rev;
            if !seen.insert((e.rev, e.key.clone())) {
                fail("unique", format!("{e} delivered twice"));
            }
            if revs_done.contains(&e.rev) && !in_this.contains(&e.rev) {
                fail("atomic", format!("events of revision {} split over responses", e.rev));
            }
            if (e.delete && s.spec.no_delete) || !s.spec.range.contains(&e.key) {
                fail("filter", format!("{e} does not match the watch"));
            }
            in_this.insert(e.rev);
            last_rev = last_rev.max(e.rev);
            got.push((e, r.time));
        }
        revs_done.extend(in_this);
        if r.progress {
            rep.progress_notifications += 1;
        }
        if r.progress && !allow.progress_not_bookmark {
            // bookmarkable: every event up to the notified revision must already be here
            let owed = replay
                .events_between(s.start_rev, r.header_rev)
                .filter(|e| wanted(s, e) && !excused(e))
                .filter(|e| !seen.contains(&(e.rev, e.key.clone())))
                .count();
            if owed > 0 && r.header_rev <= replay.last.rev {
                fail("bookmarkable", format!("progress at {} while {owed} earlier events were not sent", r.header_rev));
            }
            last_rev = last_rev.max(r.header_rev.min(replay.last.rev));
        }
    }
    rep.events += got.len();
    // reliable (and prev_kv / is_create): exactly the history's events in [start, last_rev].
    let want: std::collections::HashMap<(i64, &str), &Event> = replay
        .events_between(s.start_rev, last_rev)
        .filter(|e| wanted(s, e))
        .map(|e| ((e.rev, e.key.as_str()), e))
        .collect();
    for &(g, time) in &got {
        match want.get(&(g.rev, g.key.as_str())) {
            None => fail("reliable", format!("{g} is not in the history")),
            Some(w) => {
                let prev_may_be_gone = allow.prev_compacted(g.rev, time);
                compare(&mut fail, s, w, g, prev_may_be_gone)
            }
        }
    }
    let mut missing: Vec<&&Event> =
        want.values().filter(|w| !seen.contains(&(w.rev, w.key.clone())) && !excused(w)).collect();
    missing.sort_by_key(|w| w.rev);
    for w in missing {
        fail("reliable", format!("missing {w}"));
    }
    last_rev
}

fn wanted(s: &WatchSession, e: &Event) -> bool {
    s.spec.range.contains(&e.key) && !(s.spec.no_delete && e.delete)
}

fn compare(fail: &mut impl FnMut(&str, String), s: &WatchSession, want: &Event, got: &Event, prev_may_be_gone: bool) {
    if want.delete != got.delete || (!want.delete && want.kv != got.kv) || want.kv.modified != got.kv.modified {
        fail("reliable", format!("got {got}, history has {want}"));
    }
    let created = |e: &Event| !e.delete && e.kv.create == e.kv.modified;
    if created(want) != created(got) {
        fail("is_create", format!("got {got}, history has {want}"));
    }
    let compacted_away = got.prev.is_none() && prev_may_be_gone;
    if s.spec.prev_kv && want.prev != got.prev && !compacted_away {
        fail("prev_kv", format!("got {got}, history has {want}"));
    }
    if !s.spec.prev_kv && got.prev.is_some() {
        fail("prev_kv", format!("{got} carries a previous value nobody asked for"));
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
