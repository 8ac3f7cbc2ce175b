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
use crate::server::{RequestContext, Server};

pub struct WatchService {
    pub server: Arc<Server>,
    /// Responses above this size are fragmented for watches that allow it.
    pub max_response_bytes: usize,
}

pub(super) type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let ctx = context(&req);
        Ok(Response::new(watch(&self.server, &ctx, self.max_response_bytes, req.into_inner())))
    }
}

/// Serves one watch stream (from gRPC or the JSON gateway): the requests feed a server
/// session, whose responses are the stream returned.
pub(super) fn watch(
    server: &Arc<Server>,
    ctx: &RequestContext,
    max_response_bytes: usize,
    mut incoming: impl Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
) -> WatchStream {
    let (mut session, responses) = server.open_watch(ctx, max_response_bytes);
    tokio::spawn(async move {
        loop {
            match incoming.next().await {
                Some(Ok(req)) => {
                    if !session.handle(req).await {
                        return;
                    }
                }
                // The client closed its side: its watches keep running while it listens.
                None => return session.client_gone().await,
                Some(Err(_)) => return,
            }
        }
    });
    Box::pin(ReceiverStream::new(responses).map(Ok))
}
