//! `v3electionpb.Election`: Campaign, Proclaim, Leader, Observe and Resign, answered by the
//! server (`server::concurrency`).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::context;
use super::status::to_status;
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse, ResignRequest,
    ResignResponse,
};
use crate::server::Server;

pub struct ElectionService {
    pub server: Arc<Server>,
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, req: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let ctx = context(&req);
        self.server.campaign(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn proclaim(&self, req: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let ctx = context(&req);
        self.server.proclaim(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn leader(&self, req: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let ctx = context(&req);
        self.server.leader(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    type ObserveStream = ObserveStream;

    async fn observe(&self, req: Request<LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let ctx = context(&req);
        let leaders = self.server.observe(&ctx, req.into_inner());
        Ok(Response::new(Box::pin(ReceiverStream::new(leaders).map(Ok))))
    }

    async fn resign(&self, req: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let ctx = context(&req);
        self.server.resign(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }
}
