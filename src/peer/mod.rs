//! The member-to-member protocol, client and server side, in one place: the gRPC `Peer` service
//! (`proto/metastore/peer.proto`) served on `--listen-peer-urls`, and every call a member makes to
//! another.
//!
//! ```text
//!  raft transport ──raft_stream──►  ┐
//!  server (forward) ──promote / lease_renew / lease_time_to_live──► leader's PeerService ──► PeerHandler (Server)
//!  identity (join) ──cluster──────►  ┘
//!  server (corruption checks) ──hash_kv──► every other member's PeerService
//! ```
//!
//! * Raft streams carry the sender's cluster id (`x-etcd-cluster-id`, etcd's `X-Etcd-Cluster-ID`);
//!   a member of another cluster is refused.
//! * Calls only the leader can answer travel back with etcd's error as the status message, so the
//!   caller gets the same [`Error`] the leader met ([`Error::from_message`]); transport failures
//!   read as `no leader` (the caller retries).
//! * The service is generic over a [`PeerHandler`] (the server implements it), so this module
//!   depends on nothing above it: `raft`, `server` and the binary all call into it.

mod client;
mod service;

pub use client::{cluster, connect, hash_kv, lease_renew, lease_time_to_live, open_raft_stream, probe, promote};
pub use service::{serve, PeerService};

use crate::error::Result;
use crate::proto::etcdserverpb::HashKvResponse;
use crate::proto::metastorepb::{ClusterInfo, LeaseTimeToLiveAnswer};

/// The metadata key carrying the sender's cluster id on raft streams.
pub const CLUSTER_ID_HEADER: &str = "x-etcd-cluster-id";
/// The metadata key carrying the sending member's hex id on raft streams (etcd's `X-Server-From`),
/// for `etcd_network_peer_received_bytes_total{From}`.
pub const FROM_HEADER: &str = "x-server-from";

/// What a member answers to its peers.
#[tonic::async_trait]
pub trait PeerHandler: Send + Sync + 'static {
    /// Refuses a raft stream that says it comes from another cluster (`hex_id`; none: accepted).
    fn accepts_cluster(&self, hex_id: Option<&str>) -> Result<()>;
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
