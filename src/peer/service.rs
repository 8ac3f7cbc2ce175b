//! The serving side of the peer protocol, over any [`PeerHandler`].

use std::sync::Arc;

use futures::StreamExt;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

use super::{PeerHandler, CLUSTER_ID_HEADER, FROM_HEADER};
use crate::error::{to_status, Error, Result};
use crate::proto::etcdserverpb::{HashKvRequest, HashKvResponse};
use crate::proto::metastorepb::peer_server::{Peer, PeerServer};
use crate::proto::metastorepb::{
    ClusterInfo, ClusterRequest, LeaseRenewRequest, LeaseRenewResponse, LeaseTimeToLiveAnswer, PromoteRequest,
    PromoteResponse, RaftAck, RaftBatch,
};
use crate::tls::PeerTls;

pub struct PeerService<H: PeerHandler> {
    pub handler: Arc<H>,
}

#[tonic::async_trait]
impl<H: PeerHandler> Peer for PeerService<H> {
    async fn raft(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<RaftAck>, Status> {
        let claimed = req.metadata().get(CLUSTER_ID_HEADER).and_then(|v| v.to_str().ok());
        if let Err(e) = self.handler.accepts_cluster(claimed) {
            tracing::warn!(error = %e, from = ?req.remote_addr(), "refused a raft stream");
            return Err(Status::failed_precondition(e.to_string()));
        }
        let from = req.metadata().get(FROM_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
        let received = crate::metrics::get().peer_received_bytes.with_label_values(&[from]);
        let mut stream = req.into_inner();
        while let Some(batch) = stream.next().await {
            for msg in batch?.messages {
                received.inc_by(msg.len() as u64);
                if let Err(e) = self.handler.step(&msg) {
                    return Err(Status::unavailable(e.to_string()));
                }
            }
        }
        Ok(Response::new(RaftAck {}))
    }

    async fn cluster(&self, _req: Request<ClusterRequest>) -> Result<Response<ClusterInfo>, Status> {
        Ok(Response::new(self.handler.cluster()))
    }

    async fn promote(&self, req: Request<PromoteRequest>) -> Result<Response<PromoteResponse>, Status> {
        self.handler.promote(req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(PromoteResponse {}))
    }

    async fn lease_renew(&self, req: Request<LeaseRenewRequest>) -> Result<Response<LeaseRenewResponse>, Status> {
        let ttl = self.handler.lease_renew(req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(LeaseRenewResponse { ttl }))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseTimeToLiveAnswer>, Status> {
        self.handler.lease_time_to_live(req.into_inner().id).await.map(Response::new).map_err(to_status)
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.handler.hash_kv(req.into_inner().revision).await.map(Response::new).map_err(to_status)
    }
}

/// Serves the peer API on `listener` until the process ends, over TLS when `tls` is given.
pub async fn serve<H: PeerHandler>(handler: Arc<H>, listener: TcpListener, tls: Option<PeerTls>) -> Result<()> {
    let peer = PeerServer::new(PeerService { handler }).max_decoding_message_size(1024 * 1024 * 1024);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.server_config()).map_err(|e| Error::Internal(format!("peer TLS: {e}")))?;
    }
    builder
        .add_service(peer)
        .serve_with_incoming(crate::tls::incoming(listener))
        .await
        .map_err(|e| Error::Internal(format!("peer listener: {e}")))
}
