//! The calling side of the peer protocol.

use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::{HashKvRequest, HashKvResponse};
use crate::proto::metastorepb::peer_client::PeerClient;
use crate::proto::metastorepb::{
    ClusterInfo, ClusterRequest, LeaseRenewRequest, LeaseTimeToLiveAnswer, PromoteRequest,
};
use crate::tls::{self, PeerTls};

/// A channel to the member at `url` (`https://` with the member's peer TLS settings).
pub async fn connect(url: &str, tls: Option<&PeerTls>) -> Result<Channel> {
    tls::connect(url, tls).await
}

/// The round trip of one small call on `channel` (the transport's probe).
pub async fn probe(channel: Channel) -> std::result::Result<std::time::Duration, tonic::Status> {
    let started = std::time::Instant::now();
    PeerClient::new(channel).cluster(ClusterRequest {}).await?;
    Ok(started.elapsed())
}

/// The cluster as the member at `url` knows it (for joining).
pub async fn cluster(url: &str, tls: Option<&PeerTls>) -> std::result::Result<ClusterInfo, String> {
    let channel = connect(url, tls).await.map_err(|e| format!("{url}: {e}"))?;
    let info = PeerClient::new(channel).cluster(ClusterRequest {}).await;
    info.map(|r| r.into_inner()).map_err(|e| format!("{url}: {}", e.message()))
}

/// An etcd error the other member answered travels back as itself; anything else (transport
/// failures included) reads as `no leader`, which callers retry.
fn answer<T>(r: std::result::Result<tonic::Response<T>, tonic::Status>) -> Result<T> {
    r.map(|resp| resp.into_inner()).map_err(|status| {
        Error::from_message(status.message()).unwrap_or_else(|| {
            tracing::debug!(error = %status, "a peer call failed");
            Error::NoLeader
        })
    })
}

pub async fn promote(channel: Channel, id: u64) -> Result<()> {
    answer(PeerClient::new(channel).promote(PromoteRequest { id }).await).map(|_| ())
}

pub async fn lease_renew(channel: Channel, id: i64) -> Result<i64> {
    answer(PeerClient::new(channel).lease_renew(LeaseRenewRequest { id }).await).map(|r| r.ttl)
}

pub async fn lease_time_to_live(channel: Channel, id: i64) -> Result<LeaseTimeToLiveAnswer> {
    answer(PeerClient::new(channel).lease_time_to_live(LeaseRenewRequest { id }).await)
}

/// The HashKV of the member at `url` at `revision`; its etcd errors (`compacted`, `future
/// revision`) travel back as themselves.
pub async fn hash_kv(url: &str, tls: Option<&PeerTls>, revision: i64) -> Result<HashKvResponse> {
    let channel = connect(url, tls).await?;
    answer(PeerClient::new(channel).hash_kv(HashKvRequest { revision }).await)
}
