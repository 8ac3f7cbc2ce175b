//! etcd's Lock and Election services, built exactly as etcd 3.4 builds them (`v3lock`,
//! `v3election` over `clientv3/concurrency`), but on this server's own calls — `txn`, `range`,
//! `delete_range`, a watch session — instead of a client dialling its own server.
//!
//! ```text
//!  lock "name"    ──► key "name/<lease hex>" put with the lease if absent (one txn)
//!                     the oldest key of the prefix (lowest create revision) holds the lock;
//!                     the others wait for every older key of the prefix to be deleted
//!  campaign       ──► the same, with a value; the oldest key is the leader
//!  observe        ──► the oldest key, then its changes, until it is deleted; again
//! ```
//!
//! The key layout is etcd's `concurrency` package's, so locks and elections interoperate with
//! `etcdctl lock`/`elect` and every etcd client library. Sessions are etcd's too: a request names
//! a lease (0: a lease of 60 s is granted, as `concurrency.NewSession` does, and never kept
//! alive); the holder keeps its own lease alive.
//!
//! A waiter whose client went away (its request future dropped) removes its key, as etcd's
//! `Unlock`/`Resign` on a cancelled context do, so it never blocks the queue.
//!
//! Not done: etcd returns errors of the inner calls with gRPC code `Unknown`; MetaStore keeps
//! each error's own code (messages are etcd's).

mod election;
mod lock;

use std::sync::Arc;

use super::{RequestContext, Server};
use crate::error::{Error, Result};
use crate::mvcc::prefix_end;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest,
    TxnResponse, WatchCreateRequest, WatchRequest, WatchResponse,
};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::KeyValue;

/// TTL of the lease granted for a request that names none (`concurrency`'s default session TTL).
const DEFAULT_SESSION_TTL: i64 = 60;

/// `name/<lease in hex>`, as `fmt.Sprintf("%s%x", prefix, lease)` writes it.
fn session_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 { format!("-{:x}", lease.unsigned_abs()) } else { format!("{lease:x}") };
    [prefix, hex.as_bytes()].concat()
}

fn prefix_of(name: &[u8]) -> Vec<u8> {
    [name, b"/"].concat()
}

fn create_rev_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
        ..Default::default()
    }
}

fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    let put = PutRequest { key: key.to_vec(), value: value.to_vec(), lease, ..Default::default() };
    RequestOp { request: Some(Op::RequestPut(put)) }
}

fn get_op(range: RangeRequest) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(range)) }
}

fn get_key(key: &[u8]) -> RangeRequest {
    RangeRequest { key: key.to_vec(), ..Default::default() }
}

/// The oldest key of `prefix` (`clientv3.WithFirstCreate`).
fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        limit: 1,
        ..Default::default()
    }
}

/// The first key-value of the `index`th response of a txn, if that response was a range.
fn range_kv(resp: &TxnResponse, index: usize) -> Option<&KeyValue> {
    use crate::proto::etcdserverpb::response_op::Response;
    match resp.responses.get(index)?.response.as_ref()? {
        Response::ResponseRange(r) => r.kvs.first(),
        _ => None,
    }
}

impl Server {
    /// The lease a session uses: the one given, or a fresh one of [`DEFAULT_SESSION_TTL`].
    async fn session_lease(&self, ctx: &RequestContext, lease: i64) -> Result<i64> {
        if lease != 0 {
            return Ok(lease);
        }
        let grant = crate::proto::etcdserverpb::LeaseGrantRequest { ttl: DEFAULT_SESSION_TTL, id: 0 };
        Ok(self.lease_grant(ctx, grant).await?.id)
    }

    async fn txn_if(
        &self,
        ctx: &RequestContext,
        cmp: Compare,
        success: Vec<RequestOp>,
        failure: Vec<RequestOp>,
    ) -> Result<TxnResponse> {
        self.txn(ctx, TxnRequest { compare: vec![cmp], success, failure }).await
    }

    /// Deletes `key`, answering the header of the deletion.
    async fn delete_key(&self, ctx: &RequestContext, key: &[u8]) -> Result<Option<ResponseHeader>> {
        let d = DeleteRangeRequest { key: key.to_vec(), ..Default::default() };
        Ok(self.delete_range(ctx, d).await?.header)
    }

    /// Waits until no key of `prefix` created at or below `max_create_rev` is left
    /// (`concurrency.waitDeletes`); answers the header of the last read.
    async fn wait_deletes(
        self: &Arc<Self>,
        ctx: &RequestContext,
        prefix: &[u8],
        max_create_rev: i64,
    ) -> Result<Option<ResponseHeader>> {
        loop {
            let newest_older = RangeRequest {
                sort_order: SortOrder::Descend as i32,
                max_create_revision: max_create_rev,
                ..first_created(prefix)
            };
            let resp: RangeResponse = self.range(ctx, &newest_older).await?;
            let Some(kv) = resp.kvs.first() else { return Ok(resp.header) };
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            self.wait_delete(ctx, &kv.key, rev).await?;
        }
    }

    /// Waits for a deletion of `key` at or after revision `rev` (`concurrency.waitDelete`).
    async fn wait_delete(self: &Arc<Self>, ctx: &RequestContext, key: &[u8], rev: i64) -> Result<()> {
        let mut watch = self.watch_from(ctx, key.to_vec(), Vec::new(), rev).await?;
        while let Some(resp) = watch.next().await? {
            if resp.events.iter().any(|ev| ev.r#type == EventType::Delete as i32) {
                return Ok(());
            }
        }
        Err(Error::Internal("lost watcher waiting for delete".into()))
    }

    /// One watch of `[key, range_end)` from `rev`, on a session of its own.
    async fn watch_from(
        self: &Arc<Self>,
        ctx: &RequestContext,
        key: Vec<u8>,
        range_end: Vec<u8>,
        rev: i64,
    ) -> Result<Watch> {
        let (mut session, rx) = self.open_watch(ctx, self.cfg.max_request_bytes);
        let create = WatchCreateRequest { key, range_end, start_revision: rev, ..Default::default() };
        if !session.handle(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await {
            return Err(Error::Stopped);
        }
        Ok(Watch { _session: session, rx })
    }
}

/// A watch used internally; dropping it ends the watch.
struct Watch {
    _session: super::WatchSession,
    rx: tokio::sync::mpsc::Receiver<WatchResponse>,
}

impl Watch {
    /// The next response with events; `None` once the watch ended. A watch canceled because its
    /// start revision was compacted answers `Compacted` (`WatchResponse.Err()`).
    async fn next(&mut self) -> Result<Option<WatchResponse>> {
        while let Some(resp) = self.rx.recv().await {
            if resp.canceled {
                return if resp.compact_revision != 0 { Err(Error::Compacted) } else { Ok(None) };
            }
            if !resp.events.is_empty() {
                return Ok(Some(resp));
            }
        }
        Ok(None)
    }
}

/// Runs `cleanup` in the background if dropped while armed: a waiting request whose client went
/// away must not leave its key queued.
struct Cleanup<F: FnOnce() + Send> {
    cleanup: Option<F>,
}

impl<F: FnOnce() + Send> Cleanup<F> {
    fn new(cleanup: F) -> Self {
        Self { cleanup: Some(cleanup) }
    }

    fn disarm(&mut self) {
        self.cleanup = None;
    }
}

impl<F: FnOnce() + Send> Drop for Cleanup<F> {
    fn drop(&mut self) {
        if let Some(f) = self.cleanup.take() {
            f();
        }
    }
}

/// A cleanup that deletes `key` in the background.
fn delete_on_drop(server: &Arc<Server>, ctx: &RequestContext, key: &[u8]) -> Cleanup<impl FnOnce() + Send> {
    let (server, ctx, key) = (server.clone(), ctx.clone(), key.to_vec());
    Cleanup::new(move || {
        tokio::spawn(async move {
            if let Err(e) = server.delete_key(&ctx, &key).await {
                tracing::warn!(error = %e, "could not remove the key of an abandoned lock or campaign");
            }
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_are_go_hex() {
        assert_eq!(session_key(b"l/", 0x694d7e1c3e1b1a0b), b"l/694d7e1c3e1b1a0b");
        assert_eq!(session_key(b"l/", -1), b"l/-1");
        assert_eq!(prefix_of(b"name"), b"name/");
    }
}
