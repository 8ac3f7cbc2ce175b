//! The etcd state machine: applies committed [`InternalRequest`]s to MVCC and the lessor.
//!
//! A group of committed entries becomes ONE engine batch: every request's MVCC and lease changes
//! plus the applied index and term of the last entry. After the batch is written, the watch hub
//! gets the group's events and [`Waiters`] get each request's result by id. A deterministic error
//! (e.g. `Compacted`) is the request's answer; any other error stops the node, since carrying on
//! would let this member diverge.

use std::sync::Arc;

use prost::Message as _;
use raft::prelude::Entry;

use super::kv::{self, LeaseLookup};
use super::waiters::Waiters;
use super::Applied;
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::mvcc::watch::WatchHub;
use crate::mvcc::{ApplyBatch, KeyRange, KvStore};
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, ResponseHeader,
};
use crate::proto::metastorepb::internal_request::Request;
use crate::proto::metastorepb::{InternalRequest, LeaseCheckpointRequest};
use crate::proto::mvccpb::event::EventType;
use crate::raft::StateMachine;
use crate::storage::schema::{META_APPLIED_INDEX, META_APPLIED_TERM};
use crate::storage::Table;

impl LeaseLookup for Lessor {
    fn exists(&self, id: i64) -> bool {
        Lessor::exists(self, id)
    }
}

pub struct Applier {
    pub kv: Arc<KvStore>,
    pub lessor: Arc<Lessor>,
    pub hub: Arc<WatchHub>,
    pub waiters: Arc<Waiters>,
}

impl StateMachine for Applier {
    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        let Some(last) = entries.last() else { return Ok(()) };
        let (last_index, last_term) = (last.index, last.term);
        let mut batch = self.kv.apply();
        let mut results = Vec::new();
        for e in &entries {
            if e.data.is_empty() {
                continue; // raft's no-op entry of a new leader
            }
            let req = InternalRequest::decode(&e.data[..])
                .map_err(|err| Error::Internal(format!("undecodable raft entry {}: {err}", e.index)))?;
            let seen = batch.events().len();
            let result = self.apply_one(&mut batch, req.request);
            if let Err(err) = &result {
                if !err.is_deterministic() {
                    return Err(err.clone());
                }
            }
            self.follow_attachments(&batch, seen);
            results.push((req.id, result));
        }
        let b = batch.batch_mut();
        b.put(Table::Meta, META_APPLIED_INDEX, last_index.to_be_bytes());
        b.put(Table::Meta, META_APPLIED_TERM, last_term.to_be_bytes());
        let events = batch.commit()?;
        self.hub.notify(&events);
        for (id, result) in results {
            self.waiters.trigger(id, result);
        }
        Ok(())
    }
}

impl Applier {
    fn apply_one(&self, batch: &mut ApplyBatch<'_>, req: Option<Request>) -> Result<Applied> {
        let leases = &*self.lessor;
        match req {
            Some(Request::Put(p)) => kv::put(&mut batch.txn(), &p, leases).map(Applied::Put),
            Some(Request::DeleteRange(d)) => kv::delete_range(&mut batch.txn(), &d).map(Applied::DeleteRange),
            Some(Request::Txn(t)) => kv::txn(&mut batch.txn(), &t, leases).map(Applied::Txn),
            Some(Request::Compaction(c)) => compact(batch, &c).map(Applied::Compaction),
            Some(Request::LeaseGrant(g)) => self.grant(batch, &g).map(Applied::LeaseGrant),
            Some(Request::LeaseRevoke(r)) => self.revoke(batch, &r).map(Applied::LeaseRevoke),
            Some(Request::LeaseCheckpoint(c)) => Ok(self.checkpoint(batch, &c)),
            None => Err(Error::Internal("empty replicated request".into())),
        }
    }

    fn grant(&self, batch: &mut ApplyBatch<'_>, g: &LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        let ttl = self.lessor.grant(batch.batch_mut(), g.id, g.ttl)?;
        Ok(LeaseGrantResponse { header: header(batch.rev()), id: g.id, ttl, error: String::new() })
    }

    /// Deletes every key of the lease in one revision, then forgets the lease.
    fn revoke(&self, batch: &mut ApplyBatch<'_>, r: &LeaseRevokeRequest) -> Result<LeaseRevokeResponse> {
        let keys = self.lessor.keys(r.id)?;
        let mut txn = batch.txn();
        for key in keys {
            txn.delete_range(&KeyRange::Single(key));
        }
        self.lessor.remove(batch.batch_mut(), r.id);
        Ok(LeaseRevokeResponse { header: header(batch.rev()) })
    }

    fn checkpoint(&self, batch: &mut ApplyBatch<'_>, c: &LeaseCheckpointRequest) -> Applied {
        let points: Vec<(i64, i64)> = c.checkpoints.iter().map(|p| (p.id, p.deadline_unix_ms)).collect();
        self.lessor.checkpoint(batch.batch_mut(), &points);
        Applied::LeaseCheckpoint
    }

    /// Keeps lease attachments in step with the events the request produced.
    fn follow_attachments(&self, batch: &ApplyBatch<'_>, from: usize) {
        for ev in &batch.events()[from..] {
            let Some(kv) = &ev.kv else { continue };
            let lease = if ev.r#type == EventType::Put as i32 { kv.lease } else { 0 };
            self.lessor.attach(&kv.key, lease);
        }
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

fn compact(batch: &mut ApplyBatch<'_>, c: &CompactionRequest) -> Result<CompactionResponse> {
    batch.compact(c.revision)?;
    Ok(CompactionResponse { header: header(batch.rev()) })
}
