//! Alarms and the space quota, as etcd 3.4 has them (`etcdserver/quota.go`, `apply.go`).
//!
//! ```text
//!  Put / Txn with puts / LeaseGrant ──► quota: engine size + cost >= quota?
//!        │ yes: propose ACTIVATE NOSPACE, answer `database space exceeded`
//!        ▼
//!  applier ──► NOSPACE active: refuse Put, Txn with puts, LeaseGrant (reads, deletes go on)
//!              CORRUPT active: refuse every write
//! ```
//!
//! Alarms are replicated: activating and deactivating go through raft (etcdctl's `alarm list`
//! too, as in etcd), the `alarm` table holds one row per (member, alarm) — the key is the
//! marshalled `AlarmMember`, as etcd's `alarm` bucket — and raft snapshots carry it. An alarm
//! stays until `alarm disarm`. The cost of a request is etcd's: 256 bytes + key + value per put,
//! the larger branch of a txn, 64 bytes per lease.
//!
//! The store's size is asked of RocksDB (a property read per replicated table, under RocksDB's
//! mutex: about 8% of the server's CPU at 100 put clients when done per request), so it is
//! cached by [`StoreSize`] and asked again once the revision moved (any put or delete that
//! landed) or 100 ms passed (lease, auth and member records grow the store without a revision).
//!
//! Not done: etcd sizes its bbolt file; MetaStore sizes the replicated tables' RocksDB files and
//! memtables (`Engine::table_bytes`), so the same quota is reached after a different amount of
//! data.

use std::collections::BTreeSet;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use prost::Message as _;

use super::propose::Proposal;
use super::{Caller, RequestContext, Server};
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse, AlarmType, PutRequest, TxnRequest};
use crate::proto::metastorepb::internal_request::Request;
use crate::storage::{Engine, Table, WriteBatch};

/// etcd's default quota when `--quota-backend-bytes` is 0: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;
const KV_OVERHEAD: usize = 256;
const LEASE_OVERHEAD: usize = 64;

/// The replicated alarms, mirrored in memory; changed only by the applier.
#[derive(Default)]
pub struct Alarms {
    active: RwLock<BTreeSet<(u64, i32)>>,
}

impl Alarms {
    pub fn open(engine: &dyn Engine) -> Result<Self> {
        let alarms = Self::default();
        alarms.reload(engine)?;
        Ok(alarms)
    }

    /// Re-reads the table (after a snapshot replaced it).
    pub fn reload(&self, engine: &dyn Engine) -> Result<()> {
        let stored = load(engine)?;
        *self.active.write().expect("alarms lock") = stored;
        Ok(())
    }

    /// Active alarms of `kind` (`NONE`: all), by member.
    pub fn get(&self, kind: AlarmType) -> Vec<AlarmMember> {
        let active = self.active.read().expect("alarms lock");
        active
            .iter()
            .filter(|(_, a)| kind == AlarmType::None || *a == kind as i32)
            .map(|&(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect()
    }

    pub fn is_active(&self, kind: AlarmType) -> bool {
        self.active.read().expect("alarms lock").iter().any(|(_, a)| *a == kind as i32)
    }

    /// Applies an alarm request (etcd's `applierV3backend.Alarm`), recording changes in `batch`.
    pub fn apply(&self, batch: &mut WriteBatch, r: &AlarmRequest) -> AlarmResponse {
        let kind = AlarmType::try_from(r.alarm).unwrap_or(AlarmType::None);
        let member = AlarmMember { member_id: r.member_id, alarm: r.alarm };
        let alarms = match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => self.get(kind),
            Ok(AlarmAction::Activate) if kind != AlarmType::None => {
                if self.active.write().expect("alarms lock").insert((r.member_id, r.alarm)) {
                    tracing::warn!(member = %format!("{:x}", r.member_id), alarm = ?kind, "alarm raised");
                    batch.put(Table::Alarm, member.encode_to_vec(), Vec::new());
                }
                vec![member]
            }
            Ok(AlarmAction::Deactivate) => {
                if self.active.write().expect("alarms lock").remove(&(r.member_id, r.alarm)) {
                    tracing::info!(member = %format!("{:x}", r.member_id), alarm = ?kind, "alarm cleared");
                    batch.delete(Table::Alarm, member.encode_to_vec());
                    vec![member]
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        };
        AlarmResponse { header: None, alarms }
    }

    /// Whether the applier refuses `req` because of an active alarm, and with which error.
    pub fn refuses(&self, req: &Request) -> Option<Error> {
        if self.is_active(AlarmType::Corrupt) {
            let write = matches!(
                req,
                Request::Put(_)
                    | Request::DeleteRange(_)
                    | Request::Txn(_)
                    | Request::Compaction(_)
                    | Request::LeaseGrant(_)
                    | Request::LeaseRevoke(_)
            );
            return write.then_some(Error::Corrupt);
        }
        if self.is_active(AlarmType::Nospace) {
            let grows = match req {
                Request::Put(_) | Request::LeaseGrant(_) => true,
                Request::Txn(t) => txn_cost(t) > 0,
                _ => false,
            };
            return grows.then_some(Error::NoSpace);
        }
        None
    }
}

fn load(engine: &dyn Engine) -> Result<BTreeSet<(u64, i32)>> {
    let mut out = BTreeSet::new();
    let mut bad = None;
    engine.scan(Table::Alarm, b"", b"", &mut |k, _| {
        match AlarmMember::decode(k) {
            Ok(m) => {
                out.insert((m.member_id, m.alarm));
            }
            Err(e) => bad = Some(e.to_string()),
        }
        bad.is_none()
    })?;
    match bad {
        Some(e) => Err(Error::Storage(format!("corrupt alarm record: {e}"))),
        None => Ok(out),
    }
}

fn put_cost(p: &PutRequest) -> usize {
    KV_OVERHEAD + p.key.len() + p.value.len()
}

/// etcd's `costTxn`: the puts of the larger branch (top level only, as etcd counts).
fn txn_cost(t: &TxnRequest) -> usize {
    let branch = |ops: &[crate::proto::etcdserverpb::RequestOp]| -> usize {
        ops.iter()
            .map(|op| match &op.request {
                Some(Op::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

/// How long a cached store size stays good while the revision does not move.
const STORE_SIZE_MAX_AGE: Duration = Duration::from_millis(100);

/// The replicated tables' size as last asked of the engine, with the revision and time it was
/// asked at.
#[derive(Default)]
pub(super) struct StoreSize {
    last: Mutex<Option<(i64, Instant, u64)>>,
}

impl StoreSize {
    /// The size at revision `rev`: the cached one if it was asked at `rev` less than
    /// [`STORE_SIZE_MAX_AGE`] ago, otherwise `ask()`'s.
    fn get(&self, rev: i64, ask: impl FnOnce() -> u64) -> u64 {
        if let Some((at_rev, at, bytes)) = *self.last.lock().expect("store size lock") {
            if at_rev == rev && at.elapsed() < STORE_SIZE_MAX_AGE {
                return bytes;
            }
        }
        let bytes = ask();
        *self.last.lock().expect("store size lock") = Some((rev, Instant::now(), bytes));
        bytes
    }
}

/// What a quota-checked request would add.
pub(super) enum Cost<'a> {
    Put(&'a PutRequest),
    Txn(&'a TxnRequest),
    LeaseGrant,
}

impl Server {
    /// etcd's quota check before proposing: a request that would take the store to its quota
    /// raises NOSPACE (replicated) and fails with `database space exceeded`.
    pub(super) async fn check_quota(&self, ctx: &RequestContext, cost: Cost<'_>) -> Result<()> {
        let cost = match cost {
            Cost::Put(p) => put_cost(p),
            Cost::Txn(t) => txn_cost(t),
            Cost::LeaseGrant => LEASE_OVERHEAD,
        };
        let quota = match self.cfg.quota_backend_bytes {
            q if q < 0 => return Ok(()),
            0 => DEFAULT_QUOTA_BYTES,
            q => q,
        };
        // The revision is read before the size: a write landing in between only makes the
        // cached size newer than its revision, and the next check asks again.
        let rev = self.kv.read().rev();
        let size = || self.store_size.get(rev, || self.engine.table_bytes(&super::snapshot::TABLES));
        if cost == 0 || (size() + cost as u64) < quota as u64 {
            return Ok(());
        }
        let raise = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.cfg.member_id,
            alarm: AlarmType::Nospace as i32,
        };
        if let Err(e) = self.alarm(ctx, raise).await {
            tracing::warn!(error = %e, "could not raise the NOSPACE alarm");
        }
        Err(Error::NoSpace)
    }

    /// Lists, raises or clears alarms, through raft as etcd does (no auth check in etcd 3.4.23).
    pub async fn alarm(&self, _ctx: &RequestContext, r: AlarmRequest) -> Result<AlarmResponse> {
        self.propose(Proposal::Command(Request::Alarm(r), Caller::Member)).await
    }

    /// Active alarms as this member last applied them (for `/health`).
    pub fn active_alarms(&self) -> Vec<AlarmMember> {
        self.alarms.get(AlarmType::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_size_is_asked_again_once_the_revision_moves_or_it_is_old() {
        let size = StoreSize::default();
        assert_eq!(size.get(5, || 100), 100);
        assert_eq!(size.get(5, || unreachable!("cached at the same revision")), 100);
        assert_eq!(size.get(6, || 150), 150);
        *size.last.lock().unwrap() = Some((6, Instant::now() - STORE_SIZE_MAX_AGE, 150));
        assert_eq!(size.get(6, || 170), 170);
    }
    use crate::storage::MemoryEngine;

    fn req(action: AlarmAction, member_id: u64, alarm: AlarmType) -> AlarmRequest {
        AlarmRequest { action: action as i32, member_id, alarm: alarm as i32 }
    }

    #[test]
    fn activate_persist_refuse_deactivate() {
        let engine = MemoryEngine::new();
        let alarms = Alarms::open(&engine).unwrap();
        let mut b = WriteBatch::new();
        let resp = alarms.apply(&mut b, &req(AlarmAction::Activate, 7, AlarmType::Nospace));
        assert_eq!(resp.alarms, vec![AlarmMember { member_id: 7, alarm: AlarmType::Nospace as i32 }]);
        engine.write(b, false).unwrap();
        let reopened = Alarms::open(&engine).unwrap();
        assert_eq!(reopened.get(AlarmType::None).len(), 1);

        let put = Request::Put(PutRequest { key: b"k".to_vec(), ..Default::default() });
        assert_eq!(alarms.refuses(&put), Some(Error::NoSpace));
        let delete = Request::DeleteRange(Default::default());
        assert_eq!(alarms.refuses(&delete), None);
        let read_txn = Request::Txn(TxnRequest::default());
        assert_eq!(alarms.refuses(&read_txn), None);

        let mut b = WriteBatch::new();
        assert_eq!(alarms.apply(&mut b, &req(AlarmAction::Deactivate, 7, AlarmType::Nospace)).alarms.len(), 1);
        assert!(alarms.apply(&mut b, &req(AlarmAction::Deactivate, 7, AlarmType::Nospace)).alarms.is_empty());
        engine.write(b, false).unwrap();
        assert_eq!(alarms.refuses(&put), None);
        assert!(Alarms::open(&engine).unwrap().get(AlarmType::None).is_empty());
    }

    #[test]
    fn corrupt_refuses_every_write() {
        let alarms = Alarms::default();
        alarms.apply(&mut WriteBatch::new(), &req(AlarmAction::Activate, 1, AlarmType::Corrupt));
        assert_eq!(alarms.refuses(&Request::DeleteRange(Default::default())), Some(Error::Corrupt));
    }
}
