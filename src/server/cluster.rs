//! Membership as the Cluster and Maintenance services ask for it: add (voter or learner), remove,
//! update peer URLs, promote a caught-up learner, move leadership — with etcd's checks and errors.
//! Configuration changes go through raft; the applier records the member list.

use std::time::{SystemTime, UNIX_EPOCH};

use super::membership::{member_id, record, Member};
use super::propose::Proposal;
use super::{Caller, RequestContext, Server};
use crate::error::{Error, Result};
use crate::peer;
use crate::proto::etcdserverpb::{
    Member as MemberPb, MemberAddRequest, MemberAddResponse, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
    ResponseHeader,
};
use crate::proto::metastorepb::internal_request::Request;
use crate::proto::metastorepb::MemberRecord;
use crate::raft::{MemberChange, Role};

/// etcd promotes a learner only once it has 90% of the leader's log.
const LEARNER_READY_PERCENT: f64 = 0.9;

/// etcd's `IsReadyToAddVotingMember`: after the addition, the started voters (those that
/// published their name) must still make a quorum — except when growing a single member to two.
fn ready_to_add_voter(members: &[Member]) -> bool {
    let voters = members.iter().filter(|m| !m.is_learner);
    let started = voters.clone().filter(|m| !m.name.is_empty()).count();
    let after = voters.count() + 1;
    (started == 1 && after == 2) || started > after / 2
}

/// etcd's `IsReadyToRemoveVotingMember`: the started voters left must make a quorum.
fn ready_to_remove_voter(members: &[Member], id: u64) -> bool {
    let left: Vec<&Member> = members.iter().filter(|m| !m.is_learner && m.id != id).collect();
    let started = left.iter().filter(|m| !m.name.is_empty()).count();
    started > left.len() / 2
}

fn to_pb(m: &Member) -> MemberPb {
    MemberPb {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

fn to_pb_list(members: &[Member]) -> Vec<MemberPb> {
    members.iter().map(to_pb).collect()
}

/// etcd's `types.NewURLs` rules: a known scheme, `host:port`, no path (a query is allowed).
fn valid_urls(urls: &[String]) -> bool {
    !urls.is_empty() && urls.iter().all(|u| valid_url(u))
}

fn valid_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else { return false };
    if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
        return false;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, tail) = rest.split_at(end);
    let Some((name, port)) = host.rsplit_once(':') else { return false };
    let port_ok = port.chars().all(|c| c.is_ascii_digit());
    let name_ok = !name.contains(':') || (name.starts_with('[') && name.ends_with(']'));
    port_ok && name_ok && !tail.starts_with('/')
}

impl Server {
    pub fn members(&self) -> Vec<Member> {
        self.members.list()
    }

    /// etcd's cluster API headers carry no revision.
    fn cluster_header(&self) -> Option<ResponseHeader> {
        Some(self.header(0))
    }

    pub fn member_list(&self, _ctx: &RequestContext) -> MemberListResponse {
        MemberListResponse { header: self.cluster_header(), members: to_pb_list(&self.members.list()) }
    }

    pub fn is_learner(&self) -> bool {
        self.members.get(self.cfg.member_id).is_some_and(|m| m.is_learner)
    }

    /// Adds a member; answers with it and the member list after the change.
    pub async fn member_add(&self, ctx: &RequestContext, r: MemberAddRequest) -> Result<MemberAddResponse> {
        self.check_admin(ctx).await?;
        let (peer_urls, is_learner) = (r.peer_ur_ls, r.is_learner);
        if !valid_urls(&peer_urls) {
            return Err(Error::MemberBadUrls);
        }
        let members = self.members.list();
        // etcd's order: an id already in use (same URLs within the same second), then the URLs.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let id = member_id(&peer_urls, &format!("{}{now}", self.cfg.cluster_token));
        if members.iter().any(|m| m.id == id) {
            return Err(Error::MemberExists);
        }
        if members.iter().any(|m| m.peer_urls.iter().any(|u| peer_urls.contains(u))) {
            return Err(Error::PeerUrlExists);
        }
        if is_learner && members.iter().any(|m| m.is_learner) {
            return Err(Error::TooManyLearners);
        }
        if !is_learner && self.cfg.strict_reconfig_check && !ready_to_add_voter(&members) {
            return Err(Error::NotEnoughStartedMembers);
        }
        let member = Member { id, name: String::new(), peer_urls, client_urls: Vec::new(), is_learner };
        let change = if is_learner { MemberChange::AddLearner(id) } else { MemberChange::AddVoter(id) };
        self.change_membership(change, Some(record(&member))).await?;
        Ok(MemberAddResponse {
            header: self.cluster_header(),
            member: Some(to_pb(&member)),
            members: to_pb_list(&self.members.list()),
        })
    }

    pub async fn member_remove(&self, ctx: &RequestContext, r: MemberRemoveRequest) -> Result<MemberRemoveResponse> {
        self.check_admin(ctx).await?;
        let id = r.id;
        let member = self.members.get(id).ok_or(Error::MemberNotFound)?;
        if !member.is_learner && self.cfg.strict_reconfig_check && !ready_to_remove_voter(&self.members.list(), id) {
            return Err(Error::NotEnoughStartedMembers);
        }
        self.change_membership(MemberChange::Remove(id), None).await?;
        Ok(MemberRemoveResponse { header: self.cluster_header(), members: to_pb_list(&self.members.list()) })
    }

    pub async fn member_update(&self, ctx: &RequestContext, r: MemberUpdateRequest) -> Result<MemberUpdateResponse> {
        self.check_admin(ctx).await?;
        let (id, peer_urls) = (r.id, r.peer_ur_ls);
        if !valid_urls(&peer_urls) {
            return Err(Error::MemberBadUrls);
        }
        self.members.get(id).ok_or(Error::MemberNotFound)?;
        let members = self.members.list();
        if members.iter().any(|m| m.id != id && m.peer_urls.iter().any(|u| peer_urls.contains(u))) {
            return Err(Error::PeerUrlExists);
        }
        let update = MemberRecord { id, peer_urls, ..Default::default() };
        self.propose::<()>(Proposal::Command(Request::MemberUpdate(update), Caller::Member)).await?;
        Ok(MemberUpdateResponse { header: self.cluster_header(), members: to_pb_list(&self.members.list()) })
    }

    /// Promotes a learner that has caught up with the leader (refused otherwise, as etcd);
    /// followers forward the promotion to the leader.
    pub async fn member_promote(&self, ctx: &RequestContext, r: MemberPromoteRequest) -> Result<MemberPromoteResponse> {
        self.check_admin(ctx).await?;
        self.promote(r.id).await?;
        Ok(MemberPromoteResponse { header: self.cluster_header(), members: to_pb_list(&self.members.list()) })
    }

    async fn promote(&self, id: u64) -> Result<()> {
        let member = self.members.get(id).ok_or(Error::MemberNotFound)?;
        if !member.is_learner {
            return Err(Error::MemberNotLearner);
        }
        let status = self.raft.status();
        if status.role != Role::Leader {
            return self.promote_on_leader(id).await;
        }
        let leader_match = status.last_index as f64;
        let learner_match = status.matched.iter().find(|(m, _)| *m == id).map(|(_, i)| *i).unwrap_or(0) as f64;
        if learner_match < leader_match * LEARNER_READY_PERCENT {
            return Err(Error::LearnerNotReady);
        }
        self.change_membership(MemberChange::AddVoter(id), Some(record(&Member { is_learner: false, ..member }))).await
    }

    /// Forwards a promotion to the leader's peer API, as etcd does, then waits until this member
    /// has applied it, so it answers with the member list after the change.
    async fn promote_on_leader(&self, id: u64) -> Result<()> {
        self.on_leader(|leader| peer::promote(leader, id)).await?;
        self.linearizable_barrier().await
    }

    /// Hands leadership to voter `to` and waits until it leads.
    pub(super) async fn transfer_leadership(&self, to: u64) -> Result<()> {
        let status = self.raft.status();
        if status.role != Role::Leader {
            return Err(Error::NotLeader);
        }
        match self.members.get(to) {
            Some(m) if !m.is_learner => {}
            _ => return Err(Error::BadLeaderTransferee),
        }
        if to == status.id {
            return Ok(());
        }
        self.raft.transfer_leader(to)?;
        let mut watch = self.raft.subscribe();
        let moved = async { watch.wait_for(|s| s.leader_id == to).await.map(|_| ()) };
        match tokio::time::timeout(self.cfg.request_timeout(), moved).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }

    async fn change_membership(&self, change: MemberChange, member: Option<MemberRecord>) -> Result<()> {
        self.propose(Proposal::Membership(change, member)).await
    }

    /// Publishes this member's name and client URLs through raft (etcd's "published"), retrying
    /// until it is applied.
    pub async fn publish(&self, name: String, client_urls: Vec<String>) {
        let attrs = MemberRecord { id: self.cfg.member_id, name, client_urls, ..Default::default() };
        loop {
            match self.propose::<()>(Proposal::Command(Request::MemberAttributes(attrs.clone()), Caller::Member)).await
            {
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "publishing member attributes; retrying");
                    tokio::time::sleep(self.cfg.heartbeat * 5).await;
                }
            }
        }
    }

    /// Whether a raft stream that says it comes from cluster `cluster_id` may be served: refused
    /// when the id names another cluster (etcd's `X-Etcd-Cluster-ID` check).
    pub fn accepts_cluster(&self, cluster_id: u64) -> Result<()> {
        if cluster_id == self.cfg.cluster_id {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "cluster ID mismatch: this member is in cluster {:x}, the sender said {cluster_id:x}",
            self.cfg.cluster_id
        )))
    }

    /// Hands a raft message from a peer to the node loop.
    pub fn step_peer_message(&self, bytes: &[u8]) -> Result<()> {
        self.raft.step_encoded(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, started: bool, is_learner: bool) -> Member {
        Member { id, name: if started { format!("m{id}") } else { String::new() }, is_learner, ..Default::default() }
    }

    #[test]
    fn member_urls_follow_etcds_rules() {
        for ok in
            ["http://127.0.0.1:2380", "https://a.b:1", "http://127.0.0.1:1?q=1", "unix://sock:1", "http://[::1]:2380"]
        {
            assert!(valid_url(ok), "{ok}");
        }
        for bad in ["http://", "http://127.0.0.1:1/path", "http://127.0.0.1", "http://unix://x", "ftp://a:1", "a:1"] {
            assert!(!valid_url(bad), "{bad}");
        }
    }

    #[test]
    fn strict_reconfig_rules_match_etcd() {
        // Growing a single started member to two is allowed (restoring a cluster).
        assert!(ready_to_add_voter(&[member(1, true, false)]));
        // 3 voters, one never started: a fourth needs 3 started of 4.
        let three = [member(1, true, false), member(2, true, false), member(3, false, false)];
        assert!(!ready_to_add_voter(&three));
        assert!(ready_to_add_voter(&[member(1, true, false), member(2, true, false), member(3, true, false)]));
        // Removing a started member of that cluster leaves 1 started of 2: refused.
        assert!(!ready_to_remove_voter(&three, 1));
        // Removing the member that never started leaves 2 of 2.
        assert!(ready_to_remove_voter(&three, 3));
        // Learners do not count.
        assert!(ready_to_remove_voter(&[member(1, true, false), member(2, false, true)], 2));
    }
}
