//! Distributed coordination over the KV, Lease and Watch APIs: what etcd's Go `concurrency`
//! package offers, with the same key layout so both interoperate, plus fencing, a reader-writer
//! lock and a counting semaphore.
//!
//! # Model
//!
//! A [`Session`] is a lease kept alive in the background. Every recipe writes one *ownership
//! key* attached to that lease, named `<prefix>/<lease id in hex>` exactly as Go's
//! `concurrency.Mutex` and `concurrency.Election` do:
//!
//! ```text
//! locks/orders/694d7a2c3b1e0a04   create_revision 17   <- owner (lowest create revision)
//! locks/orders/694d7a2c3b1e0a11   create_revision 21   <- waits for the delete of ...0a04 only
//! locks/orders/694d7a2c3b1e0a2f   create_revision 30   <- waits for the delete of ...0a11 only
//! ```
//!
//! Waiters queue in create-revision order and each watches only its predecessor's key (no
//! thundering herd). Ownership ends when the key is deleted: by unlock / resign, or by the server
//! when the lease expires. So `etcdctl lock`, `etcdctl elect`, Go clients and this crate exclude
//! each other on the same name.
//!
//! # Fencing
//!
//! A holder can be paused (GC, swap, SIGSTOP) past its TTL, lose the lock and wake up believing it
//! still holds it — the weakness Jepsen found in etcd's lock. The ownership key's create revision
//! is a *fencing token* that changes with every acquisition; [`Fence::txn`] runs a transaction only
//! if `create_revision(ownership key) == token`, so a stale holder's writes are refused by the
//! server ([`Error::LockLost`]) instead of corrupting data.
//!
//! # Not done
//!
//! - Cancelling a `lock()` / `campaign()` future leaves its key queued until `unlock()` /
//!   `resign()` or the session ends (Go deletes it on context cancel).
//! - The semaphore's waiters watch the whole prefix for deletes (a release wakes every waiter of
//!   that semaphore); permits are not re-checked if callers disagree on the permit count.
//! - STM offers serializable and repeatable-read isolation, not Go's `SerializableSnapshot` or
//!   `ReadCommitted`.
//!
//! [`Error::LockLost`]: crate::Error::LockLost

mod election;
mod mutex;
mod rwlock;
mod semaphore;
mod session;
mod stm;

pub use election::{Election, Leader, Observer};
pub use mutex::Mutex;
pub use rwlock::RwLock;
pub use semaphore::Semaphore;
pub use session::{Session, DEFAULT_TTL};
pub(crate) use stm::backoff;
pub use stm::{Isolation, Stm, StmTxn};

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KeyValue, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, TxnResponse, WatchOptions,
};

use crate::error::{Error, Result};
use session::Handle;

/// A fencing token and the key it guards: writes through [`Fence::txn`] apply only while the key
/// still has the create revision it had when the lock (or claim) was acquired.
#[derive(Clone)]
pub struct Fence {
    client: Client,
    key: Vec<u8>,
    token: i64,
}

impl Fence {
    pub(crate) fn new(client: Client, key: impl Into<Vec<u8>>, token: i64) -> Fence {
        Fence { client, key: key.into(), token }
    }

    /// The create revision of the ownership key; strictly increases with every acquisition.
    pub fn token(&self) -> i64 {
        self.token
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The compare that holds while the lock is held; add it to your own transactions.
    pub fn compare(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.token)
    }

    /// Runs `txn` (with its own compares and branches) nested inside
    /// `If(create_revision(key) == token)`, and returns its response; [`Error::LockLost`] if the
    /// lock was lost, in which case nothing of `txn` was applied.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let guarded = Txn::new().when([self.compare()]).and_then([TxnOp::txn(txn)]);
        let resp = self.client.kv_client().txn(guarded).await?;
        if !resp.succeeded() {
            return Err(Error::LockLost { token: self.token });
        }
        match resp.op_responses().into_iter().next() {
            Some(TxnOpResponse::Txn(inner)) => Ok(inner),
            _ => Err(Error::LockLost { token: self.token }),
        }
    }
}

/// Writes the ownership key `key` with the session's lease unless it exists; returns its create
/// revision and the header revision of the write (or read).
async fn acquire_key(h: &Handle, key: &str, value: &[u8]) -> Result<(i64, i64)> {
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, value, Some(PutOptions::new().with_lease(h.lease)))])
        .or_else([TxnOp::get(key, None)]);
    let resp = h.client.kv_client().txn(txn).await?;
    let header_rev = resp.header().map_or(0, |hd| hd.revision());
    if resp.succeeded() {
        return Ok((header_rev, header_rev));
    }
    match resp.op_responses().into_iter().next() {
        Some(TxnOpResponse::Get(g)) if !g.kvs().is_empty() => Ok((g.kvs()[0].create_revision(), header_rev)),
        _ => Err(Error::SessionExpired), // deleted between compare and get cannot happen in one txn
    }
}

/// The key in `[prefix, prefix_end)` with the lowest create revision.
async fn first_created(client: &Client, prefix: &str) -> Result<(Option<KeyValue>, i64)> {
    let opts = GetOptions::new().with_prefix().with_sort(SortTarget::Create, SortOrder::Ascend).with_limit(1);
    let mut resp = client.kv_client().get(prefix, Some(opts)).await?;
    let rev = resp.header().map_or(0, |h| h.revision());
    Ok((resp.take_kvs().into_iter().next(), rev))
}

/// Waits until `key`, seen at header revision `rev`, is deleted.
async fn wait_delete(client: &Client, key: &[u8], rev: i64) -> Result<()> {
    let opts = WatchOptions::new().with_start_revision(rev + 1);
    let mut stream = client.watch_client().watch(key, Some(opts)).await?;
    while let Some(resp) = stream.message().await? {
        if resp.canceled() {
            // Compacted past `rev`: the caller re-reads and decides again.
            return Ok(());
        }
        if resp.events().iter().any(|e| e.event_type() == EventType::Delete) {
            return Ok(());
        }
    }
    Ok(())
}

/// Waits until no key under `prefix` has a create revision at most `max_create_rev`: each round
/// waits for the delete of the latest such key (the direct predecessor), as Go's `waitDeletes`.
async fn wait_deletes(h: &Handle, prefix: &str, max_create_rev: i64) -> Result<()> {
    loop {
        let opts = GetOptions::new()
            .with_prefix()
            .with_max_create_revision(max_create_rev)
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_limit(1);
        let resp = h.client.kv_client().get(prefix, Some(opts)).await?;
        let Some(kv) = resp.kvs().first() else { return Ok(()) };
        let rev = resp.header().map_or(0, |hd| hd.revision());
        tokio::select! {
            r = wait_delete(&h.client, kv.key(), rev) => r?,
            _ = h.lost() => return Err(Error::SessionExpired),
        }
    }
}

/// After waiting: the ownership key must still exist with the same create revision, or the
/// session expired while we waited.
async fn still_owned(h: &Handle, key: &str, rev: i64) -> Result<()> {
    let resp = h.client.kv_client().get(key, None).await?;
    match resp.kvs().first() {
        Some(kv) if kv.create_revision() == rev => Ok(()),
        _ => Err(Error::SessionExpired),
    }
}
