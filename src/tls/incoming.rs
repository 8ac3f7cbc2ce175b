//! The connections of one client listener, plain or TLS or both (etcd serves `http://` and
//! `https://` URLs of the same address on one port), each carrying what the API needs to know
//! about it: the client's address and its verified certificate's Common Name.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::ClientTls;

/// A TLS handshake that takes longer is abandoned (the client is stalled or gone).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of a TLS record carrying a handshake: how a shared port tells TLS from HTTP.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// Accepted connections waiting for the server to take them.
const BACKLOG: usize = 128;

/// Who is at the other end of a client connection; tonic puts it in every request's extensions.
#[derive(Debug, Clone, Default)]
pub struct ClientConnInfo {
    pub remote_addr: Option<SocketAddr>,
    /// The Common Name of the client certificate the handshake verified; `None` on plain
    /// connections, without client certificate verification, or with an empty name.
    pub common_name: Option<String>,
}

/// One accepted client connection.
pub struct ClientStream {
    io: Io,
    info: ClientConnInfo,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// The accepted connections of one listener, ready for `serve_with_incoming`.
pub type ClientConnections = ReceiverStream<io::Result<ClientStream>>;

/// Accepts on `listener` until the returned stream is dropped: plain connections when `tls`
/// is `None`, TLS ones otherwise, and both (told apart by their first byte) when `plain` is
/// also set. Handshakes run one task per connection; a failed one is logged and dropped, as
/// etcd logs "rejected connection".
pub fn client_connections(listener: TcpListener, tls: Option<Arc<ClientTls>>, plain: bool) -> ClientConnections {
    let (tx, rx) = mpsc::channel(BACKLOG);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = tx.closed() => return,
            };
            let (tcp, addr) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: retrying at once would spin.
                    tracing::warn!("client listener: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(tls) = tls.clone() else {
                if tx.send(Ok(ClientStream::plain(tcp, addr))).await.is_err() {
                    return;
                }
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept(tcp, addr, &tls, plain)).await {
                    Ok(Ok(stream)) => {
                        if tx.send(Ok(stream)).await.is_err() {
                            tracing::debug!("client connection from {addr} dropped: the server stopped");
                        }
                    }
                    Ok(Err(e)) => tracing::warn!("rejected connection from \"{addr}\" (error \"{e}\")"),
                    Err(_) => tracing::warn!("rejected connection from \"{addr}\" (error \"TLS handshake timeout\")"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

async fn accept(tcp: TcpStream, addr: SocketAddr, tls: &ClientTls, plain: bool) -> io::Result<ClientStream> {
    if plain {
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 || first[0] != TLS_HANDSHAKE_RECORD {
            return Ok(ClientStream::plain(tcp, addr));
        }
    }
    tcp.set_nodelay(true)?;
    let stream = tls.acceptor().accept(tcp).await?;
    let common_name = tls
        .check_client(stream.get_ref().1.peer_certificates())
        .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
    Ok(ClientStream { io: Io::Tls(Box::new(stream)), info: ClientConnInfo { remote_addr: Some(addr), common_name } })
}

impl ClientStream {
    fn plain(tcp: TcpStream, addr: SocketAddr) -> Self {
        // Small gRPC frames must not wait for Nagle's algorithm (40 ms with delayed ACKs).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("client connection from {addr}: TCP_NODELAY: {e}");
        }
        Self { io: Io::Plain(tcp), info: ClientConnInfo { remote_addr: Some(addr), common_name: None } }
    }
}

impl Connected for ClientStream {
    type ConnectInfo = ClientConnInfo;

    fn connect_info(&self) -> ClientConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
