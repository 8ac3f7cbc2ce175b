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
            op(0, 40, Some(50), Request::LeaseRevoke { id: 9 }, Some(Response::Ok)),
        ]
    };
    let mut ok = base();
    ok.push(op(1, 60, Some(70), get("a"), Some(got(3, &[]))));
    assert_linearizable(ok);
    let mut bad = base();
    bad.push(op(1, 60, Some(70), get("a"), Some(got(2, &[("a", kv("1", 2, 2, 1))]))));
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
