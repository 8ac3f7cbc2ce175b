//! `etcdserverpb.Maintenance`: status, alarms, defragment, hashes, leadership transfer and the
//! snapshot stream, answered by the server.

use std::sync::Arc;

use futures::StreamExt as _;
use tonic::{Request, Response, Status};

use super::context;
use super::status::to_status;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest,
    HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use crate::server::Server;

pub struct MaintenanceService {
    pub server: Arc<Server>,
}

type SnapshotStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let ctx = context(&req);
        self.server.alarm(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.server.status_response(&context(&req))))
    }

    async fn defragment(&self, req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        self.server.defragment(&context(&req)).await.map(Response::new).map_err(to_status)
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.server.hash(&context(&req)).await.map(Response::new).map_err(to_status)
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let ctx = context(&req);
        self.server.hash_kv(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, req: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let chunks = self.server.snapshot(&context(&req)).await.map_err(to_status)?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(chunks).map(|r| r.map_err(to_status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        let ctx = context(&req);
        self.server.move_leader(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }
}
