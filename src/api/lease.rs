//! `etcdserverpb.Lease`: grant, revoke, keep-alive (a bidirectional stream), time-to-live and the
//! lease list. Thin: the server answers each request completely (headers included), as etcd does.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::context;
use super::status::to_status;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::server::{RequestContext, Server};

pub struct LeaseService {
    pub server: Arc<Server>,
}

pub(super) type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

/// Answers a stream of keep-alives (from gRPC or the JSON gateway) in order.
pub(super) fn keep_alive(
    server: Arc<Server>,
    ctx: RequestContext,
    mut incoming: impl Stream<Item = Result<LeaseKeepAliveRequest, Status>> + Send + Unpin + 'static,
) -> KeepAliveStream {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(Ok(req)) = incoming.next().await {
            let answer = server.lease_keep_alive(&ctx, req.id).await.map_err(to_status);
            let failed = answer.is_err();
            if tx.send(answer).await.is_err() || failed {
                return; // the client went away, or saw the error
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let ctx = context(&req);
        self.server.lease_grant(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        let ctx = context(&req);
        self.server.lease_revoke(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    /// Keep-alives are answered in order; an error (no leader within the request timeout) ends
    /// the stream, as in etcd, and the client opens a new one.
    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let ctx = context(&req);
        Ok(Response::new(keep_alive(self.server.clone(), ctx, req.into_inner())))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let ctx = context(&req);
        self.server.lease_time_to_live_response(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn lease_leases(&self, req: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        let ctx = context(&req);
        self.server.lease_leases(&ctx).await.map(Response::new).map_err(to_status)
    }
}
