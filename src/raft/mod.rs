//! The replicated log: the only module that names raft-rs and `eraftpb` types.
//!
//! Commands are opaque bytes. The server proposes them through a [`RaftHandle`]; once committed,
//! the node loop hands them, in log order, to a [`StateMachine`], which must write their effects
//! together with the applied index in one atomic batch — that is what makes a restart replay
//! exactly the entries that were not applied.
//!
//! ```text
//!  RaftHandle ──Command──► node thread (RawNode + LogStore) ──committed entries──► StateMachine
//!       ▲                         │  one synced write per turn (entries + hard state)
//!       └──── RaftStatus (watch) ─┘
//! ```
//!
//! Not done here yet: the peer transport, snapshots sent to lagging members, and configuration
//! changes (a single member runs with [`LocalTransport`], which has nobody to talk to).

mod log_store;
mod logger;
mod node;

use std::sync::mpsc;
use std::sync::Arc;

pub use log_store::LogStore;
pub use node::NodeConfig;
use raft::prelude::{Entry, Message};
use tokio::sync::{oneshot, watch};

use crate::error::{Error, Result};
use crate::storage::Engine;

/// One committed log entry handed to the state machine.
#[derive(Debug, Clone)]
pub struct Committed {
    pub index: u64,
    pub term: u64,
    /// The proposed bytes; empty for raft's own no-op entries.
    pub data: Vec<u8>,
}

impl From<Entry> for Committed {
    fn from(e: Entry) -> Self {
        Self { index: e.index, term: e.term, data: e.data.to_vec() }
    }
}

/// What the replicated log drives.
pub trait StateMachine: Send + 'static {
    /// Applies committed entries in log order. Must persist their effects and the last entry's
    /// index atomically. An error stops the node: the state machine could not keep up with the
    /// log and must not diverge.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<()>;
}

/// Sends raft messages to other members.
pub trait Transport: Send + 'static {
    fn send(&mut self, msgs: Vec<Message>);
}

/// The transport of a single-member cluster: there is nobody to send to.
pub struct LocalTransport;

impl Transport for LocalTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        if !msgs.is_empty() {
            tracing::warn!(count = msgs.len(), "dropping raft messages: no peer transport");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    Follower,
    Candidate,
    Leader,
}

/// A member's view of raft, published after every turn of the node loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RaftStatus {
    pub id: u64,
    /// 0 when no leader is known.
    pub leader_id: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub role: Role,
}

pub(crate) enum Command {
    Propose {
        data: Vec<u8>,
        done: oneshot::Sender<Result<()>>,
    },
    ReadIndex {
        done: oneshot::Sender<Result<u64>>,
    },
    #[allow(dead_code)] // fed by the peer transport
    Step(Message),
    /// Ends the node loop after the current turn (graceful shutdown).
    Stop,
}

/// The server's handle on the node loop. Cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    tx: mpsc::Sender<Command>,
    status: watch::Receiver<RaftStatus>,
}

impl RaftHandle {
    /// Proposes `data`; resolves once raft accepted it into the leader's log (not when committed).
    pub async fn propose(&self, data: Vec<u8>) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Command::Propose { data, done }).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// A linearizable read index: once the local applied index reaches it, local reads reflect
    /// every write committed before this call.
    pub async fn read_index(&self) -> Result<u64> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Command::ReadIndex { done }).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    pub fn status(&self) -> RaftStatus {
        *self.status.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }

    /// Asks the node loop to stop; its thread then releases the log store.
    pub fn stop(&self) {
        // Already stopped if the loop is gone: nothing left to ask.
        let _gone = self.tx.send(Command::Stop);
    }
}

/// Opens (or bootstraps, when the engine holds no log) the raft log and starts the node thread.
pub fn start<S: StateMachine, T: Transport>(
    engine: Arc<dyn Engine>,
    cfg: NodeConfig,
    initial_voters: Vec<u64>,
    sm: S,
    transport: T,
) -> Result<(RaftHandle, std::thread::JoinHandle<Result<()>>)> {
    let store = if LogStore::exists(&*engine)? {
        LogStore::open(engine, cfg.applied)?
    } else {
        LogStore::bootstrap(engine, initial_voters, Vec::new())?
    };
    let (tx, rx) = mpsc::channel();
    let (status_tx, status_rx) = watch::channel(RaftStatus { id: cfg.id, ..Default::default() });
    let node = node::Node::new(&cfg, store, sm, transport, rx, status_tx)?;
    let thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || {
            let outcome = node.run();
            if let Err(e) = &outcome {
                // A member that cannot persist or apply its log must not keep answering clients.
                tracing::error!(error = %e, "raft node failed; exiting");
                std::process::exit(1);
            }
            outcome
        })
        .map_err(|e| Error::Internal(format!("spawn raft thread: {e}")))?;
    Ok((RaftHandle { tx, status: status_rx }, thread))
}
