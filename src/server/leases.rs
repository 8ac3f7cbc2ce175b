//! The server's side of leases: the client calls, and the primary loop that only the leader runs
//! — promoting the lessor when this member leads, proposing revokes for expired leases (at most
//! etcd's 1000 per second) and checkpoints of moved deadlines.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::propose::Proposal;
use super::{Caller, RequestContext, Server};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::lease::{Checkpoint, LeaseStatus, Lessor};
use crate::peer;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseStatus as LeaseStatusPb, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::proto::metastorepb::internal_request::Request;
use crate::proto::metastorepb::{LeaseCheckpoint, LeaseCheckpointRequest};
use crate::raft::Role;
use tokio::task::JoinHandle;

const TICK: Duration = Duration::from_millis(100);
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// etcd revokes at most 1000 leases per second.
const REVOKES_PER_TICK: usize = 100;

impl Server {
    pub async fn lease_grant(&self, ctx: &RequestContext, mut r: LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        let caller = self.caller(ctx).await?;
        // A leader whose lessor the primary loop has not promoted yet (within a tick of the
        // election) promotes it now: a lease granted on a primary expires after exactly its TTL,
        // while promotion extends the leases it finds by an election timeout.
        self.follow_leadership();
        self.check_quota(ctx, super::alarms::Cost::LeaseGrant).await?;
        if r.id == 0 {
            r.id = (self.next_request_id() & ((1 << 63) - 1)) as i64;
        }
        let mut resp: LeaseGrantResponse = self.propose(Proposal::Command(Request::LeaseGrant(r), caller)).await?;
        resp.header = self.current_header();
        Ok(resp)
    }

    /// Revokes a lease; the applier checks the caller may write every key on it.
    pub async fn lease_revoke(&self, ctx: &RequestContext, r: LeaseRevokeRequest) -> Result<LeaseRevokeResponse> {
        let caller = self.caller(ctx).await?;
        let mut resp: LeaseRevokeResponse = self.propose(Proposal::Command(Request::LeaseRevoke(r), caller)).await?;
        self.complete(&mut resp.header);
        Ok(resp)
    }

    /// One keep-alive of a client's stream, answered as etcd answers it: TTL 0 (not an error)
    /// once the lease is gone — revoked or expired — so the client's keep-alive loop learns it
    /// at once.
    pub async fn lease_keep_alive(&self, _ctx: &RequestContext, id: i64) -> Result<LeaseKeepAliveResponse> {
        let ttl = match self.lease_renew(id).await {
            Ok(ttl) => ttl,
            Err(Error::LeaseNotFound) => 0,
            Err(e) => return Err(e),
        };
        Ok(LeaseKeepAliveResponse { header: self.current_header(), id, ttl })
    }

    /// etcd answers an unknown lease with TTL -1, not an error.
    pub async fn lease_time_to_live_response(
        &self,
        _ctx: &RequestContext,
        r: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse> {
        let status = self.lease_time_to_live(r.id).await?;
        let header = self.current_header();
        Ok(match status {
            Some(s) => LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: s.remaining,
                granted_ttl: s.granted,
                keys: if r.keys { s.keys } else { Vec::new() },
            },
            None => LeaseTimeToLiveResponse { header, id: r.id, ttl: -1, granted_ttl: 0, keys: Vec::new() },
        })
    }

    /// A keep-alive, answered by the leader's lessor (which alone tracks expiry): this member's
    /// own when it leads, the leader's through the peer API otherwise. Retried across an election
    /// until the request timeout.
    async fn lease_renew(&self, id: i64) -> Result<i64> {
        self.until_leader_answers(|| async move {
            if self.follow_leadership() {
                return self.lease_renew_as_leader(id).await;
            }
            self.on_leader(|leader| peer::lease_renew(leader, id)).await
        })
        .await
    }

    /// A keep-alive forwarded to this member; `NotLeader` unless it leads.
    pub async fn lease_renew_as_leader(&self, id: i64) -> Result<i64> {
        let ttl = self.on_primary_lessor(|lessor| lessor.renew(id)).await;
        if ttl.is_ok() {
            crate::metrics::get().lease_renewed.inc();
        }
        ttl
    }

    /// Runs `read` on this member's lessor once every write committed before the call is
    /// applied; `NotLeader` unless this member leads (also if it was demoted meanwhile: the
    /// lessor then answers `NoLeader`).
    async fn on_primary_lessor<T>(&self, read: impl FnOnce(&Lessor) -> Result<T>) -> Result<T> {
        if !self.follow_leadership() {
            return Err(Error::NotLeader);
        }
        self.linearizable_barrier().await?;
        match read(&self.lessor) {
            Err(Error::NoLeader) => Err(Error::NotLeader),
            other => other,
        }
    }

    /// A lease's remaining and granted TTL and keys, from the leader's lessor (as
    /// [`Server::lease_renew`]); `None` for an unknown lease.
    async fn lease_time_to_live(&self, id: i64) -> Result<Option<LeaseStatus>> {
        self.until_leader_answers(|| async move {
            if self.follow_leadership() {
                return self.lease_time_to_live_as_leader(id).await;
            }
            let answer = self.on_leader(|leader| peer::lease_time_to_live(leader, id)).await?;
            Ok(answer.found.then_some(LeaseStatus {
                remaining: answer.remaining,
                granted: answer.granted,
                keys: answer.keys,
            }))
        })
        .await
    }

    /// A time-to-live question forwarded to this member; `NotLeader` unless it leads.
    pub async fn lease_time_to_live_as_leader(&self, id: i64) -> Result<Option<LeaseStatus>> {
        self.on_primary_lessor(|lessor| Ok(lessor.time_to_live(id))).await
    }

    /// Promotes or demotes the lessor to match this member's raft role. Called by the primary
    /// loop on every tick, and before answering, so a request right after an election does not
    /// wait for the next tick.
    fn follow_leadership(&self) -> bool {
        let leading = self.raft.status().role == Role::Leader;
        match (leading, self.lessor.is_primary()) {
            (true, false) => {
                self.lessor.promote(self.cfg.member_id, self.cfg.heartbeat * self.cfg.election_ticks as u32)
            }
            (false, true) => self.lessor.demote(),
            _ => {}
        }
        leading
    }

    pub async fn lease_leases(&self, _ctx: &RequestContext) -> Result<LeaseLeasesResponse> {
        self.linearizable_barrier().await?;
        let leases = self.lessor.leases().into_iter().map(|id| LeaseStatusPb { id }).collect();
        Ok(LeaseLeasesResponse { header: self.current_header(), leases })
    }
}

/// Runs while the server lives: follows leadership and, as primary, expires and checkpoints.
/// A revoke in flight is not proposed twice; one that failed (raft drops proposals during a
/// leadership transfer, for one) is proposed again on a later tick for as long as this member
/// leads and the lease exists, so a dead client's lease always goes.
pub(super) async fn run_primary(server: Weak<Server>) {
    let mut revoking: HashMap<i64, JoinHandle<()>> = HashMap::new();
    let mut last_checkpoint = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        let Some(server) = server.upgrade() else { return };
        if !server.follow_leadership() {
            revoking.clear();
            continue;
        }
        revoking.retain(|_, task| !task.is_finished());
        for id in server.lessor.expired(REVOKES_PER_TICK) {
            revoking.entry(id).or_insert_with(|| spawn_revoke(server.clone(), id));
        }
        if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            last_checkpoint = Instant::now();
            let due = server.lessor.due_checkpoints(1000);
            if !due.is_empty() {
                spawn_checkpoint(server.clone(), due);
            }
        }
    }
}

fn spawn_revoke(server: Arc<Server>, id: i64) -> JoinHandle<()> {
    tokio::spawn(async move {
        let attempt = if failpoint::hit("lease-revoke-drop") {
            Err(Error::NoLeader)
        } else {
            server.lease_revoke(&RequestContext::internal(), LeaseRevokeRequest { id }).await
        };
        match attempt {
            Ok(_) | Err(Error::LeaseNotFound) => {}
            Err(e) => tracing::warn!(lease = id, error = %e, "revoking an expired lease failed; will retry"),
        }
    })
}

fn spawn_checkpoint(server: Arc<Server>, due: Vec<Checkpoint>) {
    tokio::spawn(async move {
        let checkpoints = due
            .into_iter()
            .map(|c| LeaseCheckpoint { id: c.id, deadline_unix_ms: c.deadline_ms, remaining_ms: c.remaining_ms })
            .collect();
        let req = Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints, proposer: server.cfg.member_id });
        if let Err(e) = server.propose::<()>(Proposal::Command(req, Caller::Member)).await {
            tracing::debug!(error = %e, "lease checkpoint not applied; the next one will retry");
        }
    });
}
