//! The etcd state machine: applies committed [`InternalRequest`]s to the MVCC store.
//!
//! A group of committed entries becomes ONE engine batch: every request's MVCC changes plus the
//! applied index and term of the last entry. Results go to [`Waiters`] by request id after the
//! batch is written. A deterministic error (e.g. `Compacted`) is the request's answer; any other
//! error stops the node, since carrying on would let this member diverge.

use std::sync::Arc;

use prost::Message as _;
use raft::prelude::Entry;

use super::kv::{self, LeaseLookup};
use super::waiters::Waiters;
use super::Applied;
use crate::error::{Error, Result};
use crate::mvcc::{ApplyBatch, KvStore};
use crate::proto::etcdserverpb::{CompactionRequest, CompactionResponse, ResponseHeader};
use crate::proto::metastorepb::internal_request::Request;
use crate::proto::metastorepb::InternalRequest;
use crate::raft::StateMachine;
use crate::storage::schema::{META_APPLIED_INDEX, META_APPLIED_TERM};
use crate::storage::Table;

/// No leases exist until the lease service does: every lease id is unknown.
pub struct NoLeases;

impl LeaseLookup for NoLeases {
    fn exists(&self, _id: i64) -> bool {
        false
    }
}

pub struct Applier {
    pub kv: Arc<KvStore>,
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
            let result = apply_one(&mut batch, req.request);
            if let Err(err) = &result {
                if !err.is_deterministic() {
                    return Err(err.clone());
                }
            }
            results.push((req.id, result));
        }
        let b = batch.batch_mut();
        b.put(Table::Meta, META_APPLIED_INDEX, last_index.to_be_bytes());
        b.put(Table::Meta, META_APPLIED_TERM, last_term.to_be_bytes());
        batch.commit()?;
        for (id, result) in results {
            self.waiters.trigger(id, result);
        }
        Ok(())
    }
}

fn apply_one(batch: &mut ApplyBatch<'_>, req: Option<Request>) -> Result<Applied> {
    match req {
        Some(Request::Put(p)) => kv::put(&mut batch.txn(), &p, &NoLeases).map(Applied::Put),
        Some(Request::DeleteRange(d)) => kv::delete_range(&mut batch.txn(), &d).map(Applied::DeleteRange),
        Some(Request::Txn(t)) => kv::txn(&mut batch.txn(), &t, &NoLeases).map(Applied::Txn),
        Some(Request::Compaction(c)) => compact(batch, &c).map(Applied::Compaction),
        Some(Request::LeaseGrant(_)) | Some(Request::LeaseRevoke(_)) | Some(Request::LeaseCheckpoint(_)) => {
            Err(Error::Unimplemented("leases are not implemented yet".into()))
        }
        None => Err(Error::Internal("empty replicated request".into())),
    }
}

fn compact(batch: &mut ApplyBatch<'_>, c: &CompactionRequest) -> Result<CompactionResponse> {
    batch.compact(c.revision)?;
    Ok(CompactionResponse { header: Some(ResponseHeader { revision: batch.rev(), ..Default::default() }) })
}
