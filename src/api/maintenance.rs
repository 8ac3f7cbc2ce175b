//! `etcdserverpb.Maintenance`: status, alarms, defragment and leadership transfer, answered by the
//! server. Hash, HashKV and Snapshot answer `Unimplemented` until they exist.

use std::sync::Arc;

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
        Ok(Response::new(self.server.alarm(&ctx, req.into_inner())))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.server.status_response(&context(&req))))
    }

    async fn defragment(&self, req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        self.server.defragment(&context(&req)).await.map(Response::new).map_err(to_status)
    }

    async fn hash(&self, _req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(Status::unimplemented("Maintenance.Hash is not implemented by MetaStore yet"))
    }

    async fn hash_kv(&self, _req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        Err(Status::unimplemented("Maintenance.HashKV is not implemented by MetaStore yet"))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, _req: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(Status::unimplemented("Maintenance.Snapshot is not implemented by MetaStore yet"))
    }

    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        let ctx = context(&req);
        self.server.move_leader(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }
}
