//! Maintenance/Snapshot: the member's replicated state as an etcd backend database (see
//! [`crate::backup`]), streamed as etcd streams it — 32 KiB chunks, each with the bytes still to
//! come, then one message carrying the sha256 of the database.
//!
//! The database is built from one engine snapshot into an anonymous temporary file on a blocking
//! thread, so it is one point in time (its `consistent_index` is the applied index of that
//! instant) and writes go on meanwhile; the file goes away when the stream ends.

use std::io::{Read, Seek, SeekFrom};

use tokio::sync::mpsc;

use super::{RequestContext, Server};
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::SnapshotResponse;
use crate::storage::Engine;

/// etcd's `snapshotSendBufferSize`.
pub const CHUNK: usize = 32 * 1024;

impl Server {
    /// Starts streaming a snapshot (admins only); the receiver yields the chunks, or one error.
    pub async fn snapshot(&self, ctx: &RequestContext) -> Result<mpsc::Receiver<Result<SnapshotResponse>>> {
        self.check_admin_maintenance(ctx).await?;
        let (tx, rx) = mpsc::channel(4);
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = stream(&*engine, &tx) {
                // The client may be gone already; then nobody is left to tell.
                if tx.blocking_send(Err(e)).is_err() {
                    tracing::debug!("snapshot stream closed by the client");
                }
            }
        });
        Ok(rx)
    }
}

fn stream(engine: &dyn Engine, tx: &mpsc::Sender<Result<SnapshotResponse>>) -> Result<()> {
    let io = |e: std::io::Error| Error::Storage(format!("snapshot file: {e}"));
    let mut file = tempfile::tempfile().map_err(io)?;
    let mut total = 0;
    engine.with_snapshot(&mut |snap| {
        total = crate::backup::write(snap, &mut file)?.1;
        Ok(())
    })?;
    tracing::info!(total_bytes = total, "sending database snapshot to client");
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut sent = 0u64;
    while sent < total {
        let mut blob = vec![0u8; CHUNK.min((total - sent) as usize)];
        file.read_exact(&mut blob).map_err(io)?;
        sha.update(&blob);
        sent += blob.len() as u64;
        if tx.blocking_send(Ok(SnapshotResponse { header: None, remaining_bytes: total - sent, blob })).is_err() {
            return Ok(()); // the client went away
        }
    }
    let blob = sha.finish().as_ref().to_vec();
    if tx.blocking_send(Ok(SnapshotResponse { header: None, remaining_bytes: 0, blob })).is_ok() {
        tracing::info!(total_bytes = total, "sent database snapshot to client");
    }
    Ok(())
}
