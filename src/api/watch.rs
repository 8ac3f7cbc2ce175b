//! `etcdserverpb.Watch`: one bidirectional stream carrying many watches. Thin: the server's
//! [`WatchSession`](crate::server::WatchSession) handles each request and produces every response.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::context;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{WatchRequest, WatchResponse};
use crate::server::Server;

pub struct WatchService {
    pub server: Arc<Server>,
    /// Responses above this size are fragmented for watches that allow it.
    pub max_response_bytes: usize,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let (mut session, responses) = self.server.open_watch(&context(&req), self.max_response_bytes);
        let mut incoming = req.into_inner();
        tokio::spawn(async move {
            while let Some(Ok(req)) = incoming.next().await {
                if !session.handle(req).await {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(responses).map(Ok))))
    }
}
