//! The raft stream: a plain framed byte stream from one member to another on the peer port, as
//! etcd's rafthttp `msgappv2` stream (no HTTP/2 between the node loop and the socket).
//!
//! ```text
//!  dialler                                          peer port (shared with the gRPC peer API)
//!  MAGIC (8 bytes) ─────────────────────────────►   first 8 bytes MAGIC? else HTTP/2 → tonic
//!  cluster id (u64 BE), sender id (u64 BE) ─────►   refused unless our cluster (etcd's
//!                                        ◄─────── X-Etcd-Cluster-ID check)
//!                          0                         accepted
//!                          1, u32 BE length, text    refused, with the reason
//!  frames: u32 BE length, encoded raft Message ─►   each stepped into the node's queue
//!          (length 0: keep-alive, sent when idle)
//! ```
//!
//! The stream is one-way: each member dials its own stream to every peer, so a leader's appends
//! travel on its stream and the follower's acknowledgements on the follower's. Both ends time a
//! silent connection out ([`IDLE_TIMEOUT`]: the writer sends a keep-alive every
//! [`KEEPALIVE_INTERVAL`]; a write that does not finish within [`WRITE_TIMEOUT`] fails), so a
//! partitioned peer is noticed in seconds rather than at TCP's retransmission timeout.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

use super::PeerHandler;
use crate::error::{Error, Result};
use crate::tls::{self, PeerIo, PeerTls};

/// The first bytes of a raft stream. An HTTP/2 connection starts with `PRI * HTTP/2.0`, TLS
/// with 0x16: neither can be taken for it.
pub const MAGIC: &[u8; 8] = b"MSRAFT\x00\x01";
/// A writer with nothing to send sends an empty frame this often.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// A reader that hears nothing (not even a keep-alive) for this long drops the connection.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// A write (or the dial and handshake) that takes longer fails, and the stream is redialled.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest frame accepted: one message carries a whole snapshot (see `crate::raft`).
const MAX_FRAME: usize = 1 << 30;
const ACCEPTED: u8 = 0;
const REFUSED: u8 = 1;

/// Appends one frame carrying `message` to `buf`.
pub fn put_frame(buf: &mut Vec<u8>, message: &[u8]) {
    buf.extend_from_slice(&(message.len() as u32).to_be_bytes());
    buf.extend_from_slice(message);
}

/// The sending end of a raft stream.
pub struct RaftStream {
    io: Box<dyn PeerIo>,
}

impl RaftStream {
    /// Dials the member at `url` (`https://`: with the member's peer TLS settings) and
    /// introduces this member (`from`, of cluster `cluster_id`); fails when the peer refuses.
    pub async fn open(url: &str, tls: Option<&PeerTls>, cluster_id: u64, from: u64) -> Result<Self> {
        let handshake = async {
            let mut io = tls::peer::dial(url, tls).await?;
            let mut hello = MAGIC.to_vec();
            hello.extend_from_slice(&cluster_id.to_be_bytes());
            hello.extend_from_slice(&from.to_be_bytes());
            io.write_all(&hello).await?;
            match io.read_u8().await? {
                ACCEPTED => Ok(Self { io }),
                _ => {
                    let len = io.read_u32().await? as usize;
                    let mut reason = vec![0; len.min(4096)];
                    io.read_exact(&mut reason).await?;
                    Err(io::Error::new(io::ErrorKind::PermissionDenied, String::from_utf8_lossy(&reason).into_owned()))
                }
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, handshake).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(Error::Internal(format!("raft stream to {url}: {e}"))),
            Err(_) => Err(Error::Internal(format!("raft stream to {url}: handshake timed out"))),
        }
    }

    /// Writes `frames` (made with [`put_frame`]) to the socket.
    pub async fn write(&mut self, frames: &[u8]) -> io::Result<()> {
        let write = async {
            self.io.write_all(frames).await?;
            self.io.flush().await
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "raft stream write timed out")))
    }

    /// Tells the peer the stream is alive while there is nothing to send.
    pub async fn keepalive(&mut self) -> io::Result<()> {
        self.write(&0u32.to_be_bytes()).await
    }
}

/// Serves one raft stream whose [`MAGIC`] was already read: checks the handshake, then steps
/// every message into `handler` until the stream ends, goes silent, or the node is gone.
pub(super) async fn serve<H: PeerHandler>(io: Box<dyn PeerIo>, handler: &H, remote: String) -> io::Result<()> {
    let mut io = BufReader::with_capacity(64 * 1024, io);
    let (cluster_id, from) = (io.read_u64().await?, io.read_u64().await?);
    if let Err(e) = handler.accepts_cluster(cluster_id) {
        tracing::warn!(error = %e, from = %remote, "refused a raft stream");
        let reason = e.to_string();
        let mut answer = vec![REFUSED];
        answer.extend_from_slice(&(reason.len() as u32).to_be_bytes());
        answer.extend_from_slice(reason.as_bytes());
        io.write_all(&answer).await?;
        return io.flush().await;
    }
    io.write_all(&[ACCEPTED]).await?;
    io.flush().await?;
    let received = crate::metrics::get().peer_received_bytes.with_label_values(&[&format!("{from:x}")]);
    let mut message = Vec::new();
    loop {
        let len = match tokio::time::timeout(IDLE_TIMEOUT, io.read_u32()).await {
            Ok(Ok(len)) => len as usize,
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "raft stream went silent")),
        };
        if len == 0 {
            continue; // keep-alive
        }
        if len > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("raft frame of {len} bytes")));
        }
        message.resize(len, 0);
        io.read_exact(&mut message).await?;
        received.inc_by(4 + len as u64); // as the sender counts: the frame, length included
        if let Err(e) = handler.step(&message) {
            return Err(io::Error::other(e.to_string()));
        }
    }
}
