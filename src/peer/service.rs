//! The serving side of the peer protocol, over any [`PeerHandler`]: one port for the raft
//! streams and the gRPC `Peer` service, told apart by a connection's first bytes (after TLS
//! when the peer URLs are `https://`).
//!
//! ```text
//!  accept ─► (TLS handshake) ─► first 8 bytes == raft_stream::MAGIC ─► raft_stream::serve
//!                                            else (HTTP/2 preface) ─► tonic, bytes put back
//! ```

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status};

use super::{raft_stream, PeerHandler};
use crate::error::{to_status, Error, Result};
use crate::proto::etcdserverpb::{HashKvRequest, HashKvResponse};
use crate::proto::metastorepb::peer_server::{Peer, PeerServer};
use crate::proto::metastorepb::{
    ClusterInfo, ClusterRequest, LeaseRenewRequest, LeaseRenewResponse, LeaseTimeToLiveAnswer, PromoteRequest,
    PromoteResponse,
};
use crate::tls::{PeerIo, PeerTls};

/// A connection that has not sent its first bytes (or finished TLS) by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted gRPC connections waiting for tonic to take them.
const BACKLOG: usize = 128;

pub struct PeerService<H: PeerHandler> {
    pub handler: Arc<H>,
}

#[tonic::async_trait]
impl<H: PeerHandler> Peer for PeerService<H> {
    async fn cluster(&self, _req: Request<ClusterRequest>) -> Result<Response<ClusterInfo>, Status> {
        Ok(Response::new(self.handler.cluster()))
    }

    async fn promote(&self, req: Request<PromoteRequest>) -> Result<Response<PromoteResponse>, Status> {
        self.handler.promote(req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(PromoteResponse {}))
    }

    async fn lease_renew(&self, req: Request<LeaseRenewRequest>) -> Result<Response<LeaseRenewResponse>, Status> {
        let ttl = self.handler.lease_renew(req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(LeaseRenewResponse { ttl }))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseTimeToLiveAnswer>, Status> {
        self.handler.lease_time_to_live(req.into_inner().id).await.map(Response::new).map_err(to_status)
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.handler.hash_kv(req.into_inner().revision).await.map(Response::new).map_err(to_status)
    }
}

/// Serves the peer port on `listener` until the process ends, over TLS when `tls` is given:
/// raft streams go to the handler's node, everything else to the gRPC `Peer` service.
pub async fn serve<H: PeerHandler>(handler: Arc<H>, listener: TcpListener, tls: Option<PeerTls>) -> Result<()> {
    let acceptor = tls.map(|t| t.acceptor()).transpose()?;
    let (grpc_tx, grpc_rx) = mpsc::channel::<io::Result<PeerConn>>(BACKLOG);
    let accepting = {
        let handler = handler.clone();
        async move {
            loop {
                let (tcp, remote) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: retrying at once would spin.
                        tracing::warn!("peer listener: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (handler, acceptor, grpc_tx) = (handler.clone(), acceptor.clone(), grpc_tx.clone());
                tokio::spawn(async move {
                    let local = tcp.local_addr().ok();
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::warn!("peer connection from {remote}: TCP_NODELAY: {e}");
                    }
                    let opened = async {
                        let mut io: Box<dyn PeerIo> = match acceptor {
                            Some(acceptor) => Box::new(acceptor.accept(tcp).await?),
                            None => Box::new(tcp),
                        };
                        let mut first = [0u8; raft_stream::MAGIC.len()];
                        io.read_exact(&mut first).await?;
                        Ok::<_, io::Error>((io, first))
                    };
                    let (io, first) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, opened).await {
                        Ok(Ok(opened)) => opened,
                        Ok(Err(e)) => {
                            return tracing::warn!("rejected peer connection from \"{remote}\" (error \"{e}\")")
                        }
                        Err(_) => {
                            return tracing::warn!(
                                "rejected peer connection from \"{remote}\" (error \"handshake timeout\")"
                            )
                        }
                    };
                    if &first == raft_stream::MAGIC {
                        if let Err(e) = raft_stream::serve(io, handler.as_ref(), remote.to_string()).await {
                            tracing::debug!("raft stream from {remote} ended: {e}");
                        }
                        return;
                    }
                    let conn = PeerConn {
                        io,
                        first,
                        read: 0,
                        info: TcpConnectInfo { local_addr: local, remote_addr: Some(remote) },
                    };
                    if grpc_tx.send(Ok(conn)).await.is_err() {
                        tracing::debug!("peer connection from {remote} dropped: the server stopped");
                    }
                });
            }
        }
    };
    let peer = PeerServer::new(PeerService { handler }).max_decoding_message_size(1024 * 1024 * 1024);
    let serving =
        tonic::transport::Server::builder().add_service(peer).serve_with_incoming(ReceiverStream::new(grpc_rx));
    tokio::select! {
        () = accepting => Ok(()),
        served = serving => served.map_err(|e| Error::Internal(format!("peer listener: {e}"))),
    }
}

/// A gRPC peer connection, its first bytes (read to tell it from a raft stream) put back.
struct PeerConn {
    io: Box<dyn PeerIo>,
    first: [u8; raft_stream::MAGIC.len()],
    /// How many of `first` tonic has read.
    read: usize,
    info: TcpConnectInfo,
}

impl Connected for PeerConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.read < self.first.len() {
            let n = (self.first.len() - self.read).min(buf.remaining());
            let start = self.read;
            buf.put_slice(&self.first[start..start + n]);
            self.read += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// tonic reads a gRPC connection from its first byte: the bytes read to tell it from a raft
    /// stream come back first, however small the reads.
    #[tokio::test]
    async fn a_grpc_connection_reads_its_first_bytes_again() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = PeerConn {
            io: Box::new(server),
            first: *b"PRI * HT",
            read: 0,
            info: TcpConnectInfo { local_addr: None, remote_addr: None },
        };
        client.write_all(b"TP/2.0\r\n").await.unwrap();
        drop(client);
        let mut one = [0u8; 3];
        conn.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"PRI");
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b" * HTTP/2.0\r\n");
    }
}
