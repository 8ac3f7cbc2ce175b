//! The one propose-and-wait: every replicated change — KV writes, leases, compaction, member
//! changes — is proposed here and answered by the applier through [`Waiters`], by request id.
//!
//! ```text
//!  propose(Proposal) ── too far behind? ──► `too many requests`
//!       │ register waiter[id] (a guard: dropped with the caller, e.g. a client that went away)
//!       │ raft propose (dropped by raft ──► `no leader`)
//!       ▼
//!  wait ≤ request timeout ──► typed result (`R: FromApplied`) | `request timed out` | `leader changed`
//! ```

use prost::Message as _;

use super::auth::{Caller, Token};
use super::waiters::Applied;
use super::Server;
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::{
    AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse,
    TxnResponse,
};
use crate::proto::metastorepb::internal_request::Request;
use crate::proto::metastorepb::{InternalRequest, MemberChangeContext, MemberRecord};
use crate::raft::MemberChange;

/// etcd refuses new proposals while the applied index lags the committed one by more than this.
const MAX_APPLY_LAG: u64 = 5000;

/// What goes through raft.
pub(super) enum Proposal {
    /// A command for the state machine, run as its caller (checked when applied).
    Command(Request, Caller),
    /// A membership change, with the member record the applier keeps.
    Membership(MemberChange, Option<MemberRecord>),
}

/// The typed answer of one request kind, taken out of the applier's result.
pub(super) trait FromApplied: Sized {
    fn from_applied(applied: Applied) -> Option<Self>;
}

macro_rules! from_applied {
    ($($variant:ident => $ty:ty),* $(,)?) => {$(
        impl FromApplied for $ty {
            fn from_applied(applied: Applied) -> Option<Self> {
                match applied {
                    Applied::$variant(r) => Some(r),
                    _ => None,
                }
            }
        }
    )*};
}

from_applied! {
    Put => PutResponse,
    DeleteRange => DeleteRangeResponse,
    Txn => TxnResponse,
    Compaction => CompactionResponse,
    LeaseGrant => LeaseGrantResponse,
    LeaseRevoke => LeaseRevokeResponse,
    Alarm => AlarmResponse,
}

impl FromApplied for Token {
    fn from_applied(applied: Applied) -> Option<Self> {
        match applied {
            Applied::Token(t) => Some(Token(t)),
            _ => None,
        }
    }
}

/// Requests answered by their being applied alone (membership, checkpoints, attributes).
impl FromApplied for () {
    fn from_applied(_: Applied) -> Option<Self> {
        Some(())
    }
}

impl Server {
    /// Proposes `proposal` and waits, at most etcd's request timeout, for its applied result.
    pub(super) async fn propose<R: FromApplied>(&self, proposal: Proposal) -> Result<R> {
        let m = crate::metrics::get();
        let outcome = {
            // A guard: a caller that stops waiting (a client gone) is no longer pending.
            let _pending = Pending::new(&m.proposals_pending);
            self.propose_and_wait(proposal).await
        };
        // etcd counts proposals that raft dropped or that timed out; an error the applier
        // answered (a txn on a missing lease, say) was committed and is no failure.
        if matches!(outcome, Err(Error::NoLeader | Error::Timeout | Error::LeaderChanged | Error::TooManyRequests)) {
            m.proposals_failed.inc();
        }
        outcome
    }

    async fn propose_and_wait<R: FromApplied>(&self, proposal: Proposal) -> Result<R> {
        let status = self.raft.status();
        if status.commit > status.applied + MAX_APPLY_LAG {
            return Err(Error::TooManyRequests);
        }
        let id = self.next_request_id();
        let pending = self.waiters.register(id);
        match proposal {
            Proposal::Command(request, caller) => {
                let data = InternalRequest { id, request: Some(request), caller: caller.record() }.encode_to_vec();
                if data.len() > self.cfg.max_request_bytes {
                    return Err(Error::RequestTooLarge);
                }
                let waiters = self.waiters.clone();
                self.raft.propose(data, Box::new(move |e| waiters.trigger(id, Err(e))))?;
            }
            Proposal::Membership(change, member) => {
                let context = MemberChangeContext { request_id: id, member }.encode_to_vec();
                self.raft.propose_membership(change, context).await?;
            }
        }
        match pending.wait(self.cfg.request_timeout()).await {
            Some(applied) => {
                let applied = applied?;
                R::from_applied(applied).ok_or_else(|| Error::Internal("applied result of another kind".into()))
            }
            None if self.raft.status().term != status.term => Err(Error::LeaderChanged),
            None => Err(Error::Timeout),
        }
    }
}

/// Counts a proposal in `etcd_server_proposals_pending` while it lives.
struct Pending<'a>(&'a prometheus::IntGauge);

impl<'a> Pending<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Pending(gauge)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
