//! `etcdserverpb.Cluster`: the member list and membership changes.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
    ResponseHeader,
};
use crate::server::{self, Server};

pub struct ClusterService {
    pub server: Arc<Server>,
}

fn to_pb(m: &server::Member) -> Member {
    Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

fn to_pb_list(members: &[server::Member]) -> Vec<Member> {
    members.iter().map(to_pb).collect()
}

impl ClusterService {
    /// etcd's cluster API headers carry no revision.
    fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader { revision: 0, ..self.server.header(0) })
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let r = req.into_inner();
        let (member, members) = self.server.member_add(r.peer_ur_ls, r.is_learner).await.map_err(to_status)?;
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member: Some(to_pb(&member)),
            members: to_pb_list(&members),
        }))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        let members = self.server.member_remove(req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(MemberRemoveResponse { header: self.header(), members: to_pb_list(&members) }))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        let r = req.into_inner();
        let members = self.server.member_update(r.id, r.peer_ur_ls).await.map_err(to_status)?;
        Ok(Response::new(MemberUpdateResponse { header: self.header(), members: to_pb_list(&members) }))
    }

    async fn member_list(&self, _req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        let members = self.server.members();
        Ok(Response::new(MemberListResponse { header: self.header(), members: to_pb_list(&members) }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let members = self.server.member_promote(req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(MemberPromoteResponse { header: self.header(), members: to_pb_list(&members) }))
    }
}
