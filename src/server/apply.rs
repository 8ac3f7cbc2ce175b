//! The etcd state machine: applies committed [`InternalRequest`]s to MVCC and the lessor.
//!
//! A group of committed entries becomes ONE engine batch: every request's MVCC and lease changes
//! plus the applied index and term of the last entry. After the batch is written, the watch hub
//! gets the group's events and [`Waiters`] get each request's result by id. A deterministic error
//! (e.g. `Compacted`) is the request's answer; any other error stops the node, since carrying on
//! would let this member diverge.

use std::sync::Arc;

use prost::Message as _;

use super::alarms::Alarms;
use super::auth::{self, Caller};
use super::kv::{self, LeaseLookup};
use super::membership::{from_record, Members};
use super::waiters::Applied;
use super::waiters::Waiters;
use crate::auth::AuthStore;
use crate::error::{Error, Result};
use crate::lease::{Checkpoint, Lessor};
use crate::mvcc::watch::WatchHub;
use crate::mvcc::{ApplyBatch, KeyRange, KvStore};
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, ResponseHeader,
};
use crate::proto::metastorepb::internal_request::Request;
use crate::proto::metastorepb::{InternalRequest, LeaseCheckpointRequest, MemberChangeContext, MemberRecord};
use crate::proto::mvccpb::event::EventType;
use crate::raft::{Committed, MemberChange, PeerBook, StateMachine};
use crate::storage::schema::{META_APPLIED_INDEX, META_APPLIED_TERM};
use crate::storage::{Table, WriteBatch};

impl LeaseLookup for Lessor {
    fn exists(&self, id: i64) -> bool {
        Lessor::exists(self, id)
    }
}

pub struct Applier {
    pub kv: Arc<KvStore>,
    pub lessor: Arc<Lessor>,
    pub auth: Arc<AuthStore>,
    pub hub: Arc<WatchHub>,
    pub waiters: Arc<Waiters>,
    pub members: Arc<Members>,
    pub peers: Arc<PeerBook>,
    pub alarms: Arc<Alarms>,
    /// This member's id: applying its own removal stops it, after `stop_delay`.
    pub self_id: u64,
    /// How long a removed member keeps serving raft after its removal is applied, so the others
    /// learn that it committed (etcd: ten heartbeats). Without it, a leader removing itself
    /// could exit before any follower hears of the commit, and in a 2-member cluster the
    /// survivor would wait for the departed leader's vote for ever.
    pub stop_delay: std::time::Duration,
    /// Set once the removal was applied and the delayed stop is scheduled.
    pub removed: bool,
    /// For the member-change log lines.
    pub cluster_id: u64,
    /// `--experimental-warning-apply-duration`: a request whose apply takes longer is logged
    /// (etcd's `apply request took too long`).
    pub warning_apply_duration: std::time::Duration,
}

impl StateMachine for Applier {
    fn apply(&mut self, entries: Vec<Committed>) -> Result<()> {
        let Some(last) = entries.last() else { return Ok(()) };
        let (last_index, last_term) = (last.index(), last.term());
        let mut batch = self.kv.apply();
        let mut results = Vec::new();
        let mut removed_self = false;
        for entry in entries {
            match entry {
                // raft's no-op entry of a new leader
                Committed::Command { data, .. } if data.is_empty() => {}
                Committed::Command { index, data, .. } => {
                    let req = InternalRequest::decode(&data[..])
                        .map_err(|err| Error::Internal(format!("undecodable raft entry {index}: {err}")))?;
                    let seen = batch.events().len();
                    let caller = Caller::from_record(req.caller);
                    let kind = req.request.as_ref().map_or("empty", request_kind);
                    let started = std::time::Instant::now();
                    let result = self.apply_one(&mut batch, index, &caller, req.request);
                    self.warn_if_slow(started.elapsed(), kind, req.id, &result);
                    if let Err(err) = &result {
                        if !err.is_deterministic() {
                            return Err(err.clone());
                        }
                    }
                    self.follow_attachments(&batch, seen);
                    results.push((req.id, result));
                }
                Committed::Membership { index, change, context, .. } => {
                    let ctx = MemberChangeContext::decode(&context[..])
                        .map_err(|err| Error::Internal(format!("undecodable member change {index}: {err}")))?;
                    removed_self |= change == MemberChange::Remove(self.self_id);
                    self.change_membership(&mut batch, change, ctx.member);
                    results.push((ctx.request_id, Ok(Applied::Done)));
                }
            }
        }
        let b = batch.batch_mut();
        b.put(Table::Meta, META_APPLIED_INDEX, last_index.to_be_bytes());
        b.put(Table::Meta, META_APPLIED_TERM, last_term.to_be_bytes());
        let started = std::time::Instant::now();
        let events = batch.commit()?;
        crate::metrics::get().backend_commit.observe(started.elapsed().as_secs_f64());
        self.hub.notify(&events);
        self.waiters.trigger_all(results);
        if removed_self && !self.removed {
            self.removed = true;
            let delay = self.stop_delay;
            tracing::warn!(?delay, "the member has been permanently removed from the cluster; stopping after a delay");
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                tracing::warn!("the member has been permanently removed from the cluster; exiting");
                std::process::exit(0);
            });
        }
        Ok(())
    }

    fn stage_restore(&mut self, data: &[u8], batch: &mut WriteBatch) -> Result<()> {
        // A deletion still running would write its `finished` marker over the snapshot's.
        self.kv.wait_purged();
        super::snapshot::stage(data, batch)
    }

    fn restored(&mut self) -> Result<()> {
        let engine = self.kv.engine().clone();
        self.lessor.reload(&*engine)?;
        let lessor = &self.lessor;
        self.kv.reload(&mut |key, id| lessor.attach(key, id))?;
        self.hub.restored();
        self.auth.reload(&*engine)?;
        self.members.reload(&*engine)?;
        self.alarms.reload(&*engine)?;
        for m in self.members.list() {
            self.peers.set(m.id, m.peer_urls.clone());
        }
        Ok(())
    }
}

impl Applier {
    /// Applies one command as `caller`, whose permissions are checked against the auth store as
    /// of this entry; an active alarm refuses what it forbids first.
    fn apply_one(
        &self,
        batch: &mut ApplyBatch<'_>,
        index: u64,
        caller: &Caller,
        req: Option<Request>,
    ) -> Result<Applied> {
        let (leases, store) = (&*self.lessor, &*self.auth);
        if let Some(refused) = req.as_ref().and_then(|r| self.alarms.refuses(r)) {
            return Err(refused);
        }
        match req {
            Some(Request::Put(p)) => {
                auth::check_put(store, leases, caller, &p)?;
                kv::put(&mut batch.txn(), &p, leases).map(Applied::Put)
            }
            Some(Request::DeleteRange(d)) => {
                auth::check_delete(store, caller, &d)?;
                kv::delete_range(&mut batch.txn(), &d).map(Applied::DeleteRange)
            }
            Some(Request::Txn(t)) => {
                auth::check_txn(store, caller, &t)?;
                kv::txn(&mut batch.txn(), &t, leases).map(Applied::Txn)
            }
            Some(Request::Compaction(c)) => compact(batch, &c).map(Applied::Compaction),
            Some(Request::LeaseGrant(g)) => {
                let granted = self.grant(batch, &g).map(Applied::LeaseGrant);
                if granted.is_ok() {
                    crate::metrics::get().lease_granted.inc();
                }
                granted
            }
            Some(Request::LeaseRevoke(r)) => {
                auth::check_lease_keys(store, leases, caller, r.id)?;
                let revoked = self.revoke(batch, &r).map(Applied::LeaseRevoke);
                if revoked.is_ok() {
                    crate::metrics::get().lease_revoked.inc();
                }
                revoked
            }
            Some(Request::LeaseCheckpoint(c)) => Ok(self.checkpoint(batch, &c)),
            Some(Request::MemberAttributes(m)) => self.update_member(batch, m, true),
            Some(Request::MemberUpdate(m)) => self.update_member(batch, m, false),
            Some(
                r @ (Request::AuthEnable(_)
                | Request::AuthDisable(_)
                | Request::Authenticate(_)
                | Request::UserAdd(_)
                | Request::UserDelete(_)
                | Request::UserChangePassword(_)
                | Request::UserGrantRole(_)
                | Request::UserRevokeRole(_)
                | Request::RoleAdd(_)
                | Request::RoleDelete(_)
                | Request::RoleGrantPermission(_)
                | Request::RoleRevokePermission(_)),
            ) => auth::apply(store, batch.batch_mut(), caller, index, r),
            Some(Request::Alarm(a)) => Ok(Applied::Alarm(self.alarms.apply(batch.batch_mut(), &a))),
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
        let points: Vec<Checkpoint> = c
            .checkpoints
            .iter()
            .map(|p| Checkpoint { id: p.id, deadline_ms: p.deadline_unix_ms, remaining_ms: p.remaining_ms })
            .collect();
        self.lessor.checkpoint(batch.batch_mut(), c.proposer, &points);
        Applied::Done
    }

    /// etcd's slow-apply warning (etcdserver/util.go `warnOfExpensiveGenericRequest`); the
    /// `request` field names the request's kind and id rather than printing the whole request.
    fn warn_if_slow(&self, took: std::time::Duration, kind: &str, id: u64, result: &Result<Applied>) {
        if took <= self.warning_apply_duration {
            return;
        }
        crate::metrics::get().slow_applies.inc();
        // zap leaves out a nil error; tracing leaves out a `None` field.
        let error = result.as_ref().err().map(|e| tracing::field::display(e.to_string()));
        tracing::warn!(
            target: "etcdserver",
            took = %crate::go_duration::format(took),
            "expected-duration" = %crate::go_duration::format(self.warning_apply_duration),
            prefix = "",
            request = %format!("header:<ID:{id} > {kind}"),
            response = "",
            error,
            "apply request took too long"
        );
    }

    fn change_membership(&self, batch: &mut ApplyBatch<'_>, change: MemberChange, member: Option<MemberRecord>) {
        let b = batch.batch_mut();
        let (cluster, local) = (format!("{:x}", self.cluster_id), format!("{:x}", self.self_id));
        match change {
            MemberChange::Remove(id) => {
                let urls = self.members.get(id).map(|m| m.peer_urls).unwrap_or_default();
                self.members.remove(b, id);
                self.peers.remove(id);
                tracing::info!(
                    target: "etcdserver/membership",
                    {
                        "cluster-id" = %cluster,
                        "local-member-id" = %local,
                        "removed-remote-peer-id" = %format!("{id:x}"),
                        "removed-remote-peer-urls" = ?urls,
                    },
                    "removed member"
                );
            }
            MemberChange::AddVoter(id) | MemberChange::AddLearner(id) => {
                let mut m = member.map(from_record).unwrap_or_default();
                m.id = id;
                m.is_learner = matches!(change, MemberChange::AddLearner(_));
                self.peers.set(id, m.peer_urls.clone());
                tracing::info!(
                    target: "etcdserver/membership",
                    {
                        "cluster-id" = %cluster,
                        "local-member-id" = %local,
                        "added-peer-id" = %format!("{id:x}"),
                        "added-peer-peer-urls" = ?m.peer_urls,
                    },
                    "added member"
                );
                self.members.upsert(b, m);
            }
        }
    }

    /// A member's published attributes (name, client URLs) or new peer URLs.
    fn update_member(&self, batch: &mut ApplyBatch<'_>, m: MemberRecord, attributes: bool) -> Result<Applied> {
        let Some(mut current) = self.members.get(m.id) else { return Err(Error::MemberNotFound) };
        if attributes {
            current.name = m.name;
            current.client_urls = m.client_urls;
        } else {
            current.peer_urls = m.peer_urls;
            self.peers.set(current.id, current.peer_urls.clone());
            tracing::info!(
                target: "etcdserver/membership",
                {
                    "cluster-id" = %format!("{:x}", self.cluster_id),
                    "local-member-id" = %format!("{:x}", self.self_id),
                    "updated-remote-peer-id" = %format!("{:x}", current.id),
                    "updated-remote-peer-urls" = ?current.peer_urls,
                },
                "updated member"
            );
        }
        self.members.upsert(batch.batch_mut(), current);
        Ok(Applied::Done)
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

/// The kind of a replicated request, for the slow-apply warning.
fn request_kind(r: &Request) -> &'static str {
    match r {
        Request::Put(_) => "put",
        Request::DeleteRange(_) => "delete_range",
        Request::Txn(_) => "txn",
        Request::Compaction(_) => "compaction",
        Request::LeaseGrant(_) => "lease_grant",
        Request::LeaseRevoke(_) => "lease_revoke",
        Request::LeaseCheckpoint(_) => "lease_checkpoint",
        Request::MemberAttributes(_) => "member_attributes",
        Request::MemberUpdate(_) => "member_update",
        Request::Alarm(_) => "alarm",
        _ => "auth",
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

fn compact(batch: &mut ApplyBatch<'_>, c: &CompactionRequest) -> Result<CompactionResponse> {
    batch.compact(c.revision)?;
    Ok(CompactionResponse { header: header(batch.rev()) })
}
