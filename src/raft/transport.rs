//! The peer transport: raft messages to other members over one long-lived raft stream per peer
//! (`crate::peer::raft_stream`: length-prefixed messages on a plain TCP or TLS connection).
//!
//! ```text
//!  node thread ──send(msgs)──► per-peer bounded queue ──► writer task ──frames──► peer's socket
//!   (one buffer of frames       (full: the turn's         (writes whatever is queued in
//!    per peer per turn)          messages dropped;          one write; redials with backoff)
//!                                raft retransmits)
//! ```
//!
//! The node thread never blocks on the network: it encodes a turn's messages for each peer into
//! one buffer and queues it; a full queue drops them (raft tolerates loss and retransmits), and a
//! peer that cannot be reached is reported to raft as unreachable, so the leader probes it
//! instead of streaming to it. The one hop between the node thread and the socket is the writer
//! task's wake-up; there is no HTTP/2 framing, flow control or extra task in between. Peer URLs
//! come from the [`PeerBook`], which the state machine keeps in step with the replicated member
//! list.
//!
//! `https://` peer URLs are dialled with the member's peer TLS settings (`crate::tls`).
//!
//! Metrics as etcd's rafthttp keeps them (`crate::metrics`): bytes written to each peer's stream,
//! send failures (messages dropped on a full queue, or lost with their stream), and the round
//! trip of a gRPC probe call to each connected peer every [`PROBE_INTERVAL`] (etcd probes over
//! HTTP and records the smoothed round trip every 30 s).

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::mpsc;

use super::{Command, Transport};
use crate::failpoint;
use crate::peer::{self, raft_stream, RaftStream};
use crate::tls::PeerTls;

/// Turns of messages queued per peer before new ones are dropped.
const QUEUE: usize = 1024;
/// Bytes gathered from the queue into one socket write, at most (one turn's may be more).
const WRITE_BYTES: usize = 1024 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often a connected peer is probed for `etcd_network_peer_round_trip_time_seconds`; the
/// first probe goes out on connecting.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// One turn's messages to one peer, as raft stream frames.
struct Frames {
    bytes: Vec<u8>,
    count: usize,
}

/// Peer URLs by member id, shared by the transport and the state machine, and the TLS settings
/// for `https://` ones.
#[derive(Default)]
pub struct PeerBook {
    urls: RwLock<HashMap<u64, Vec<String>>>,
    tls: Option<PeerTls>,
    /// Sent with every raft stream (as etcd's `X-Etcd-Cluster-ID`), so a member of another
    /// cluster refuses it.
    cluster_id: u64,
}

impl PeerBook {
    pub fn new(tls: Option<PeerTls>, cluster_id: u64) -> Self {
        Self { urls: RwLock::default(), tls, cluster_id }
    }

    pub fn tls(&self) -> Option<&PeerTls> {
        self.tls.as_ref()
    }

    pub fn set(&self, id: u64, urls: Vec<String>) {
        self.urls.write().expect("peer book lock").insert(id, urls);
    }

    pub fn remove(&self, id: u64) {
        self.urls.write().expect("peer book lock").remove(&id);
    }

    fn first_url(&self, id: u64) -> Option<String> {
        self.urls.read().expect("peer book lock").get(&id).and_then(|u| u.first().cloned())
    }
}

pub struct PeerTransport {
    id: u64,
    book: Arc<PeerBook>,
    queues: HashMap<u64, mpsc::Sender<Frames>>,
    reports: std_mpsc::Sender<Command>,
    runtime: Option<tokio::runtime::Handle>,
}

impl PeerTransport {
    /// `reports` is the node loop's command queue, for unreachable reports.
    pub(super) fn new(id: u64, book: Arc<PeerBook>, reports: std_mpsc::Sender<Command>) -> Self {
        let runtime = tokio::runtime::Handle::try_current().ok();
        Self { id, book, queues: HashMap::new(), reports, runtime }
    }

    fn queue(&mut self, to: u64) -> Option<&mpsc::Sender<Frames>> {
        if !self.queues.contains_key(&to) {
            let runtime = self.runtime.as_ref()?;
            let (tx, rx) = mpsc::channel(QUEUE);
            runtime.spawn(peer_loop(self.id, to, self.book.clone(), rx, self.reports.clone()));
            self.queues.insert(to, tx);
        }
        self.queues.get(&to)
    }

    /// Queues one peer's frames; whether they were queued.
    fn enqueue(&mut self, to: u64, frames: Frames) -> bool {
        let count = frames.count as u64;
        let queued = match self.queue(to).map(|q| q.try_send(frames)) {
            Some(Ok(())) => true,
            Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                self.queues.remove(&to);
                false
            }
            // Full queue or no runtime: drop; raft retransmits.
            Some(Err(mpsc::error::TrySendError::Full(_))) | None => false,
        };
        if !queued {
            crate::metrics::get().peer_sent_failures.with_label_values(&[&format!("{to:x}")]).inc_by(count);
        }
        queued
    }
}

impl Transport for PeerTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        // A turn's messages to each peer go out as one buffer, in raft's order.
        let mut by_peer: Vec<(u64, Frames, bool)> = Vec::new();
        for m in msgs {
            if m.to == self.id {
                continue;
            }
            let Ok(bytes) = m.write_to_bytes() else { continue };
            let is_snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            let at = match by_peer.iter().position(|(to, ..)| *to == m.to) {
                Some(at) => at,
                None => {
                    by_peer.push((m.to, Frames { bytes: Vec::new(), count: 0 }, false));
                    by_peer.len() - 1
                }
            };
            let (_, frames, snapshot) = &mut by_peer[at];
            raft_stream::put_frame(&mut frames.bytes, &bytes);
            frames.count += 1;
            *snapshot |= is_snapshot;
        }
        for (to, frames, snapshot) in by_peer {
            let queued = self.enqueue(to, frames);
            if snapshot {
                // raft waits for a report before it replicates to that peer again.
                let _gone = self.reports.send(Command::SnapshotSent { to, ok: queued });
            }
        }
    }
}

/// Streams one peer's messages (as member `from`) until the transport goes away.
async fn peer_loop(
    from: u64,
    to: u64,
    book: Arc<PeerBook>,
    mut queue: mpsc::Receiver<Frames>,
    reports: std_mpsc::Sender<Command>,
) {
    let label = format!("{to:x}");
    let metrics = crate::metrics::get();
    let (sent_bytes, sent_failures) =
        (metrics.peer_sent_bytes.with_label_values(&[&label]), metrics.peer_sent_failures.with_label_values(&[&label]));
    let round_trip = metrics.peer_round_trip.with_label_values(&[&label]);
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(url) = book.first_url(to) else {
            return; // removed from the cluster: the queue closes, and is made anew if it returns
        };
        match RaftStream::open(&url, book.tls(), book.cluster_id, from).await {
            Ok(mut stream) => {
                backoff = Duration::from_millis(50);
                let prober = tokio::spawn(probe(url.clone(), book.clone(), round_trip.clone()));
                let ended = stream_to(&mut stream, &mut queue, &sent_bytes, &sent_failures).await;
                prober.abort();
                match ended {
                    Ok(()) => return, // the transport is gone
                    Err(e) => tracing::debug!(peer = %label, "raft stream to {url} broke: {e}"),
                }
            }
            Err(e) => tracing::debug!(peer = %label, "{e}"),
        }
        if reports.send(Command::Unreachable(to)).is_err() {
            return; // the node loop is gone
        }
        // Drain what piled up while unreachable: raft resends what still matters.
        while let Ok(frames) = queue.try_recv() {
            sent_failures.inc_by(frames.count as u64);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Writes queued frames to `stream` until the queue closes (`Ok`) or a write fails; sends a
/// keep-alive whenever the queue stays empty for [`raft_stream::KEEPALIVE_INTERVAL`].
async fn stream_to(
    stream: &mut RaftStream,
    queue: &mut mpsc::Receiver<Frames>,
    sent_bytes: &prometheus::IntCounter,
    sent_failures: &prometheus::IntCounter,
) -> std::io::Result<()> {
    loop {
        let mut frames = match tokio::time::timeout(raft_stream::KEEPALIVE_INTERVAL, queue.recv()).await {
            Ok(Some(frames)) => frames,
            Ok(None) => return Ok(()),
            Err(_) => {
                stream.keepalive().await?;
                continue;
            }
        };
        while frames.bytes.len() < WRITE_BYTES {
            match queue.try_recv() {
                Ok(more) => {
                    frames.bytes.extend_from_slice(&more.bytes);
                    frames.count += more.count;
                }
                Err(_) => break,
            }
        }
        if failpoint::hit("peer-send-slow") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Err(e) = stream.write(&frames.bytes).await {
            sent_failures.inc_by(frames.count as u64);
            return Err(e);
        }
        sent_bytes.inc_by(frames.bytes.len() as u64);
    }
}

/// Probes the peer at `url` every [`PROBE_INTERVAL`] over the gRPC peer API, observing each
/// answered round trip.
async fn probe(url: String, book: Arc<PeerBook>, round_trip: prometheus::Histogram) {
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    let mut channel = None;
    loop {
        ticks.tick().await;
        if channel.is_none() {
            channel = peer::connect(&url, book.tls()).await.ok();
        }
        if let Some(ch) = &channel {
            match peer::probe(ch.clone()).await {
                Ok(rtt) => round_trip.observe(rtt.as_secs_f64()),
                Err(_) => channel = None,
            }
        }
    }
}
