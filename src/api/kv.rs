//! `etcdserverpb.KV`: validate, call the server, fill the header.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::server::Server;

pub struct KvService {
    pub server: Arc<Server>,
}

impl KvService {
    /// Fills cluster, member and term into a header whose revision the server chose.
    fn fill(&self, header: &mut Option<ResponseHeader>) {
        let revision = header.as_ref().map(|h| h.revision).unwrap_or_else(|| self.server.revision());
        *header = Some(self.server.header(revision));
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let mut resp = self.server.range(req.get_ref()).await.map_err(to_status)?;
        self.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let mut resp = self.server.put(req.into_inner()).await.map_err(to_status)?;
        self.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        let mut resp = self.server.delete_range(req.into_inner()).await.map_err(to_status)?;
        self.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let mut resp = self.server.txn(req.into_inner()).await.map_err(to_status)?;
        self.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let mut resp = self.server.compact(req.into_inner()).await.map_err(to_status)?;
        self.fill(&mut resp.header);
        Ok(Response::new(resp))
    }
}
