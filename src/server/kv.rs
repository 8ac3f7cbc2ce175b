//! etcd's KV request semantics (`etcdserver/apply.go`) over any MVCC transaction: shaping range
//! results (sort, limit, filters), put with `prev_kv` / `ignore_value` / `ignore_lease`, delete,
//! and txn with compares evaluated up front, checks before any write, and nested branches.
//!
//! The same code serves the applier (on a write transaction) and read-only txns (on a read view),
//! so both answer identically.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::mvcc::txn::compare_holds;
use crate::mvcc::{KeyRange, KvRead, KvWrite, RangeOptions};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::KeyValue;

/// Answers whether a lease id exists, for puts that attach one.
pub trait LeaseLookup {
    fn exists(&self, id: i64) -> bool;
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

pub fn range(t: &impl KvRead, r: &RangeRequest) -> Result<RangeResponse> {
    let sort_order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let sort_target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let filtered =
        r.min_mod_revision != 0 || r.max_mod_revision != 0 || r.min_create_revision != 0 || r.max_create_revision != 0;
    // Sorting and filtering need every key; otherwise one extra tells whether there is `more`.
    let limit = if sort_order != SortOrder::None || filtered {
        0
    } else if r.limit > 0 {
        r.limit + 1
    } else {
        0
    };
    let opts = RangeOptions { limit, rev: r.revision, count_only: r.count_only };
    let res = t.range(&KeyRange::new(&r.key, &r.range_end), opts)?;
    let mut kvs = res.kvs;
    if filtered {
        kvs.retain(|kv| {
            (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
                && (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
                && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
                && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
        });
    }
    let order = match (sort_order, sort_target) {
        // mvcc returns keys ascending; any other target defaults to ascending order.
        (SortOrder::None, SortTarget::Key) => SortOrder::None,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    if order != SortOrder::None {
        sort(&mut kvs, sort_target, order == SortOrder::Descend);
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value.clear());
    }
    Ok(RangeResponse { header: header(res.rev), kvs, more, count: res.count })
}

fn sort(kvs: &mut [KeyValue], target: SortTarget, descend: bool) {
    kvs.sort_by(|a, b| {
        let ord = match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if descend {
            ord.reverse()
        } else {
            ord
        }
    });
}

fn current_kv(t: &impl KvRead, key: &[u8]) -> Result<Option<KeyValue>> {
    Ok(t.range(&KeyRange::Single(key.to_vec()), RangeOptions::default())?.kvs.into_iter().next())
}

/// A top-level put: the lease must exist before anything else is looked at.
pub fn put(t: &mut impl KvWrite, p: &PutRequest, leases: &dyn LeaseLookup) -> Result<PutResponse> {
    if p.lease != 0 && !leases.exists(p.lease) {
        return Err(Error::LeaseNotFound);
    }
    put_checked(t, p)
}

fn put_checked(t: &mut impl KvWrite, p: &PutRequest) -> Result<PutResponse> {
    let prev = if p.ignore_value || p.ignore_lease || p.prev_kv { current_kv(t, &p.key)? } else { None };
    if (p.ignore_value || p.ignore_lease) && prev.is_none() {
        return Err(Error::KeyNotFound);
    }
    let value = match (&prev, p.ignore_value) {
        (Some(kv), true) => kv.value.clone(),
        _ => p.value.clone(),
    };
    let lease = match (&prev, p.ignore_lease) {
        (Some(kv), true) => kv.lease,
        _ => p.lease,
    };
    let rev = t.put(&p.key, value, lease)?;
    Ok(PutResponse { header: header(rev), prev_kv: if p.prev_kv { prev } else { None } })
}

pub fn delete_range(t: &mut impl KvWrite, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
    let range = KeyRange::new(&d.key, &d.range_end);
    let prev_kvs = if d.prev_kv { t.range(&range, RangeOptions::default())?.kvs } else { Vec::new() };
    let deleted = t.delete_range(&range)?;
    let rev = if deleted != 0 || t.has_changes() { t.write_rev() } else { t.read_rev() };
    Ok(DeleteRangeResponse { header: header(rev), deleted, prev_kvs })
}

/// Whether a txn writes in either branch, at any depth. Read-only txns never go through raft.
pub fn txn_is_read_only(r: &TxnRequest) -> bool {
    r.success.iter().chain(&r.failure).all(|op| match &op.request {
        Some(Request::RequestRange(_)) | None => true,
        Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => false,
        Some(Request::RequestTxn(t)) => txn_is_read_only(t),
    })
}

/// Runs a txn: compares for the whole tree first (against the state before the txn), then the
/// checks that can fail it, then the chosen branches. Every check runs before the first write and
/// sees the state the txn's own earlier ops produce, so a txn is all or nothing: once the checks
/// pass, no op can fail.
pub fn txn(t: &mut impl KvWrite, r: &TxnRequest, leases: &dyn LeaseLookup) -> Result<TxnResponse> {
    let mut path = Vec::new();
    compare_path(t, r, &mut path);
    if !txn_is_read_only(r) {
        let mut written = Written::default();
        check_ops(t, r, &path, &mut |t, op| check_write(t, op, leases, &mut written))?;
    }
    check_ops(t, r, &path, &mut check_range)?;
    let mut path = path.as_slice();
    let mut resp = apply_txn(t, r, &mut path)?;
    resp.header = header(if t.has_changes() { t.write_rev() } else { t.read_rev() });
    Ok(resp)
}

fn branch(r: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &r.success
    } else {
        &r.failure
    }
}

fn compare_path(t: &impl KvRead, r: &TxnRequest, path: &mut Vec<bool>) {
    let ok = r.compare.iter().all(|c| match t.range(&KeyRange::new(&c.key, &c.range_end), RangeOptions::default()) {
        Ok(res) => compare_holds(c, &res.kvs),
        Err(_) => false,
    });
    path.push(ok);
    for op in branch(r, ok) {
        if let Some(Request::RequestTxn(nested)) = &op.request {
            compare_path(t, nested, path);
        }
    }
}

/// Walks the chosen branches as etcd's `checkRequests`; returns how many nested txns it passed.
fn check_ops<T: KvRead>(
    t: &T,
    r: &TxnRequest,
    path: &[bool],
    check: &mut dyn FnMut(&T, &RequestOp) -> Result<()>,
) -> Result<usize> {
    let mut count = 0;
    let mut rest = &path[1..];
    for op in branch(r, path[0]) {
        if let Some(Request::RequestTxn(nested)) = &op.request {
            let n = check_ops(t, nested, rest, check)?;
            count += n + 1;
            rest = &rest[n + 1..];
            continue;
        }
        check(t, op)?;
    }
    Ok(count)
}

/// What the txn's earlier ops did to which keys exist, for checking the ops after them. etcd
/// checks every op against the state before the txn, and panics when a put with `ignore_value`
/// follows a delete of its key in the same txn; here that put fails the whole txn instead.
#[derive(Default)]
struct Written {
    /// Keys put by earlier ops and not deleted since.
    put: HashSet<Vec<u8>>,
    /// Ranges deleted by earlier ops.
    deleted: Vec<KeyRange>,
}

impl Written {
    fn exists(&self, t: &impl KvRead, key: &[u8]) -> Result<bool> {
        if self.put.contains(key) {
            return Ok(true);
        }
        if self.deleted.iter().any(|r| r.contains(key)) {
            return Ok(false);
        }
        Ok(current_kv(t, key)?.is_some())
    }
}

fn check_write(t: &impl KvRead, op: &RequestOp, leases: &dyn LeaseLookup, written: &mut Written) -> Result<()> {
    match &op.request {
        Some(Request::RequestPut(p)) => {
            if (p.ignore_value || p.ignore_lease) && !written.exists(t, &p.key)? {
                return Err(Error::KeyNotFound);
            }
            if p.lease != 0 && !leases.exists(p.lease) {
                return Err(Error::LeaseNotFound);
            }
            written.put.insert(p.key.clone());
        }
        Some(Request::RequestDeleteRange(d)) => {
            let range = KeyRange::new(&d.key, &d.range_end);
            written.put.retain(|k| !range.contains(k));
            written.deleted.push(range);
        }
        _ => {}
    }
    Ok(())
}

fn check_range(t: &impl KvRead, op: &RequestOp) -> Result<()> {
    let Some(Request::RequestRange(r)) = &op.request else { return Ok(()) };
    match r.revision {
        0 => Ok(()),
        rev if rev > t.read_rev() => Err(Error::FutureRev),
        rev if rev < t.compact_rev() => Err(Error::Compacted),
        _ => Ok(()),
    }
}

fn apply_txn(t: &mut impl KvWrite, r: &TxnRequest, path: &mut &[bool]) -> Result<TxnResponse> {
    let succeeded = path[0];
    *path = &path[1..];
    let mut responses = Vec::new();
    for op in branch(r, succeeded) {
        let response = match &op.request {
            Some(Request::RequestRange(q)) => Response::ResponseRange(range(t, q)?),
            Some(Request::RequestPut(p)) => Response::ResponsePut(put_checked(t, p)?),
            Some(Request::RequestDeleteRange(d)) => Response::ResponseDeleteRange(delete_range(t, d)?),
            Some(Request::RequestTxn(nested)) => Response::ResponseTxn(apply_txn(t, nested, path)?),
            None => return Err(Error::KeyNotFound),
        };
        responses.push(ResponseOp { response: Some(response) });
    }
    Ok(TxnResponse { header: Some(ResponseHeader::default()), succeeded, responses })
}
