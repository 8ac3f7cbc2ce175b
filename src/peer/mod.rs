//! The member-to-member protocol, client and server side, in one place: on each
//! `--listen-peer-urls` port, the raft streams ([`raft_stream`]: framed raft messages, as etcd's
//! rafthttp stream) and the gRPC `Peer` service (`proto/metastore/peer.proto`) for every other
//! call a member makes to another. [`serve`] tells the two apart by a connection's first bytes.
//!
//! ```text
//!  raft transport ──RaftStream (framed messages)──► peer port ──► PeerHandler::step (node queue)
//!  server (forward) ──promote / lease_renew / lease_time_to_live──► leader's PeerService ──► PeerHandler (Server)
//!  identity (join) ──cluster──────►  ┘
//!  server (corruption checks) ──hash_kv──► every other member's PeerService
//! ```
//!
//! * Raft streams open with the sender's cluster id (etcd's `X-Etcd-Cluster-ID`) and member id;
//!   a member of another cluster is refused.
//! * Calls only the leader can answer travel back with etcd's error as the status message, so the
//!   caller gets the same [`Error`] the leader met ([`Error::from_message`]); transport failures
//!   read as `no leader` (the caller retries).
//! * The service is generic over a [`PeerHandler`] (the server implements it), so this module
//!   depends on nothing above it: `raft`, `server` and the binary all call into it.

mod client;
pub mod raft_stream;
mod service;

pub use client::{cluster, connect, hash_kv, lease_renew, lease_time_to_live, probe, promote};
pub use raft_stream::RaftStream;
pub use service::{serve, PeerService};

use crate::error::Result;
use crate::proto::etcdserverpb::HashKvResponse;
use crate::proto::metastorepb::{ClusterInfo, LeaseTimeToLiveAnswer};

/// What a member answers to its peers.
#[tonic::async_trait]
pub trait PeerHandler: Send + Sync + 'static {
    /// Refuses a raft stream that says it comes from another cluster.
    fn accepts_cluster(&self, cluster_id: u64) -> Result<()>;
    /// Hands one encoded raft message to the node.
    fn step(&self, message: &[u8]) -> Result<()>;
    /// The cluster id and members, for a member joining with `--initial-cluster-state existing`.
    fn cluster(&self) -> ClusterInfo;
    /// Promotes learner `id` (only a leader can tell whether it caught up).
    async fn promote(&self, id: u64) -> Result<()>;
    /// Renews lease `id`; `NotLeader` unless this member leads.
    async fn lease_renew(&self, id: i64) -> Result<i64>;
    /// Lease `id`'s remaining and granted TTL and keys; `NotLeader` unless this member leads.
    async fn lease_time_to_live(&self, id: i64) -> Result<LeaseTimeToLiveAnswer>;
    /// This member's HashKV at `revision` (0: the current one), for the corruption checks.
    async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse>;
}
