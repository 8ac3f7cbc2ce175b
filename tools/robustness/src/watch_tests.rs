//! The validators' allowances: each accepts exactly the server behaviour it names.

use super::*;
use crate::history::{Kv, Range, WatchResponse, WatchSpec};
use crate::model::State;

fn kv(v: &str, create: i64, modified: i64, version: i64) -> Kv {
    Kv { value: v.into(), create, modified, version, lease: 0 }
}

fn put(rev: i64, v: &str, create: i64, version: i64, prev: Option<Kv>) -> Event {
    Event { rev, delete: false, key: "/r/k".into(), kv: kv(v, create, rev, version), prev }
}

/// History: /r/k created at 2 ("a"), overwritten at 3 ("b") and 4 ("c").
fn replay() -> Replay {
    let events = vec![
        put(2, "a", 2, 1, None),
        put(3, "b", 2, 2, Some(kv("a", 2, 2, 1))),
        put(4, "c", 2, 3, Some(kv("b", 2, 3, 2))),
    ];
    Replay { states: Default::default(), events, last: State::new(4, Default::default()) }
}

fn session(start_rev: i64, responses: Vec<WatchResponse>) -> WatchSession {
    let range = Range { key: "/r/".into(), prefix: true, limit: 0 };
    WatchSession {
        watcher: "w".into(),
        spec: WatchSpec { range, prev_kv: true, no_delete: false },
        start_rev,
        resumed: false,
        responses,
    }
}

fn events(time: u64, header_rev: i64, events: Vec<Event>) -> WatchResponse {
    WatchResponse { time, header_rev, events, progress: false, canceled: false, compact_rev: 0 }
}

fn progress(time: u64, header_rev: i64) -> WatchResponse {
    WatchResponse { time, header_rev, events: vec![], progress: true, canceled: false, compact_rev: 0 }
}

#[test]
fn a_prev_kv_compacted_before_the_response_may_be_missing() {
    // A watcher restarted at compact revision 3: the predecessor of the event at 3 is gone.
    let s =
        [session(3, vec![events(100, 4, vec![put(3, "b", 2, 2, None), put(4, "c", 2, 3, Some(kv("b", 2, 3, 2)))])])];
    let allow = Allowances { compactions: vec![(50, 3)], ..Allowances::default() };
    let rep = validate(&s, &replay(), &allow);
    assert!(rep.failures.is_empty(), "{:?}", rep.failures);
}

#[test]
fn a_missing_prev_kv_without_such_a_compaction_is_a_failure() {
    let s = [session(3, vec![events(100, 4, vec![put(3, "b", 2, 2, None), put(4, "c", 2, 3, None)])])];
    // The compaction at 3 covers the event at 3 only; the one at 4 must still carry "b".
    let allow = Allowances { compactions: vec![(50, 3)], ..Allowances::default() };
    let rep = validate(&s, &replay(), &allow);
    assert_eq!(rep.failures.len(), 1, "{:?}", rep.failures);
    assert!(rep.failures[0].contains("prev_kv") && rep.failures[0].contains("@4"), "{:?}", rep.failures);
    // A compaction requested only after the response arrived does not excuse the event at 3.
    let s = [session(3, vec![events(100, 4, vec![put(3, "b", 2, 2, None)])])];
    let allow = Allowances { compactions: vec![(150, 3)], ..Allowances::default() };
    let rep = validate(&s, &replay(), &allow);
    assert!(rep.failures.iter().any(|f| f.contains("prev_kv")), "{:?}", rep.failures);
}

#[test]
fn early_progress_is_a_failure_unless_the_server_is_known_to_answer_it_early() {
    // Progress at 4 before the events at 3 and 4 (etcd 3.4's etcd-io/etcd#15220).
    let responses = vec![
        events(10, 2, vec![put(2, "a", 2, 1, None)]),
        progress(20, 4),
        events(30, 4, vec![put(3, "b", 2, 2, Some(kv("a", 2, 2, 1))), put(4, "c", 2, 3, Some(kv("b", 2, 3, 2)))]),
    ];
    let s = [session(2, responses)];
    let strict = validate(&s, &replay(), &Allowances::default());
    assert!(strict.failures.iter().any(|f| f.contains("bookmarkable")), "{:?}", strict.failures);
    let etcd = Allowances { progress_not_bookmark: true, ..Allowances::default() };
    let rep = validate(&s, &replay(), &etcd);
    assert!(rep.failures.is_empty(), "{:?}", rep.failures);
    assert_eq!(rep.progress_notifications, 1);
}

#[test]
fn with_early_progress_a_missing_event_is_still_caught() {
    // The progress at 4 does not stand for the event at 3 that never came.
    let responses = vec![
        events(10, 2, vec![put(2, "a", 2, 1, None)]),
        progress(20, 4),
        events(30, 4, vec![put(4, "c", 2, 3, Some(kv("b", 2, 3, 2)))]),
    ];
    let etcd = Allowances { progress_not_bookmark: true, ..Allowances::default() };
    let rep = validate(&[session(2, responses)], &replay(), &etcd);
    assert!(rep.failures.iter().any(|f| f.contains("reliable") && f.contains("missing")), "{:?}", rep.failures);
}

#[test]
fn a_delete_at_the_compact_revision_a_watch_starts_at_may_be_missing() {
    // History: /r/k deleted at 3 (after "a" at 2); a watch restarted at compact revision 3.
    let history = vec![
        put(2, "a", 2, 1, None),
        Event { rev: 3, delete: true, key: "/r/k".into(), kv: kv("", 0, 3, 0), prev: Some(kv("a", 2, 2, 1)) },
        put(4, "c", 4, 1, None),
    ];
    let replay = Replay { states: Default::default(), events: history, last: State::new(4, Default::default()) };
    let s = [session(3, vec![events(100, 4, vec![put(4, "c", 4, 1, None)]), progress(110, 4)])];
    let compacted = Allowances { compactions: vec![(50, 3)], ..Allowances::default() };
    let rep = validate(&s, &replay, &compacted);
    assert!(rep.failures.is_empty(), "{:?}", rep.failures);
    // Without that compaction the same stream lost an event.
    let rep = validate(&s, &replay, &Allowances::default());
    assert!(rep.failures.iter().any(|f| f.contains("missing DELETE /r/k @3")), "{:?}", rep.failures);
}
