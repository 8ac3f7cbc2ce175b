//! `etcdserverpb.KV`: build the request context, call the server (which validates, runs the
//! request and completes the header), map errors.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::context;
use super::status::to_status;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::server::Server;

pub struct KvService {
    pub server: Arc<Server>,
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let ctx = context(&req);
        self.server.range(&ctx, req.get_ref()).await.map(Response::new).map_err(to_status)
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let ctx = context(&req);
        self.server.put(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        let ctx = context(&req);
        self.server.delete_range(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let ctx = context(&req);
        self.server.txn(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let ctx = context(&req);
        self.server.compact(&ctx, req.into_inner()).await.map(Response::new).map_err(to_status)
    }
}
