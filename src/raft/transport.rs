//! The peer transport: raft messages to other members over one long-lived gRPC stream per peer.
//!
//! ```text
//!  node thread ──send(msgs)──► per-peer bounded queue ──► peer task ──RaftBatch stream──► peer
//!                               (full: message dropped;     (batches whatever is queued;
//!                                raft retransmits)           reconnects with backoff)
//! ```
//!
//! The node thread never blocks on the network: a full queue drops the message (raft tolerates
//! loss and retransmits) and a peer that cannot be reached is reported to raft as unreachable, so
//! the leader probes it instead of streaming to it. Peer URLs come from the [`PeerBook`], which
//! the state machine keeps in step with the replicated member list.
//!
//! `https://` peer URLs are dialled with the member's peer TLS settings (`crate::tls`).
//!
//! Metrics as etcd's rafthttp keeps them (`crate::metrics`): bytes handed to each peer's stream,
//! send failures (a message dropped on a full queue, or a batch lost with its stream), and the
//! round trip of a probe call made on each peer connection every [`PROBE_INTERVAL`] (etcd probes
//! over HTTP and records the smoothed round trip every 30 s).

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::mpsc;

use super::{Command, Transport};
use crate::failpoint;
use crate::peer;
use crate::proto::metastorepb::RaftBatch;
use crate::tls::PeerTls;

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Messages per batch on the wire.
const BATCH: usize = 256;
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often a connected peer is probed for `etcd_network_peer_round_trip_time_seconds`; the
/// first probe goes out on connecting.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

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
    queues: HashMap<u64, mpsc::Sender<Vec<u8>>>,
    reports: std_mpsc::Sender<Command>,
    runtime: Option<tokio::runtime::Handle>,
}

impl PeerTransport {
    /// `reports` is the node loop's command queue, for unreachable reports.
    pub(super) fn new(id: u64, book: Arc<PeerBook>, reports: std_mpsc::Sender<Command>) -> Self {
        let runtime = tokio::runtime::Handle::try_current().ok();
        Self { id, book, queues: HashMap::new(), reports, runtime }
    }

    fn queue(&mut self, to: u64) -> Option<&mpsc::Sender<Vec<u8>>> {
        if !self.queues.contains_key(&to) {
            let runtime = self.runtime.as_ref()?;
            let (tx, rx) = mpsc::channel(QUEUE);
            runtime.spawn(peer_loop(self.id, to, self.book.clone(), rx, self.reports.clone()));
            self.queues.insert(to, tx);
        }
        self.queues.get(&to)
    }
}

impl Transport for PeerTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            if m.to == self.id {
                continue;
            }
            let Ok(bytes) = m.write_to_bytes() else { continue };
            let to = m.to;
            let is_snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            let queued = match self.queue(to).map(|q| q.try_send(bytes)) {
                Some(Ok(())) => true,
                Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                    self.queues.remove(&to);
                    false
                }
                // Full queue or no runtime: drop; raft retransmits.
                Some(Err(mpsc::error::TrySendError::Full(_))) | None => false,
            };
            if !queued {
                crate::metrics::get().peer_sent_failures.with_label_values(&[&format!("{to:x}")]).inc();
            }
            if is_snapshot {
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
    mut queue: mpsc::Receiver<Vec<u8>>,
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
        {
            if let Ok(channel) = peer::connect(&url, book.tls()).await {
                backoff = Duration::from_millis(50);
                let prober = tokio::spawn(probe(channel.clone(), round_trip.clone()));
                let (tx, call) = peer::open_raft_stream(channel, book.cluster_id, from);
                loop {
                    let Some(first) = queue.recv().await else {
                        call.abort();
                        prober.abort();
                        return;
                    };
                    let mut messages = vec![first];
                    while messages.len() < BATCH {
                        match queue.try_recv() {
                            Ok(m) => messages.push(m),
                            Err(_) => break,
                        }
                    }
                    if failpoint::hit("peer-send-slow") {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    let (count, bytes) = (messages.len(), messages.iter().map(Vec::len).sum::<usize>());
                    if tx.send(RaftBatch { messages }).await.is_err() {
                        sent_failures.inc_by(count as u64);
                        break; // the stream ended: reconnect
                    }
                    sent_bytes.inc_by(bytes as u64);
                }
                call.abort();
                prober.abort();
            }
        }
        if reports.send(Command::Unreachable(to)).is_err() {
            return; // the node loop is gone
        }
        // Drain what piled up while unreachable: raft resends what still matters.
        while queue.try_recv().is_ok() {
            sent_failures.inc();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Probes a peer connection every [`PROBE_INTERVAL`], observing each answered round trip.
async fn probe(channel: tonic::transport::Channel, round_trip: prometheus::Histogram) {
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    loop {
        ticks.tick().await;
        if let Ok(rtt) = peer::probe(channel.clone()).await {
            round_trip.observe(rtt.as_secs_f64());
        }
    }
}
