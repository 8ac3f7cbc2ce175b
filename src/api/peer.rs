//! The peer API served on `--listen-peer-urls`: raft message streams from other members, and the
//! cluster description a joining member asks for.

use std::sync::Arc;

use futures::StreamExt;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

use super::status::to_status;
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::MemberPromoteRequest;
use crate::proto::metastorepb::peer_server::{Peer, PeerServer};
use crate::proto::metastorepb::{
    ClusterInfo, ClusterRequest, LeaseRenewRequest, LeaseRenewResponse, LeaseTimeToLiveAnswer, MemberRecord,
    PromoteRequest, PromoteResponse, RaftAck, RaftBatch,
};
use crate::server::{RequestContext, Server, CLUSTER_ID_HEADER};
use crate::tls::PeerTls;

pub struct PeerService {
    pub server: Arc<Server>,
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<RaftAck>, Status> {
        let claimed = req.metadata().get(CLUSTER_ID_HEADER).and_then(|v| v.to_str().ok());
        if let Err(e) = self.server.accepts_cluster(claimed) {
            tracing::warn!(error = %e, from = ?req.remote_addr(), "refused a raft stream");
            return Err(Status::failed_precondition(e.to_string()));
        }
        let mut stream = req.into_inner();
        while let Some(batch) = stream.next().await {
            for msg in batch?.messages {
                if let Err(e) = self.server.step_peer_message(&msg) {
                    return Err(Status::unavailable(e.to_string()));
                }
            }
        }
        Ok(Response::new(RaftAck {}))
    }

    async fn cluster(&self, _req: Request<ClusterRequest>) -> Result<Response<ClusterInfo>, Status> {
        let members = self
            .server
            .members()
            .into_iter()
            .map(|m| MemberRecord {
                id: m.id,
                name: m.name,
                peer_urls: m.peer_urls,
                client_urls: m.client_urls,
                is_learner: m.is_learner,
            })
            .collect();
        Ok(Response::new(ClusterInfo { cluster_id: self.server.config().cluster_id, members }))
    }

    async fn promote(&self, req: Request<PromoteRequest>) -> Result<Response<PromoteResponse>, Status> {
        let ctx = RequestContext::peer(req.remote_addr());
        self.server.member_promote(&ctx, MemberPromoteRequest { id: req.into_inner().id }).await.map_err(to_status)?;
        Ok(Response::new(PromoteResponse {}))
    }

    async fn lease_renew(&self, req: Request<LeaseRenewRequest>) -> Result<Response<LeaseRenewResponse>, Status> {
        let ttl = self.server.lease_renew_as_leader(req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(LeaseRenewResponse { ttl }))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseTimeToLiveAnswer>, Status> {
        let status = self.server.lease_time_to_live_as_leader(req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(match status {
            Some(s) => LeaseTimeToLiveAnswer { found: true, remaining: s.remaining, granted: s.granted, keys: s.keys },
            None => LeaseTimeToLiveAnswer::default(),
        }))
    }
}

/// Serves the peer API on `listener` until the process ends, over TLS when `tls` is given.
pub async fn serve(server: Arc<Server>, listener: TcpListener, tls: Option<PeerTls>) -> Result<()> {
    let peer = PeerServer::new(PeerService { server }).max_decoding_message_size(1024 * 1024 * 1024);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.server_config()).map_err(|e| Error::Internal(format!("peer TLS: {e}")))?;
    }
    builder
        .add_service(peer)
        .serve_with_incoming(super::incoming(listener))
        .await
        .map_err(|e| Error::Internal(format!("peer listener: {e}")))
}
