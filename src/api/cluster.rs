//! `etcdserverpb.Cluster`: the member list and membership changes, answered by the server.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::context;
use super::status::to_status;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use crate::server::Server;

pub struct ClusterService {
    pub server: Arc<Server>,
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let ctx = context(&req);
        self.server.member_add(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        let ctx = context(&req);
        self.server.member_remove(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        let ctx = context(&req);
        self.server.member_update(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(self.server.member_list(&context(&req))))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let ctx = context(&req);
        self.server.member_promote(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }
}
