//! Hand-written histories: linearizable ones must pass, broken ones must be rejected.

use super::*;
use crate::history::{Compare, Kv, Operation, Range, TxnOp};

fn put(k: &str, v: &str) -> Request {
    Request::Txn {
        compares: vec![],
        success: vec![TxnOp::Put { key: k.into(), value: v.into(), lease: 0 }],
        failure: vec![],
    }
}

fn put_ok(rev: i64) -> Response {
    Response::Txn { rev, succeeded: true, results: vec![OpResult::Put] }
}

fn get(k: &str) -> Request {
    Request::Range { range: Range { key: k.into(), prefix: false, limit: 0 }, serializable: false }
}

fn kv(v: &str, create: i64, modified: i64, version: i64) -> Kv {
    Kv { value: v.into(), create, modified, version, lease: 0 }
}

fn got(rev: i64, kvs: &[(&str, Kv)]) -> Response {
    Response::Range { rev, kvs: kvs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(), count: kvs.len() as i64 }
}

fn op(client: usize, call: u64, ret: Option<u64>, request: Request, response: Option<Response>) -> Operation {
    Operation { client, call, ret, request, response, error: None }
}

fn history(ops: Vec<Operation>) -> History {
    History { operations: ops, initial_rev: 1, ..History::default() }
}

fn verdict(ops: Vec<Operation>) -> Verdict {
    check(&history(ops), Duration::from_secs(5)).verdict
}

fn assert_linearizable(ops: Vec<Operation>) {
    let v = verdict(ops);
    assert!(matches!(v, Verdict::Linearizable { .. }), "expected linearizable, got {v:?}");
}

fn assert_rejected(ops: Vec<Operation>) -> String {
    match verdict(ops) {
        Verdict::NotLinearizable { report } => report,
        v => panic!("expected a rejection, got {v:?}"),
    }
}

#[test]
fn sequential_put_then_read_passes() {
    assert_linearizable(vec![
        op(0, 0, Some(10), put("a", "1"), Some(put_ok(2))),
        op(1, 20, Some(30), get("a"), Some(got(2, &[("a", kv("1", 2, 2, 1))]))),
    ]);
}

#[test]
fn read_concurrent_with_put_may_see_old_or_new() {
    assert_linearizable(vec![
        op(0, 0, Some(100), put("a", "1"), Some(put_ok(2))),
        op(1, 10, Some(20), get("a"), Some(got(1, &[]))),
        op(2, 30, Some(40), get("a"), Some(got(2, &[("a", kv("1", 2, 2, 1))]))),
    ]);
}

#[test]
fn stale_read_after_acknowledged_put_is_rejected() {
    let report = assert_rejected(vec![
        op(0, 0, Some(10), put("a", "1"), Some(put_ok(2))),
        op(1, 20, Some(30), get("a"), Some(got(1, &[]))),
    ]);
    assert!(report.contains("range a"), "{report}");
    assert!(report.contains("model: rev 2"), "{report}");
}

#[test]
fn read_going_back_in_time_is_rejected() {
    // Both puts concurrent with everything, but a later read sees an older state than an earlier one.
    assert_rejected(vec![
        op(0, 0, Some(1000), put("a", "1"), Some(put_ok(2))),
        op(1, 10, Some(20), get("a"), Some(got(2, &[("a", kv("1", 2, 2, 1))]))),
        op(2, 30, Some(40), get("a"), Some(got(1, &[]))),
    ]);
}

#[test]
fn lost_acknowledged_write_is_rejected() {
    assert_rejected(vec![
        op(0, 0, Some(10), put("a", "1"), Some(put_ok(2))),
        op(0, 20, Some(30), put("b", "1"), Some(put_ok(3))),
        op(
            1,
            40,
            Some(50),
            Request::Range { range: Range { key: "".into(), prefix: true, limit: 0 }, serializable: false },
            Some(got(3, &[("b", kv("1", 3, 3, 1))])),
        ),
    ]);
}

#[test]
fn two_writes_with_one_revision_are_rejected() {
    assert_rejected(vec![
        op(0, 0, Some(10), put("a", "1"), Some(put_ok(2))),
        op(1, 20, Some(30), put("b", "1"), Some(put_ok(2))),
    ]);
}

#[test]
fn both_compare_and_sets_on_one_revision_cannot_succeed() {
    let cas = |v: &str| Request::Txn {
        compares: vec![Compare::ModRevision("a".into(), 2)],
        success: vec![TxnOp::Put { key: "a".into(), value: v.into(), lease: 0 }],
        failure: vec![TxnOp::Get(Range { key: "a".into(), prefix: false, limit: 0 })],
    };
    assert_rejected(vec![
        op(0, 0, Some(10), put("a", "0"), Some(put_ok(2))),
        op(1, 20, Some(50), cas("x"), Some(put_ok(3))),
        op(2, 21, Some(51), cas("y"), Some(put_ok(4))),
    ]);
}

#[test]
fn unknown_outcome_put_may_or_may_not_apply() {
    // Not applied: a later read sees nothing.
    assert_linearizable(vec![op(0, 0, None, put("a", "1"), None), op(1, 20, Some(30), get("a"), Some(got(1, &[])))]);
    // Applied long after its invoke: a read sees it.
    assert_linearizable(vec![
        op(0, 0, None, put("a", "1"), None),
        op(1, 20, Some(30), get("a"), Some(got(1, &[]))),
        op(1, 40, Some(50), get("a"), Some(got(2, &[("a", kv("1", 2, 2, 1))]))),
    ]);
}

#[test]
fn value_nobody_wrote_is_rejected() {
    assert_rejected(vec![
        op(0, 0, None, put("a", "1"), None),
        op(1, 20, Some(30), get("a"), Some(got(2, &[("a", kv("2", 2, 2, 1))]))),
    ]);
}

#[test]
fn unknown_put_seen_then_unseen_is_rejected() {
    assert_rejected(vec![
        op(0, 0, None, put("a", "1"), None),
        op(1, 20, Some(30), get("a"), Some(got(2, &[("a", kv("1", 2, 2, 1))]))),
        op(1, 40, Some(50), get("a"), Some(got(2, &[]))),
    ]);
}

#[test]
fn key_of_revoked_lease_must_be_gone() {
    let put_lease = Request::Txn {
        compares: vec![],
        success: vec![TxnOp::Put { key: "a".into(), value: "1".into(), lease: 9 }],
        failure: vec![],
    };
    let base = || {
        vec![
            op(0, 0, Some(10), Request::LeaseGrant { id: 9, ttl: 600 }, Some(Response::Ok)),
            op(0, 20, Some(30), put_lease.clone(), Some(put_ok(2))),
            op(0, 40, Some(50), Request::LeaseRevoke { id: 9 }, Some(Response::Revoked { rev: 3 })),
        ]
    };
    let mut ok = base();
    ok.push(op(1, 60, Some(70), get("a"), Some(got(3, &[]))));
    assert_linearizable(ok);
    let mut bad = base();
    bad.push(op(1, 60, Some(70), get("a"), Some(got(2, &[("a", kv("1", 2, 2, 1))]))));
    assert_rejected(bad);
}

/// The robustness run's "wrong watch revision" reports: two concurrent revokes (or a revoke and a
/// delete) whose keys were deleted at consecutive revisions. The revoke's answer carries its
/// revision, so the linearization, and the events the watch validators compare with, must follow
/// the server's order and not the order of the calls.
#[test]
fn concurrent_revokes_are_ordered_by_their_revisions() {
    let put_lease = |k: &str, lease: i64| Request::Txn {
        compares: vec![],
        success: vec![TxnOp::Put { key: k.into(), value: format!("v-{k}"), lease }],
        failure: vec![],
    };
    let del =
        |k: &str| Request::Txn { compares: vec![], success: vec![TxnOp::Delete { key: k.into() }], failure: vec![] };
    let del_ok = |rev| Response::Txn { rev, succeeded: true, results: vec![OpResult::Delete { deleted: 1 }] };
    let ops = vec![
        op(0, 0, Some(10), Request::LeaseGrant { id: 1, ttl: 600 }, Some(Response::Ok)),
        op(0, 11, Some(20), Request::LeaseGrant { id: 2, ttl: 600 }, Some(Response::Ok)),
        op(0, 21, Some(30), put_lease("/r/k3", 1), Some(put_ok(2))),
        op(0, 31, Some(40), put_lease("/r/k8", 2), Some(put_ok(3))),
        op(0, 41, Some(50), put("/r/k5", "x"), Some(put_ok(4))),
        // called first, applied second
        op(1, 60, Some(90), Request::LeaseRevoke { id: 1 }, Some(Response::Revoked { rev: 6 })),
        op(2, 61, Some(90), Request::LeaseRevoke { id: 2 }, Some(Response::Revoked { rev: 5 })),
        // a delete racing a revoke
        op(1, 100, Some(130), del("/r/k5"), Some(del_ok(8))),
        op(2, 101, Some(130), put_lease("/r/k9", 0), Some(put_ok(7))),
    ];
    let h = history(ops.clone());
    let checked = check(&h, Duration::from_secs(5));
    let Verdict::Linearizable { order } = &checked.verdict else { panic!("rejected: {:?}", checked.verdict) };
    let replay = crate::replay::Replay::new(&checked.entries, order, &checked.initial);
    let events: Vec<String> = replay.events.iter().map(|e| format!("{}@{}", e.key, e.rev)).collect();
    assert_eq!(events, ["/r/k3@2", "/r/k8@3", "/r/k5@4", "/r/k8@5", "/r/k3@6", "/r/k9@7", "/r/k5@8"]);
    // The revisions are checked: swapping them is not linearizable with the puts above.
    let mut bad = ops;
    bad[5].response = Some(Response::Revoked { rev: 4 });
    assert_rejected(bad);
}

#[test]
fn many_concurrent_clients_stay_fast() {
    // 2,000 sequential puts by 8 clients with overlapping intervals, each read back.
    let mut ops = Vec::new();
    for i in 0..2000u64 {
        let rev = i as i64 + 2;
        let key = format!("k{}", i % 10);
        ops.push(op((i % 8) as usize, i * 10, Some(i * 10 + 35), put(&key, &format!("v{i}")), Some(put_ok(rev))));
    }
    let started = Instant::now();
    assert_linearizable(ops);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Lease expiry: a key on a lease with a 2 s TTL may vanish (one revision, no client revoke) once
/// the TTL has passed since the grant was invoked, never before.
#[test]
fn key_of_expired_lease_may_vanish_after_its_ttl_only() {
    const SECOND: u64 = 1_000_000_000;
    let put_lease = Request::Txn {
        compares: vec![],
        success: vec![TxnOp::Put { key: "a".into(), value: "1".into(), lease: 9 }],
        failure: vec![],
    };
    let with_read_at = |t: u64| {
        let mut h = history(vec![
            op(0, 0, Some(10), Request::LeaseGrant { id: 9, ttl: 2 }, Some(Response::Ok)),
            op(0, 20, Some(30), put_lease.clone(), Some(put_ok(2))),
            op(1, t, Some(t + 10), get("a"), Some(got(3, &[]))),
        ]);
        h.add_lease_expiries();
        check(&h, Duration::from_secs(5)).verdict
    };
    let after = with_read_at(3 * SECOND);
    assert!(matches!(after, Verdict::Linearizable { .. }), "after the TTL: {after:?}");
    let before = with_read_at(SECOND);
    assert!(matches!(before, Verdict::NotLinearizable { .. }), "before the TTL: {before:?}");
    // Without the expiry in the history the vanished key has no explanation.
    let mut h = history(vec![
        op(0, 0, Some(10), Request::LeaseGrant { id: 9, ttl: 2 }, Some(Response::Ok)),
        op(0, 20, Some(30), put_lease.clone(), Some(put_ok(2))),
        op(1, 3 * SECOND, Some(3 * SECOND + 10), get("a"), Some(got(3, &[]))),
    ]);
    assert!(matches!(check(&h, Duration::from_secs(5)).verdict, Verdict::NotLinearizable { .. }));
    // A lease the client revoked first expires as a no-op.
    h.operations.push(op(0, 40, Some(50), Request::LeaseRevoke { id: 9 }, Some(Response::Revoked { rev: 3 })));
    h.add_lease_expiries();
    assert!(matches!(check(&h, Duration::from_secs(5)).verdict, Verdict::Linearizable { .. }));
}
