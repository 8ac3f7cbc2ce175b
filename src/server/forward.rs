//! The server's side of the peer protocol ([`crate::peer`]): what it answers to its peers
//! ([`PeerHandler`]), and the requests only the leader can answer — lease keep-alives and time-to-live (its lessor alone
//! tracks expiry) and learner promotion (it alone knows how far a learner got) — forwarded from
//! followers over the peer API, as etcd forwards them over its peer HTTP API.
//!
//! One channel to the current leader's peer URL is cached; a leader change replaces it and a
//! failed call drops it. Callers retry retryable failures until the request timeout
//! ([`Server::until_leader_answers`]), so a keep-alive stream stays open across an election.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::Channel;

use super::membership::record;
use super::RequestContext;
use super::Server;
use crate::error::{Error, Result};
use crate::peer::{self, PeerHandler};
use crate::proto::etcdserverpb::{HashKvRequest, HashKvResponse, MemberPromoteRequest};
use crate::proto::metastorepb::{ClusterInfo, LeaseTimeToLiveAnswer};

/// Pause between attempts while no leader answers.
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// The cached channel to the leader: `(leader id, channel)`.
#[derive(Default)]
pub(super) struct LeaderLink {
    cached: Mutex<Option<(u64, Channel)>>,
}

impl LeaderLink {
    fn get(&self, leader: u64) -> Option<Channel> {
        let cached = self.cached.lock().expect("leader link lock");
        cached.as_ref().filter(|(id, _)| *id == leader).map(|(_, ch)| ch.clone())
    }

    fn set(&self, leader: u64, channel: Channel) {
        *self.cached.lock().expect("leader link lock") = Some((leader, channel));
    }

    fn forget(&self) {
        *self.cached.lock().expect("leader link lock") = None;
    }
}

/// Failures worth another attempt before the request timeout: no leader yet, a leader that just
/// stepped down, or one that could not be reached.
fn retryable(e: &Error) -> bool {
    matches!(e, Error::NoLeader | Error::NotLeader | Error::LeaderChanged)
}

impl Server {
    /// Runs `attempt` until it succeeds, fails for good, or the request timeout passes.
    pub(super) async fn until_leader_answers<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.cfg.request_timeout();
        loop {
            match attempt().await {
                Err(e) if retryable(&e) && tokio::time::Instant::now() + RETRY_EVERY < deadline => {
                    tokio::time::sleep(RETRY_EVERY).await;
                }
                Err(e) if retryable(&e) => return Err(Error::Timeout),
                other => return other,
            }
        }
    }

    /// Calls the leader's peer API once (`call` gets a channel to it). Transport failures read as
    /// `NoLeader` (retryable); an etcd error the leader answered travels back as itself.
    pub(super) async fn on_leader<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let leader = self.raft.status().leader_id;
        if leader == 0 || leader == self.cfg.member_id {
            return Err(Error::NoLeader);
        }
        let channel = match self.leader_link.get(leader) {
            Some(ch) => ch,
            None => {
                let url = self.members.get(leader).and_then(|m| m.peer_urls.first().cloned()).ok_or(Error::NoLeader)?;
                let ch = peer::connect(&url, self.raft.peers().tls()).await.map_err(|_| Error::NoLeader)?;
                self.leader_link.set(leader, ch.clone());
                ch
            }
        };
        let answer = call(channel).await;
        if matches!(answer, Err(Error::NoLeader)) {
            self.leader_link.forget();
        }
        answer
    }
}

/// What this member answers to its peers (`crate::peer`).
#[tonic::async_trait]
impl PeerHandler for Server {
    fn accepts_cluster(&self, cluster_id: u64) -> Result<()> {
        Server::accepts_cluster(self, cluster_id)
    }

    fn step(&self, message: &[u8]) -> Result<()> {
        self.step_peer_message(message)
    }

    fn cluster(&self) -> ClusterInfo {
        let members = self.members.list().iter().map(record).collect();
        ClusterInfo { cluster_id: self.cfg.cluster_id, members }
    }

    async fn promote(&self, id: u64) -> Result<()> {
        let ctx = RequestContext::peer(None);
        self.member_promote(&ctx, MemberPromoteRequest { id }).await.map(|_| ())
    }

    async fn lease_renew(&self, id: i64) -> Result<i64> {
        self.lease_renew_as_leader(id).await
    }

    async fn lease_time_to_live(&self, id: i64) -> Result<LeaseTimeToLiveAnswer> {
        Ok(match self.lease_time_to_live_as_leader(id).await? {
            Some(s) => LeaseTimeToLiveAnswer { found: true, remaining: s.remaining, granted: s.granted, keys: s.keys },
            None => LeaseTimeToLiveAnswer::default(),
        })
    }

    async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        self.hash_kv(&RequestContext::peer(None), HashKvRequest { revision }).await
    }
}
