//! `etcdserverpb.KV`: build the request context, call the server (which validates, runs the
//! request and completes the header), map errors.
//!
//! `KV/Range` has a route of its own, [`RangeRoute`], registered beside the generated
//! `KvServer` (an exact path wins over the service's wildcard): it answers with the server's
//! [`EncodedRange`], whose key-values are the stored records copied as they are (see
//! `server::encoded_range`), through [`RangeCodec`], which reserves the whole answer before
//! encoding it. The bytes on the wire are the `RangeResponse` the generated route would send.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::{Request, Response, Status};

use super::context;
use super::status::to_status;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::server::encoded_range::EncodedRange;
use crate::server::Server;

pub struct KvService {
    pub server: Arc<Server>,
}

#[tonic::async_trait]
impl Kv for KvService {
    /// Not reached over gRPC ([`RangeRoute`] serves the path); answers the same.
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

/// The gRPC route of `KV/Range` (see the module doc).
#[derive(Clone)]
pub struct RangeRoute {
    pub server: Arc<Server>,
    /// Largest request accepted, as the other services' `max_decoding_message_size`.
    pub max_request_bytes: usize,
}

impl RangeRoute {
    pub const PATH: &'static str = "/etcdserverpb.KV/Range";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<B> tower::Service<http::Request<B>> for RangeRoute
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (server, max) = (self.server.clone(), self.max_request_bytes);
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(RangeCodec).apply_max_message_size_config(Some(max), Some(usize::MAX));
            Ok(grpc.unary(RangeCall(server), req).await)
        })
    }
}

/// The prost codec of `KV/Range`, except that the encoder reserves the whole answer before
/// writing it: a 1,000-key answer is about 300 KB, and writing it into tonic's 8 KiB buffer grew
/// (reallocated and copied) that buffer on the way.
#[derive(Debug, Clone, Copy, Default)]
struct RangeCodec;

impl tonic::codec::Codec for RangeCodec {
    type Encode = EncodedRange;
    type Decode = RangeRequest;
    type Encoder = RangeCodec;
    type Decoder = tonic_prost::ProstDecoder<RangeRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        RangeCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

impl tonic::codec::Encoder for RangeCodec {
    type Item = EncodedRange;
    type Error = Status;

    fn encode(&mut self, item: EncodedRange, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        use prost::Message;
        buf.reserve(item.encoded_len());
        item.encode_raw(buf);
        Ok(())
    }
}

struct RangeCall(Arc<Server>);

impl tonic::server::UnaryService<RangeRequest> for RangeCall {
    type Response = EncodedRange;
    type Future = BoxFuture<Result<Response<EncodedRange>, Status>>;

    fn call(&mut self, req: Request<RangeRequest>) -> Self::Future {
        let server = self.0.clone();
        Box::pin(async move {
            let ctx = context(&req);
            server.range_encoded(&ctx, req.get_ref()).await.map(Response::new).map_err(to_status)
        })
    }
}
