//! `etcdserverpb.Maintenance`: status with real raft and storage figures; alarms (none are ever
//! raised yet), defragment (RocksDB compacts in the background, so there is nothing to do).
//! MoveLeader hands leadership to a caught-up voter. Hash, HashKV and Snapshot answer
//! `Unimplemented` until they exist.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest,
    HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use crate::server::Server;

/// The etcd version reported to clients; clients and Kubernetes gate features on it.
pub const ETCD_VERSION: &str = "3.4.23";

pub struct MaintenanceService {
    pub server: Arc<Server>,
}

type SnapshotStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, _req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let header = Some(self.server.header(self.server.revision()));
        Ok(Response::new(AlarmResponse { header, alarms: Vec::new() }))
    }

    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let raft = self.server.raft_status();
        let db_size = self.server.engine().size_bytes() as i64;
        Ok(Response::new(StatusResponse {
            header: Some(self.server.header(self.server.revision())),
            version: ETCD_VERSION.to_string(),
            db_size,
            leader: raft.leader_id,
            raft_index: raft.commit,
            raft_term: raft.term,
            raft_applied_index: raft.applied,
            errors: Vec::new(),
            db_size_in_use: db_size,
            is_learner: self.server.is_learner(),
        }))
    }

    async fn defragment(&self, _req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        Ok(Response::new(DefragmentResponse { header: Some(self.server.header(self.server.revision())) }))
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
        self.server.move_leader(req.into_inner().target_id).await.map_err(to_status)?;
        Ok(Response::new(MoveLeaderResponse { header: Some(self.server.header(self.server.revision())) }))
    }
}
