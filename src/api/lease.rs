//! `etcdserverpb.Lease`: grant, revoke, keep-alive (a bidirectional stream), time-to-live and
//! the lease list, answered as etcd answers them (an unknown lease in time-to-live is TTL -1, in
//! a keep-alive TTL 0 — not errors).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::status::to_status;
use crate::error::Error;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use crate::server::Server;

pub struct LeaseService {
    pub server: Arc<Server>,
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut resp = self.server.lease_grant(req.into_inner()).await.map_err(to_status)?;
        resp.header = Some(self.server.header(self.server.revision()));
        Ok(Response::new(resp))
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        let mut resp = self.server.lease_revoke(req.into_inner()).await.map_err(to_status)?;
        let revision = resp.header.map(|h| h.revision).unwrap_or_else(|| self.server.revision());
        resp.header = Some(self.server.header(revision));
        Ok(Response::new(resp))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut incoming = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let server = self.server.clone();
        tokio::spawn(async move {
            while let Some(Ok(req)) = incoming.next().await {
                let ttl = match server.lease_renew(req.id).await {
                    Ok(ttl) => ttl,
                    Err(Error::LeaseNotFound) => 0,
                    Err(e) => {
                        // The client sees the error and may retry on another stream.
                        let _closed = tx.send(Err(to_status(e))).await;
                        return;
                    }
                };
                let resp = LeaseKeepAliveResponse { header: Some(server.header(server.revision())), id: req.id, ttl };
                if tx.send(Ok(resp)).await.is_err() {
                    return; // client went away
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let r = req.into_inner();
        let status = self.server.lease_time_to_live(r.id).await.map_err(to_status)?;
        let header = Some(self.server.header(self.server.revision()));
        let resp = match status {
            Some(s) => LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: s.remaining,
                granted_ttl: s.granted,
                keys: if r.keys { s.keys } else { Vec::new() },
            },
            None => LeaseTimeToLiveResponse { header, id: r.id, ttl: -1, granted_ttl: 0, keys: Vec::new() },
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(&self, _req: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        let ids = self.server.lease_leases().await.map_err(to_status)?;
        let leases = ids.into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse { header: Some(self.server.header(self.server.revision())), leases }))
    }
}
