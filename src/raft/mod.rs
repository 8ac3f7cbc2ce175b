//! The replicated log: the only module that names raft-rs and `eraftpb` types.
//!
//! Commands are opaque bytes. The server proposes them through a [`RaftHandle`]; once committed,
//! the node loop hands them, in log order, to a [`StateMachine`] as [`Committed`] entries, which
//! must write their effects together with the applied index in one atomic batch — that is what
//! makes a restart replay exactly the entries that were not applied. Configuration changes are
//! applied to raft by the node loop first, then handed over the same way.
//!
//! ```text
//!  RaftHandle ──Command──► node thread (RawNode + LogStore) ──Committed──► StateMachine
//!       ▲                         │  one synced write per turn (entries + hard state)
//!       │                         ├──► PeerTransport ──raft stream per peer──► other members
//!       └──── RaftStatus (watch) ─┘
//! ```
//!
//! A new cluster is bootstrapped as etcd bootstraps one: every initial member starts with the
//! same log — one committed configuration-change entry per initial member at term 1 — so the log
//! alone describes the membership, and a member added later replays it from index 1.
//!
//! Every `snapshot_count` applied entries the log is compacted, keeping a catch-up tail; a member
//! that needs entries from before it receives a state-machine snapshot (from the server's
//! [`SnapshotSource`]) inside raft's snapshot message, then the log after it.
//!
//! `--force-new-cluster` is etcd's disaster recovery after losing quorum: before the node starts,
//! [`LogStore::force_standalone`] rewrites the log so that committed configuration changes remove
//! every other member; raft and the state machine then apply them as any other.
//!
//! Not done here yet: streaming snapshots in chunks (one message carries a whole snapshot).

mod log_store;
mod logger;
mod node;
mod transport;
mod wal;
#[cfg(test)]
mod wal_tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

pub use log_store::{LogDir, LogStore};
pub use node::NodeConfig;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, Entry, EntryType, Message};
use tokio::sync::{oneshot, watch};
pub use transport::{PeerBook, PeerTransport};

use crate::error::{Error, Result};
use crate::storage::{Engine, WriteBatch};

/// A change of membership, as proposed and as committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    AddVoter(u64),
    AddLearner(u64),
    Remove(u64),
}

/// One committed log entry handed to the state machine.
#[derive(Debug, Clone)]
pub enum Committed {
    /// A proposed command; empty `data` is raft's own no-op entry of a new leader.
    Command { index: u64, term: u64, data: Vec<u8> },
    /// A configuration change, already in effect in raft. `context` is what the proposer attached.
    Membership { index: u64, term: u64, change: MemberChange, context: Vec<u8> },
}

impl Committed {
    pub fn index(&self) -> u64 {
        match self {
            Committed::Command { index, .. } | Committed::Membership { index, .. } => *index,
        }
    }

    pub fn term(&self) -> u64 {
        match self {
            Committed::Command { term, .. } | Committed::Membership { term, .. } => *term,
        }
    }
}

/// What the replicated log drives.
pub trait StateMachine: Send + 'static {
    /// Applies committed entries in log order. Must persist their effects and the last entry's
    /// index atomically. An error stops the node: the state machine could not keep up with the
    /// log and must not diverge.
    fn apply(&mut self, entries: Vec<Committed>) -> Result<()>;

    /// Replaces the whole state with a snapshot from the leader (made by a [`SnapshotSource`]):
    /// stages the new content into `batch`, which the log store writes in the same synced write
    /// as the snapshot's raft metadata — a crash leaves either the old state or the new one.
    fn stage_restore(&mut self, data: &[u8], batch: &mut WriteBatch) -> Result<()>;

    /// Reloads what the state machine keeps in memory once a staged restore is written.
    fn restored(&mut self) -> Result<()>;
}

/// Produces state-machine snapshots for members that fell behind the compacted log. Called on
/// the node thread, so it must not do the work there: it answers `None` while a snapshot is being
/// built elsewhere.
pub trait SnapshotSource: Send + Sync + 'static {
    /// A consistent state at an applied index of at least `min_index`: `(index, term, data)`,
    /// or `None` until one is ready.
    fn snapshot(&self, min_index: u64) -> Result<Option<(u64, u64, Vec<u8>)>>;
}

/// Sends raft messages to other members.
pub trait Transport: Send + 'static {
    fn send(&mut self, msgs: Vec<Message>);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    Follower,
    Candidate,
    Leader,
}

/// A member's view of raft, published after every turn of the node loop.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RaftStatus {
    pub id: u64,
    /// 0 when no leader is known.
    pub leader_id: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub role: Role,
    /// On the leader: each member's matched log index.
    pub matched: Vec<(u64, u64)>,
}

pub(crate) enum Command {
    /// A proposal, not answered on acceptance: the proposer already waits for its applied
    /// result, and only a proposal raft drops is reported, through `dropped` (so an accepted
    /// one costs no wake-up of its caller). `queued` holds its place in the bounded queue
    /// until the node loop takes it.
    Propose {
        data: Vec<u8>,
        dropped: OnDropped,
        queued: Queued,
    },
    ProposeMembership {
        change: MemberChange,
        context: Vec<u8>,
        done: oneshot::Sender<Result<()>>,
    },
    ReadIndex {
        done: oneshot::Sender<Result<u64>>,
    },
    TransferLeader(u64),
    Step(Message),
    Unreachable(u64),
    /// Whether a snapshot message reached the peer.
    SnapshotSent {
        to: u64,
        ok: bool,
    },
    /// Ends the node loop after the current turn (graceful shutdown).
    Stop,
}

/// Proposals handed to the node loop and not yet taken by it, beyond which new ones are refused
/// with `too many requests`: a stalled loop cannot make the queue grow without bound.
pub const MAX_QUEUED_PROPOSALS: usize = 10_000;

/// The server's handle on the node loop. Cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    tx: mpsc::Sender<Command>,
    status: watch::Receiver<RaftStatus>,
    peers: Arc<PeerBook>,
    /// Proposals sent to the node loop and not yet answered by it.
    queued: Arc<AtomicUsize>,
}

/// Called with the reason when raft drops a proposal (no leader, say), on the node thread.
pub type Dropped = Box<dyn FnOnce(Error) + Send>;

/// A proposal's [`Dropped`] callback: called by [`OnDropped::dropped`], forgotten by
/// [`OnDropped::accepted`], and called with `Stopped` if the node loop never took the proposal.
pub(crate) struct OnDropped(Option<Dropped>);

impl OnDropped {
    /// Raft took the proposal: its applied entry answers the proposer.
    fn accepted(mut self) {
        self.0 = None;
    }

    fn dropped(mut self, reason: Error) {
        if let Some(f) = self.0.take() {
            f(reason);
        }
    }
}

impl Drop for OnDropped {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Error::Stopped);
        }
    }
}

/// One queued proposal's place; dropped when the node loop takes the proposal (or drops it
/// unread, stopping), which frees the place.
pub(crate) struct Queued(Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RaftHandle {
    fn enqueue(&self) -> Result<Queued> {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED_PROPOSALS {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::TooManyRequests);
        }
        Ok(Queued(self.queued.clone()))
    }

    /// Hands `data` to the node loop to propose, without waiting: the caller learns the outcome
    /// from the applied entry, or through `dropped` if raft drops the proposal.
    pub fn propose(&self, data: Vec<u8>, dropped: Dropped) -> Result<()> {
        let queued = self.enqueue()?;
        self.send(Command::Propose { data, dropped: OnDropped(Some(dropped)), queued })
    }

    /// Proposes a membership change carrying `context` back to the state machine.
    pub async fn propose_membership(&self, change: MemberChange, context: Vec<u8>) -> Result<()> {
        let _queued = self.enqueue()?;
        let (done, rx) = oneshot::channel();
        self.send(Command::ProposeMembership { change, context, done })?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// A linearizable read index: once the local applied index reaches it, local reads reflect
    /// every write committed before this call.
    pub async fn read_index(&self) -> Result<u64> {
        let (done, rx) = oneshot::channel();
        self.send(Command::ReadIndex { done })?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Asks the leader to hand leadership to `to`.
    pub fn transfer_leader(&self, to: u64) -> Result<()> {
        self.send(Command::TransferLeader(to))
    }

    /// Hands an encoded raft message received from a peer to the node loop.
    pub fn step_encoded(&self, bytes: &[u8]) -> Result<()> {
        let msg = Message::parse_from_bytes(bytes).map_err(|e| Error::InvalidArgument(format!("raft message: {e}")))?;
        self.send(Command::Step(msg))
    }

    pub fn status(&self) -> RaftStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }

    /// Where each member's peer URLs are, for the transport.
    pub fn peers(&self) -> &Arc<PeerBook> {
        &self.peers
    }

    /// Asks the node loop to stop; its thread then releases the log store.
    pub fn stop(&self) {
        // Already stopped if the loop is gone: nothing left to ask.
        let _gone = self.tx.send(Command::Stop);
    }

    fn send(&self, cmd: Command) -> Result<()> {
        self.tx.send(cmd).map_err(|_| Error::Stopped)
    }
}

/// How this member's log starts when the engine holds none.
pub enum Bootstrap {
    /// A new cluster: `(id, context)` of every initial member, each becoming a committed
    /// configuration-change entry.
    NewCluster(Vec<(u64, Vec<u8>)>),
    /// Joining an existing cluster: an empty log, filled by the leader.
    Join,
}

/// Opens (or bootstraps, when the engine holds no log) the raft log and starts the node thread.
/// `identity` (the member's own records) is written in the same synced batch as a bootstrapped
/// log, so a crash never leaves a member that knows who it is but has no log, or the reverse.
pub fn start<S: StateMachine>(
    engine: Arc<dyn Engine>,
    cfg: NodeConfig,
    bootstrap: Bootstrap,
    identity: WriteBatch,
    sm: S,
    snapshots: Arc<dyn SnapshotSource>,
    peers: Arc<PeerBook>,
) -> Result<(RaftHandle, std::thread::JoinHandle<Result<()>>)> {
    let mut store = if LogStore::exists(&*engine)? {
        if cfg.force_new_cluster {
            LogStore::force_standalone(engine.clone(), cfg.wal.as_ref(), cfg.id, cfg.applied)?;
        }
        LogStore::open(engine, cfg.wal.as_ref(), cfg.applied)?
    } else {
        match bootstrap {
            Bootstrap::NewCluster(members) => {
                let voters = members.iter().map(|(id, _)| *id).collect();
                let entries = members
                    .into_iter()
                    .enumerate()
                    .map(|(i, (id, context))| conf_entry(i as u64 + 1, id, context))
                    .collect::<Result<Vec<_>>>()?;
                LogStore::bootstrap(engine, cfg.wal.as_ref(), voters, entries, identity)?
            }
            Bootstrap::Join => LogStore::bootstrap(engine, cfg.wal.as_ref(), Vec::new(), Vec::new(), identity)?,
        }
    };
    store.set_snapshot_source(snapshots);
    let (tx, rx) = mpsc::channel();
    let (status_tx, status_rx) = watch::channel(RaftStatus { id: cfg.id, ..Default::default() });
    let transport = PeerTransport::new(cfg.id, peers.clone(), tx.clone());
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
    Ok((RaftHandle { tx, status: status_rx, peers, queued: Arc::default() }, thread))
}

/// A committed term-1 entry adding voter `id`, as written at bootstrap.
fn conf_entry(index: u64, id: u64, context: Vec<u8>) -> Result<Entry> {
    let cc = ConfChange { change_type: ConfChangeType::AddNode, node_id: id, ..Default::default() };
    let data = cc.write_to_bytes().map_err(|e| Error::Internal(format!("encode conf change: {e}")))?;
    let mut e = Entry { index, term: 1, data: data.into(), context: context.into(), ..Default::default() };
    e.set_entry_type(EntryType::EntryConfChange);
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node loop that takes no proposals (stalled) leaves at most `MAX_QUEUED_PROPOSALS`
    /// queued; the next proposal is refused at once, and a place frees when the loop takes one.
    #[test]
    fn a_stalled_node_loop_bounds_its_proposal_queue() {
        let (tx, stalled) = mpsc::channel();
        let (_status_tx, status) = watch::channel(RaftStatus::default());
        let handle = RaftHandle { tx, status, peers: Arc::new(PeerBook::default()), queued: Arc::default() };
        let ignore = || -> Dropped { Box::new(|_| {}) };
        for _ in 0..MAX_QUEUED_PROPOSALS {
            handle.propose(vec![1], ignore()).expect("a place in the queue");
        }
        assert_eq!(handle.propose(vec![2], ignore()), Err(Error::TooManyRequests));
        drop(stalled.recv().expect("a queued proposal")); // the loop takes one
        handle.propose(vec![3], ignore()).expect("the place it freed");
        assert_eq!(handle.propose(vec![4], ignore()), Err(Error::TooManyRequests));
    }

    /// A proposal's drop callback runs only when raft drops it, or with `Stopped` when the node
    /// loop never takes it; an accepted one is answered by its applied entry alone.
    #[test]
    fn a_proposal_hears_back_only_when_dropped() {
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let on_dropped = || {
            let heard = heard.clone();
            OnDropped(Some(Box::new(move |e| heard.lock().expect("lock").push(e))))
        };
        on_dropped().accepted();
        assert!(heard.lock().expect("lock").is_empty());
        on_dropped().dropped(Error::NoLeader);
        drop(on_dropped()); // never taken: the loop stopped
        assert_eq!(*heard.lock().expect("lock"), vec![Error::NoLeader, Error::Stopped]);
    }
}
