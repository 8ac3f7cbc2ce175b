//! etcd's request validation (`etcdserver/api/v3rpc/key.go`), run before anything is proposed:
//! bad input gets etcd's error and changes nothing.

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

pub fn range(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

pub fn put(r: &PutRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(r: &DeleteRangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// Txns nested deeper than this are refused (`TxnTooDeep`; etcd 3.4 has no limit). A replicated
/// request must decode again on every member when it is applied, and prost refuses messages
/// nested more than 100 deep: a txn the client API could still decode, wrapped in its raft entry,
/// would otherwise fail to decode at apply and stop every member, on every restart too.
pub const MAX_TXN_DEPTH: usize = 32;

/// Checks a txn: operation counts against `max_ops`, nesting against [`MAX_TXN_DEPTH`], every
/// nested request, and that no key is both put twice or put and deleted in one branch.
pub fn txn(r: &TxnRequest, max_ops: usize) -> Result<()> {
    if depth(r) > MAX_TXN_DEPTH {
        return Err(Error::TxnTooDeep);
    }
    txn_ops(r, max_ops)?;
    intervals(&r.success)?;
    intervals(&r.failure)?;
    Ok(())
}

fn txn_ops(r: &TxnRequest, max_ops: usize) -> Result<()> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_ops {
        return Err(Error::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        request_op(op, max_ops - opc)?;
    }
    Ok(())
}

/// How many txns are nested in `r`, itself included.
fn depth(r: &TxnRequest) -> usize {
    let nested = r.success.iter().chain(&r.failure).filter_map(|op| match &op.request {
        Some(Request::RequestTxn(t)) => Some(depth(t)),
        _ => None,
    });
    1 + nested.max().unwrap_or(0)
}

fn request_op(op: &RequestOp, max_ops: usize) -> Result<()> {
    match &op.request {
        Some(Request::RequestRange(r)) => range(r),
        Some(Request::RequestPut(r)) => put(r),
        Some(Request::RequestDeleteRange(r)) => delete_range(r),
        Some(Request::RequestTxn(r)) => txn_ops(r, max_ops),
        None => Err(Error::KeyNotFound),
    }
}

/// A deleted interval as etcd's `adt` sees it: `[start, end)`, a point when `end` is empty. An
/// empty bound compares above every key, and `"\0"` is an ordinary byte string — so from-key
/// deletes (`end == "\0"`) overlap nothing, exactly as in etcd.
#[derive(Clone)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn contains(&self, k: &[u8]) -> bool {
        match &self.end {
            None => self.start == k,
            Some(end) => self.start.as_slice() <= k && (end.is_empty() || k < end.as_slice()),
        }
    }
}

fn intervals(ops: &[RequestOp]) -> Result<(Vec<Vec<u8>>, Vec<Interval>)> {
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Interval {
                start: d.key.clone(),
                end: if d.range_end.is_empty() { None } else { Some(d.range_end.clone()) },
            }),
            _ => None,
        })
        .collect();
    let hits = |dels: &[Interval], k: &[u8]| dels.iter().any(|d| d.contains(k));
    let mut puts: Vec<Vec<u8>> = Vec::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else { continue };
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || hits(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            puts.push(k.clone());
        }
        for k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || hits(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            puts.push(k.clone());
        }
        dels.extend(dels_then.into_iter().chain(dels_else));
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else { continue };
        if puts.contains(&p.key) || hits(&dels, &p.key) {
            return Err(Error::DuplicateKey);
        }
        puts.push(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(k: &str) -> RequestOp {
        RequestOp { request: Some(Request::RequestPut(PutRequest { key: k.into(), ..Default::default() })) }
    }

    fn del_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    fn txn_op(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp { request: Some(Request::RequestTxn(TxnRequest { success, failure, ..Default::default() })) }
    }

    fn check(success: Vec<RequestOp>) -> Result<()> {
        txn(&TxnRequest { success, ..Default::default() }, 128)
    }

    #[test]
    fn duplicate_keys() {
        assert_eq!(check(vec![put_op("a"), put_op("b")]), Ok(()));
        assert_eq!(check(vec![put_op("a"), put_op("a")]), Err(Error::DuplicateKey));
        assert_eq!(check(vec![put_op("a"), del_op("a", "")]), Err(Error::DuplicateKey));
        assert_eq!(check(vec![put_op("b"), del_op("a", "c")]), Err(Error::DuplicateKey));
        assert_eq!(check(vec![put_op("c"), del_op("a", "c")]), Ok(()));
        assert_eq!(check(vec![put_op("z"), del_op("a", "\0")]), Ok(()), "etcd does not see from-key overlaps");
        // The same key in both branches of a nested txn is fine; twice in one branch is not.
        assert_eq!(check(vec![txn_op(vec![put_op("a")], vec![put_op("a")])]), Ok(()));
        assert_eq!(check(vec![txn_op(vec![put_op("a")], vec![]), put_op("a")]), Err(Error::DuplicateKey));
        assert_eq!(check(vec![txn_op(vec![del_op("a", "")], vec![]), put_op("a")]), Err(Error::DuplicateKey));
    }

    #[test]
    fn limits_and_empty_keys() {
        let many: Vec<RequestOp> = (0..129).map(|i| put_op(&format!("k{i}"))).collect();
        assert_eq!(check(many), Err(Error::TooManyOps));
        let nest = |levels: usize| {
            let mut t = TxnRequest::default();
            for _ in 1..levels {
                let op = RequestOp { request: Some(Request::RequestTxn(t)) };
                t = TxnRequest { success: vec![op], ..Default::default() };
            }
            t
        };
        assert_eq!(txn(&nest(MAX_TXN_DEPTH), 128), Ok(()));
        assert_eq!(txn(&nest(MAX_TXN_DEPTH + 1), 128), Err(Error::TxnTooDeep));
        let ok: Vec<RequestOp> = (0..128).map(|i| put_op(&format!("k{i}"))).collect();
        assert_eq!(check(ok), Ok(()));
        assert_eq!(check(vec![put_op("")]), Err(Error::EmptyKey));
        assert_eq!(check(vec![RequestOp { request: None }]), Err(Error::KeyNotFound));
        let put_ignore =
            PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ignore_value: true, ..Default::default() };
        assert_eq!(put(&put_ignore), Err(Error::ValueProvided));
        let lease_ignore = PutRequest { key: b"k".to_vec(), lease: 5, ignore_lease: true, ..Default::default() };
        assert_eq!(put(&lease_ignore), Err(Error::LeaseProvided));
    }
}
