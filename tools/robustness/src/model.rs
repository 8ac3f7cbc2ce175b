//! A deterministic model of etcd's key-value state machine, enough for the suite's traffic: the
//! global revision, the compact revision, per key its value, create and mod revision, version
//! and lease, and the set of leases with the keys attached to each.
//!
//! Rules (etcd 3.4's `mvcc` and `lessor`):
//! - a txn takes the branch its compares pick; it bumps the revision once if it changed anything
//!   (a put always does, a delete only if a key existed), and every change carries that revision;
//! - a put with a lease that does not exist fails the whole txn (`lease not found`);
//! - a put detaches the key from its old lease and attaches it to the new one; a delete detaches;
//! - revoking a lease deletes its keys in one revision, in key order, and answers the revision
//!   after it (etcd's `LeaseRevokeResponse` header), which pins the revoke in the linearization;
//! - compaction to `rev` fails with `compacted` if `rev` ≤ the compact revision and with
//!   `future revision` if `rev` > the current one.
//!
//! A step answers the response the real server must give and the watch events it produced. Lease
//! expiry is a revoke the history adds with an unknown outcome after the TTL
//! (`History::add_lease_expiries`). Not modelled: ranges at old revisions.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Compare, EtcdError, Event, Kv, OpResult, Range, Request, Response, TxnOp};

#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct State {
    pub rev: i64,
    pub compact: i64,
    pub kvs: BTreeMap<String, Kv>,
    /// Lease id → attached keys.
    pub leases: BTreeMap<i64, BTreeSet<String>>,
}

impl State {
    pub fn new(rev: i64, kvs: BTreeMap<String, Kv>) -> State {
        State { rev, kvs, ..State::default() }
    }

    /// Applies `req`: the next state, the response etcd must give, and the events it emits.
    pub fn step(&self, req: &Request) -> (State, Response, Vec<Event>) {
        match req {
            Request::Range { range, .. } => {
                let (kvs, count) = self.range(range);
                (self.clone(), Response::Range { rev: self.rev, kvs, count }, Vec::new())
            }
            Request::Txn { compares, success, failure } => self.txn(compares, success, failure),
            Request::LeaseGrant { id, .. } => {
                if self.leases.contains_key(id) {
                    return (self.clone(), Response::Error(EtcdError::LeaseExists), Vec::new());
                }
                let mut s = self.clone();
                s.leases.insert(*id, BTreeSet::new());
                (s, Response::Ok, Vec::new())
            }
            Request::LeaseRevoke { id } => {
                let Some(keys) = self.leases.get(id) else {
                    return (self.clone(), Response::Error(EtcdError::LeaseNotFound), Vec::new());
                };
                let mut s = self.clone();
                let mut events = Vec::new();
                if !keys.is_empty() {
                    s.rev += 1;
                    for k in keys {
                        let prev = s.kvs.remove(k);
                        events.push(delete_event(k, s.rev, prev));
                    }
                }
                s.leases.remove(id);
                let rev = s.rev;
                (s, Response::Revoked { rev }, events)
            }
            Request::Compact { rev } => {
                if *rev <= self.compact {
                    (self.clone(), Response::Error(EtcdError::Compacted), Vec::new())
                } else if *rev > self.rev {
                    (self.clone(), Response::Error(EtcdError::FutureRev), Vec::new())
                } else {
                    let mut s = self.clone();
                    s.compact = *rev;
                    (s, Response::Ok, Vec::new())
                }
            }
        }
    }

    pub fn range(&self, r: &Range) -> (Vec<(String, Kv)>, i64) {
        let all: Vec<(String, Kv)> =
            self.kvs.iter().filter(|(k, _)| r.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let count = all.len() as i64;
        let kvs = if r.limit > 0 { all.into_iter().take(r.limit as usize).collect() } else { all };
        (kvs, count)
    }

    fn txn(&self, compares: &[Compare], success: &[TxnOp], failure: &[TxnOp]) -> (State, Response, Vec<Event>) {
        let succeeded = compares.iter().all(|c| match c {
            Compare::ModRevision(k, r) => self.kvs.get(k).map_or(0, |kv| kv.modified) == *r,
            Compare::Value(k, v) => self.kvs.get(k).is_some_and(|kv| &kv.value == v),
        });
        let ops = if succeeded { success } else { failure };
        let missing_lease = ops
            .iter()
            .any(|op| matches!(op, TxnOp::Put { lease, .. } if *lease != 0 && !self.leases.contains_key(lease)));
        if missing_lease {
            return (self.clone(), Response::Error(EtcdError::LeaseNotFound), Vec::new());
        }
        let mut s = self.clone();
        let new_rev = self.rev + 1;
        let mut events = Vec::new();
        let mut results = Vec::new();
        for op in ops {
            match op {
                TxnOp::Get(r) => {
                    let (kvs, count) = s.range(r);
                    results.push(OpResult::Get { kvs, count });
                }
                TxnOp::Put { key, value, lease } => {
                    let prev = s.kvs.get(key).cloned();
                    let kv = Kv {
                        value: value.clone(),
                        create: prev.as_ref().map_or(new_rev, |p| p.create),
                        modified: new_rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        lease: *lease,
                    };
                    s.detach(key, prev.as_ref());
                    if *lease != 0 {
                        s.leases.get_mut(lease).expect("lease checked above").insert(key.clone());
                    }
                    s.kvs.insert(key.clone(), kv.clone());
                    events.push(Event { rev: new_rev, delete: false, key: key.clone(), kv, prev });
                    results.push(OpResult::Put);
                }
                TxnOp::Delete { key } => {
                    let prev = s.kvs.remove(key);
                    s.detach(key, prev.as_ref());
                    let deleted = i64::from(prev.is_some());
                    if prev.is_some() {
                        events.push(delete_event(key, new_rev, prev));
                    }
                    results.push(OpResult::Delete { deleted });
                }
            }
        }
        if !events.is_empty() {
            s.rev = new_rev;
        }
        let rev = s.rev;
        (s, Response::Txn { rev, succeeded, results }, events)
    }

    fn detach(&mut self, key: &str, prev: Option<&Kv>) {
        if let Some(p) = prev.filter(|p| p.lease != 0) {
            if let Some(keys) = self.leases.get_mut(&p.lease) {
                keys.remove(key);
            }
        }
    }
}

fn delete_event(key: &str, rev: i64, prev: Option<Kv>) -> Event {
    let kv = Kv { value: String::new(), create: 0, modified: rev, version: 0, lease: 0 };
    Event { rev, delete: true, key: key.to_string(), kv, prev }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str, lease: i64) -> Request {
        Request::Txn {
            compares: vec![],
            success: vec![TxnOp::Put { key: k.into(), value: v.into(), lease }],
            failure: vec![],
        }
    }

    #[test]
    fn put_bumps_revision_and_version_keeps_create() {
        let s = State::new(1, BTreeMap::new());
        let (s, r, _) = s.step(&put("a", "1", 0));
        assert_eq!(r.revision(), Some(2));
        let (s, _, ev) = s.step(&put("a", "2", 0));
        assert_eq!(s.kvs["a"], Kv { value: "2".into(), create: 2, modified: 3, version: 2, lease: 0 });
        assert_eq!(ev[0].prev.as_ref().unwrap().value, "1");
    }

    #[test]
    fn delete_of_missing_key_changes_nothing() {
        let s = State::new(5, BTreeMap::new());
        let del = Request::Txn { compares: vec![], success: vec![TxnOp::Delete { key: "a".into() }], failure: vec![] };
        let (s2, r, ev) = s.step(&del);
        assert_eq!(s2, s);
        assert!(ev.is_empty());
        assert_eq!(r, Response::Txn { rev: 5, succeeded: true, results: vec![OpResult::Delete { deleted: 0 }] });
    }

    #[test]
    fn revoke_deletes_attached_keys_in_one_revision() {
        let s = State::new(1, BTreeMap::new());
        let (s, _, _) = s.step(&Request::LeaseGrant { id: 7, ttl: 600 });
        let (s, _, _) = s.step(&put("b", "1", 7));
        let (s, _, _) = s.step(&put("a", "1", 7));
        let (s, _, _) = s.step(&put("a", "2", 0)); // detaches a
        let (s, _, ev) = s.step(&Request::LeaseRevoke { id: 7 });
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].key.as_str(), ev[0].rev), ("b", 5));
        assert!(s.kvs.contains_key("a"));
        let (_, r, _) = s.step(&put("c", "1", 7));
        assert_eq!(r, Response::Error(EtcdError::LeaseNotFound));
    }

    #[test]
    fn compare_and_set_on_mod_revision() {
        let s = State::new(1, BTreeMap::new());
        let (s, _, _) = s.step(&put("a", "1", 0));
        let cas = |rev| Request::Txn {
            compares: vec![Compare::ModRevision("a".into(), rev)],
            success: vec![TxnOp::Put { key: "a".into(), value: "x".into(), lease: 0 }],
            failure: vec![TxnOp::Get(Range { key: "a".into(), prefix: false, limit: 0 })],
        };
        let (_, r, _) = s.step(&cas(1));
        assert!(matches!(r, Response::Txn { rev: 2, succeeded: false, .. }));
        let (_, r, _) = s.step(&cas(2));
        assert!(matches!(r, Response::Txn { rev: 3, succeeded: true, .. }));
    }
}
