//! Whole checks (search, replay, watch validators) of hand-written histories whose lease revoke
//! or expiry floats: the watch streams must decide its place when they agree with some
//! linearization, and the check must still fail when they cannot.
//!
//! The fixture is the shape of etcd's `kill-follower` failure (same keys and revisions): lease L
//! holds `/r/k3` and `/r/k7` (put "c5-798" at 8634); L's revoke times out (or L expires) and an
//! unknown-outcome delete of `/r/k3` is in flight; the server deletes `/r/k3` at 8653, puts `/r/k7`
//! = "c1-809" at 8654 (version 6 of the key created at 8617, which detaches it from L), and L goes
//! afterwards with no key left. Placing L's revoke at 8653 instead also fits every client answer,
//! but deletes `/r/k7` there, which no stream shows.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::history::{History, OpResult, Operation, Request, Response, TxnOp, WatchResponse, WatchSpec};
use crate::model::State;
use crate::scenario::{self, Outcome};

const MS: u64 = 1_000_000;
const LEASE: i64 = 0x6_0000_0001;
const K3: &str = "/r/k3";
const K7: &str = "/r/k7";

fn txn(ops: Vec<TxnOp>) -> Request {
    Request::Txn { compares: vec![], success: ops, failure: vec![] }
}

fn put(key: &str, value: &str, lease: i64) -> Request {
    txn(vec![TxnOp::Put { key: key.into(), value: value.into(), lease }])
}

fn delete(key: &str) -> Request {
    txn(vec![TxnOp::Delete { key: key.into() }])
}

fn op(client: usize, call: u64, ret: Option<u64>, request: Request, response: Option<Response>) -> Operation {
    Operation { client, call, ret, request, response, error: ret.is_none().then(|| "context deadline exceeded".into()) }
}

fn kv(value: &str, create: i64, modified: i64, version: i64) -> Kv {
    Kv { value: value.into(), create, modified, version, lease: 0 }
}

/// How lease L ends: a client's revoke that timed out, or expiry after a 2 s TTL.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Revoke,
    Expiry,
}

/// The client history and the order the server really applied it in (indices into the
/// operations; an operation the server applied as a no-op or never is left out).
struct Fixture {
    history: History,
    applied: Vec<usize>,
}

fn fixture(ending: Ending) -> Fixture {
    let initial_kvs =
        BTreeMap::from([(K3.to_string(), kv("c2-10", 8620, 8631, 2)), (K7.to_string(), kv("c4-50", 8617, 8630, 4))]);
    let ttl = match ending {
        Ending::Revoke => 3600,
        Ending::Expiry => 2,
    };
    let mut ops = vec![
        op(5, 0, Some(5 * MS), Request::LeaseGrant { id: LEASE, ttl }, Some(Response::Ok)),
        op(5, 6 * MS, Some(8 * MS), put(K3, "c5-797", LEASE), Some(put_ok(8633))),
        op(5, 9 * MS, Some(11 * MS), put(K7, "c5-798", LEASE), Some(put_ok(8634))),
    ];
    let mut applied = vec![0, 1, 2];
    // Other clients' writes at 8635..=8652 on a key of their own.
    for (i, rev) in (8635..=8652).enumerate() {
        let t = (20 + 2 * i as u64) * MS;
        applied.push(ops.len());
        ops.push(op(0, t, Some(t + MS), put("/r/k1", &format!("c0-{i}"), 0), Some(put_ok(rev))));
    }
    // The floating pair, both invoked before 8653 was created; the fault cuts both answers off.
    // Expiry: the suite adds it (TTL after the grant's invoke, i.e. at 2 s).
    let t = if matches!(ending, Ending::Expiry) { 2_100 * MS } else { 100 * MS };
    let revoke = ops.len();
    if matches!(ending, Ending::Revoke) {
        ops.push(op(5, t, None, Request::LeaseRevoke { id: LEASE }, None));
    }
    let unknown_delete = ops.len();
    ops.push(op(3, t + MS, None, delete(K3), None));
    applied.push(unknown_delete); // 8653
    let deleted = |rev| Response::Txn { rev, succeeded: true, results: vec![OpResult::Delete { deleted: 1 }] };
    applied.push(ops.len());
    ops.push(op(1, t + 10 * MS, Some(t + 20 * MS), put(K7, "c1-809", 0), Some(put_ok(8654)))); // detaches K7 from L
    if matches!(ending, Ending::Revoke) {
        applied.push(revoke); // deletes nothing now: no revision
    }
    for (i, rev) in (8655..=8656).enumerate() {
        let t = t + (30 + 2 * i as u64) * MS;
        applied.push(ops.len());
        ops.push(op(0, t, Some(t + MS), put("/r/k1", &format!("c0-x{i}"), 0), Some(put_ok(rev))));
    }
    applied.push(ops.len());
    ops.push(op(2, t + 40 * MS, Some(t + 41 * MS), delete(K7), Some(deleted(8657))));
    let mut history = History { operations: ops, watches: vec![], initial_rev: 8632, initial_kvs };
    history.add_lease_expiries();
    Fixture { history, applied }
}

fn put_ok(rev: i64) -> Response {
    Response::Txn { rev, succeeded: true, results: vec![OpResult::Put] }
}

impl Fixture {
    /// The events the server emitted: the applied order through the model.
    fn server_events(&self) -> Vec<(Event, u64)> {
        let h = &self.history;
        let mut state = State::new(h.initial_rev, h.initial_kvs.clone());
        let mut out = Vec::new();
        for &i in &self.applied {
            let o = &h.operations[i];
            let (next, _, events) = state.step(&o.request);
            let at = o.ret.unwrap_or(o.call) + MS / 2;
            out.extend(events.into_iter().map(|e| (e, at)));
            state = next;
        }
        out
    }

    /// A watcher's stream of `events` from `start` (one response per revision).
    fn watch(&mut self, name: &str, start: i64, prev_kv: bool, no_delete: bool, events: &[(Event, u64)]) {
        let range = crate::history::Range { key: "/r/".into(), prefix: true, limit: 0 };
        let mut responses: Vec<WatchResponse> = Vec::new();
        for (e, at) in events.iter().filter(|(e, _)| e.rev >= start && !(no_delete && e.delete)) {
            let mut e = e.clone();
            if !prev_kv {
                e.prev = None;
            }
            match responses.last_mut() {
                Some(r) if r.header_rev == e.rev => r.events.push(e),
                _ => responses.push(WatchResponse {
                    time: *at,
                    header_rev: e.rev,
                    events: vec![e],
                    progress: false,
                    canceled: false,
                    compact_rev: 0,
                }),
            }
        }
        self.history.watches.push(WatchSession {
            watcher: name.into(),
            spec: WatchSpec { range, prev_kv, no_delete },
            start_rev: start,
            resumed: false,
            responses,
        });
    }

    /// The run's watchers: one per member from the start, a restarted one, `NODELETE`, a
    /// Kubernetes client's.
    fn watchers(mut self, events: &[(Event, u64)]) -> Fixture {
        self.watch("watch-m0", 8633, true, false, events);
        self.watch("watch-m1", 8633, true, false, events);
        self.watch("watch-m2", 8640, true, false, events);
        self.watch("watch-nodelete", 8633, false, true, events);
        self.watch("k8s-1", 8636, true, false, events);
        self
    }

    fn check(&self) -> Outcome {
        scenario::check(&self.history, Duration::from_secs(10), false)
    }
}

fn failures(o: &Outcome) -> String {
    format!("linearizable {}; {:?}; {:?}", o.linearizable, o.report, o.watch.failures)
}

/// (a) Every stream shows `/r/k3` deleted at 8653 and `/r/k7` living on: the floating revoke (or
/// expiry) must be placed where the streams put it, and every check passes.
#[test]
fn the_streams_place_a_floating_revoke_or_expiry() {
    for ending in [Ending::Revoke, Ending::Expiry] {
        let f = fixture(ending);
        let events = f.server_events();
        let at_8653: Vec<String> = events.iter().filter(|(e, _)| e.rev == 8653).map(|(e, _)| e.to_string()).collect();
        assert_eq!(at_8653, ["DELETE /r/k3 @8653 prev \"c5-797\"@8633"]);
        let o = f.watchers(&events).check();
        assert!(o.passed(), "{ending:?}: {}", failures(&o));
        assert_eq!(o.watch.sessions, 5);
    }
}

/// The other placement — L revoked at 8653, deleting both keys — is a valid linearization of the
/// client answers alone; with streams that show it, the check passes too (so the evidence, not
/// the call order, decides).
#[test]
fn streams_showing_the_revoke_at_8653_place_it_there() {
    let mut f = fixture(Ending::Revoke);
    let (revoke, unknown_delete) = (21, 22);
    assert!(matches!(f.history.operations[revoke].request, Request::LeaseRevoke { .. }));
    f.applied.retain(|&i| i != revoke && i != unknown_delete);
    let at = f.applied.iter().position(|&i| i == 20).expect("the last write before 8653") + 1;
    f.applied.insert(at, revoke);
    let events = f.server_events();
    let at_8653: Vec<String> = events.iter().filter(|(e, _)| e.rev == 8653).map(|(e, _)| e.key.clone()).collect();
    assert_eq!(at_8653, [K3, K7]);
    let o = f.watchers(&events).check();
    assert!(o.passed(), "{}", failures(&o));
}

/// A saved history (JSON, as a failed scenario leaves it) checks the same as the recorded one.
#[test]
fn a_saved_history_checks_the_same() {
    let f = fixture(Ending::Expiry);
    let events = f.server_events();
    let f = f.watchers(&events);
    let back = History::from_json(&f.history.to_json()).expect("reads back");
    assert_eq!(back.to_json(), f.history.to_json());
    let o = scenario::check(&back, Duration::from_secs(10), false);
    assert!(o.passed(), "{}", failures(&o));
    assert_eq!(o.operations, f.check().operations);
}

/// (b) Streams that disagree with each other about 8653 fail, whichever they are.
#[test]
fn streams_that_disagree_fail() {
    let f = fixture(Ending::Revoke);
    let real = f.server_events();
    let mut other = fixture(Ending::Revoke);
    let (revoke, unknown_delete) = (21, 22);
    other.applied.retain(|&i| i != revoke && i != unknown_delete);
    let at = other.applied.iter().position(|&i| i == 20).expect("the last write before 8653") + 1;
    other.applied.insert(at, revoke);
    let both_deleted = other.server_events();
    let mut f = f;
    f.watch("watch-m0", 8633, true, false, &real);
    f.watch("watch-m1", 8633, true, false, &both_deleted);
    let o = f.check();
    assert!(!o.passed(), "watchers disagreeing about 8653 passed");
    assert!(o.watch.failures.iter().any(|w| w.contains("/r/k7")), "{}", failures(&o));
}

/// (b) Streams showing a deletion where no linearization can have one: L's keys deleted at 8653,
/// but the only operation that could delete `/r/k7` (L's revoke) was invoked after 8654 was
/// acknowledged.
#[test]
fn a_deletion_no_linearization_allows_fails() {
    let mut f = fixture(Ending::Revoke);
    let revoke = 21;
    let late = f.history.operations[revoke + 2].ret.expect("the put at 8654") + MS;
    f.history.operations[revoke].call = late;
    let mut events = f.server_events();
    let pos = events.iter().position(|(e, _)| e.rev == 8653).expect("8653");
    let (mut k7, at) = events[pos].clone();
    k7.key = K7.into();
    k7.prev = Some(Kv { lease: LEASE, ..kv("c5-798", 8617, 8634, 5) });
    events.insert(pos + 1, (k7, at));
    let o = f.watchers(&events).check();
    assert!(!o.passed(), "a deletion of /r/k7 at 8653 passed");
}

/// (b) Streams that miss an event: only L's revoke can have made 8653 (no unknown delete in
/// flight), and it deletes both keys, but the streams show `/r/k3` only and `/r/k7` living on.
#[test]
fn a_missed_event_fails() {
    let mut f = fixture(Ending::Revoke);
    let events = f.server_events();
    let unknown_delete = 22;
    assert!(f.history.operations[unknown_delete].ret.is_none());
    f.history.operations.remove(unknown_delete);
    let o = f.watchers(&events).check();
    assert!(!o.passed(), "a stream missing DELETE /r/k7 @8653 passed");
}

#[test]
fn only_streams_covering_a_revision_and_key_constrain_it() {
    let range = |key: &str| crate::history::Range { key: key.into(), prefix: true, limit: 0 };
    let del = |key: &str, rev| Event { rev, delete: true, key: key.into(), kv: kv("", 0, rev, 0), prev: None };
    let session = |key: &str, start, events: Vec<Event>| WatchSession {
        watcher: "w".into(),
        spec: WatchSpec { range: range(key), prev_kv: false, no_delete: false },
        start_rev: start,
        resumed: false,
        responses: vec![WatchResponse {
            time: 1,
            header_rev: 9,
            events,
            progress: false,
            canceled: false,
            compact_rev: 0,
        }],
    };
    let ev = Evidence::new(&[session("/r/a", 2, vec![del("/r/a", 5), del("/r/a", 9)])]);
    // A key nobody watched may be deleted at 6; a watched one may not.
    assert!(ev.allows(6, &[del("/x/b", 6)]));
    assert!(!ev.allows(6, &[del("/r/a", 6)]));
    // At 5 the stream saw /r/a deleted: that must be among the events, and nothing else watched.
    assert!(ev.allows(5, &[del("/r/a", 5), del("/x/b", 5)]));
    assert!(!ev.allows(5, &[del("/x/b", 5)]));
    assert!(!ev.allows(5, &[del("/r/a", 5), del("/r/ab", 5)]));
    // Past the stream's last event, and a delete at its start revision, nothing is known.
    assert!(ev.allows(10, &[del("/r/a", 10)]));
    assert!(ev.allows(2, &[del("/r/a", 2)]));
}

/// Lease L (TTL 2 s) holds `/r/k3` = "c5-797" (8633); other clients write `/r/k1` at 8634..=8652
/// and stop; L expires after that, deleting `/r/k3` at 8653. No answered write claims 8653:
/// `with_expiry` says whether the history keeps the expiry (the suite always adds it).
fn expiry_after_the_last_write(with_expiry: bool) -> Fixture {
    let initial_kvs = BTreeMap::from([(K3.to_string(), kv("c2-10", 8620, 8631, 2))]);
    let mut ops = vec![
        op(5, 0, Some(5 * MS), Request::LeaseGrant { id: LEASE, ttl: 2 }, Some(Response::Ok)),
        op(5, 6 * MS, Some(8 * MS), put(K3, "c5-797", LEASE), Some(put_ok(8633))),
    ];
    for (i, rev) in (8634..=8652).enumerate() {
        let t = (20 + 2 * i as u64) * MS;
        ops.push(op(0, t, Some(t + MS), put("/r/k1", &format!("c0-{i}"), 0), Some(put_ok(rev))));
    }
    let mut applied: Vec<usize> = (0..ops.len()).collect();
    let mut history = History { operations: ops, watches: vec![], initial_rev: 8632, initial_kvs };
    if with_expiry {
        applied.push(history.operations.len());
        history.add_lease_expiries();
    }
    Fixture { history, applied }
}

/// Every stream shows the expiry's deletion at 8653, after the last answered write: the search
/// must place the expiry there (leaving it out reached only 8652, and the streams' event at 8653
/// was then "not in the history", as in a snapshot-catch-up run on 2026-11-27).
#[test]
fn an_expiry_after_the_last_write_is_placed_where_the_streams_saw_it() {
    let f = expiry_after_the_last_write(true);
    let events = f.server_events();
    let last: Vec<String> = events.iter().filter(|(e, _)| e.rev == 8653).map(|(e, _)| e.to_string()).collect();
    assert_eq!(last, ["DELETE /r/k3 @8653 prev \"c5-797\"@8633"]);
    let o = f.watchers(&events).check();
    assert!(o.passed(), "{}", failures(&o));
}

/// The same streams against a history with no operation that could have deleted `/r/k3`: the
/// check fails.
#[test]
fn a_deletion_after_the_last_write_that_nothing_explains_fails() {
    let events = expiry_after_the_last_write(true).server_events();
    let o = expiry_after_the_last_write(false).watchers(&events).check();
    assert!(!o.passed(), "{}", failures(&o));
}
