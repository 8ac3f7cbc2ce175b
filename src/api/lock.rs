//! `v3lockpb.Lock`: Lock and Unlock, answered by the server (`server::concurrency`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::context;
use super::status::to_status;
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::server::Server;

pub struct LockService {
    pub server: Arc<Server>,
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let ctx = context(&req);
        self.server.lock(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn unlock(&self, req: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let ctx = context(&req);
        self.server.unlock(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }
}
