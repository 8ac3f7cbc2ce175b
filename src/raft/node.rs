//! The raft node loop: one thread owns the raft-rs `RawNode` and runs raft-rs's Ready recipe.
//!
//! Each turn of the loop:
//!
//! 1. waits for a command or the next tick, then drains every queued command — all proposals
//!    that arrived while the previous turn was writing go into this turn's single log write
//!    (group commit: one fsync for many requests);
//! 2. starts one batched ReadIndex round for all reads that arrived;
//! 3. handles the Ready: sends leader messages, persists entries + hard state in one synced
//!    batch, sends messages that must follow persistence (a follower's ack goes out before it
//!    applies anything), hands committed entries to the [`StateMachine`] (which writes their
//!    effects and the applied index in one unsynced batch, made durable by the next synced log
//!    write; a restart replays the log after the durable applied index), answers ReadIndex
//!    requests, and publishes [`RaftStatus`].
//!
//! raft-rs drops a ReadIndex silently when the leader has not committed in its term or a
//! follower knows no leader; pending reads therefore carry a deadline and fail with `Timeout`.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, Entry, EntryType};
use raft::{RawNode, StateRole};
use tokio::sync::{oneshot, watch};

use super::log_store::LogStore;
use super::{logger, Command, Committed, MemberChange, RaftStatus, Role, StateMachine, Transport};
use crate::error::{Error, Result};
use crate::storage::WriteBatch;

/// Settings of one raft member.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: u64,
    pub tick: Duration,
    pub election_ticks: usize,
    /// The state machine's applied index at start: raft resumes delivery after it.
    pub applied: u64,
    /// Applied entries between log compactions (etcd's `--snapshot-count`).
    pub snapshot_count: u64,
    /// `--force-new-cluster`: on an existing log, first remove every other member
    /// ([`LogStore::force_standalone`]).
    pub force_new_cluster: bool,
    /// The raft WAL's directory; `None` keeps the log in memory (the in-memory engine).
    pub wal: Option<super::LogDir>,
}

/// Entries kept after a compaction so slightly lagging members catch up without a snapshot
/// (etcd's `SnapshotCatchUpEntries`; smaller when `snapshot_count` is).
const CATCH_UP_ENTRIES: u64 = 5000;

struct PendingRead {
    ctx: Vec<u8>,
    deadline: Instant,
    waiters: Vec<oneshot::Sender<Result<u64>>>,
}

pub(super) struct Node<S: StateMachine, T: Transport> {
    raw: RawNode<LogStore>,
    sm: S,
    transport: T,
    rx: Receiver<Command>,
    status: watch::Sender<RaftStatus>,
    tick: Duration,
    read_timeout: Duration,
    snapshot_count: u64,
    next_read_ctx: u64,
    reads: VecDeque<PendingRead>,
}

impl<S: StateMachine, T: Transport> Node<S, T> {
    pub(super) fn new(
        cfg: &NodeConfig,
        store: LogStore,
        sm: S,
        transport: T,
        rx: Receiver<Command>,
        status: watch::Sender<RaftStatus>,
    ) -> Result<Self> {
        let rc = raft::Config {
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: 1,
            applied: cfg.applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            // etcd's bounds: the uncommitted tail a leader accepts, and what one Ready applies.
            max_uncommitted_size: 1 << 30,
            max_committed_size_per_ready: 16 * 1024 * 1024,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        rc.validate().map_err(|e| Error::Internal(format!("raft config: {e}")))?;
        let raw =
            RawNode::new(&rc, store, &logger::to_tracing()).map_err(|e| Error::Internal(format!("raft start: {e}")))?;
        let read_timeout = cfg.tick * (cfg.election_ticks as u32) * 2;
        Ok(Self {
            raw,
            sm,
            transport,
            rx,
            status,
            tick: cfg.tick,
            read_timeout,
            snapshot_count: cfg.snapshot_count.max(1),
            // Seeded from the clock so contexts never repeat across restarts: a late answer to a
            // read from before a restart must not match a new one.
            next_read_ctx: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
            reads: VecDeque::new(),
        })
    }

    /// Runs until every command sender is dropped.
    pub(super) fn run(mut self) -> Result<()> {
        // Apply what is already committed (the bootstrap configuration entries) first: raft
        // refuses to campaign while committed configuration changes are unapplied.
        self.on_ready()?;
        let voters = self.raw.raft.prs().conf().voters().ids();
        if voters.len() == 1 && voters.contains(self.raw.raft.id) {
            // A single voter need not wait an election timeout to lead.
            self.raw.campaign().map_err(|e| Error::Internal(format!("campaign: {e}")))?;
        }
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let mut reads = Vec::new();
            let mut stop = false;
            match self.rx.recv_timeout(wait) {
                Ok(cmd) => stop |= self.handle(cmd, &mut reads),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            while let Ok(cmd) = self.rx.try_recv() {
                stop |= self.handle(cmd, &mut reads);
            }
            if !reads.is_empty() {
                self.start_read(reads);
            }
            if Instant::now() >= next_tick {
                self.raw.tick();
                next_tick = Instant::now() + self.tick;
                self.expire_reads();
            }
            self.on_ready()?;
            if stop {
                return Ok(());
            }
        }
    }

    /// Handles one command; returns `true` when asked to stop.
    fn handle(&mut self, cmd: Command, reads: &mut Vec<oneshot::Sender<Result<u64>>>) -> bool {
        match cmd {
            Command::Propose { data, dropped, queued } => {
                drop(queued);
                match self.raw.propose(Vec::new(), data) {
                    Ok(()) => dropped.accepted(),
                    Err(raft::Error::ProposalDropped) => dropped.dropped(Error::NoLeader),
                    Err(other) => dropped.dropped(Error::Internal(other.to_string())),
                }
            }
            Command::ProposeMembership { change, context, done } => {
                let (change_type, node_id) = match change {
                    MemberChange::AddVoter(id) => (ConfChangeType::AddNode, id),
                    MemberChange::AddLearner(id) => (ConfChangeType::AddLearnerNode, id),
                    MemberChange::Remove(id) => (ConfChangeType::RemoveNode, id),
                };
                let cc = ConfChange { change_type, node_id, ..Default::default() };
                let res = self.raw.propose_conf_change(context, cc).map_err(|e| match e {
                    raft::Error::ProposalDropped => Error::NoLeader,
                    other => Error::Internal(other.to_string()),
                });
                let _unwanted = done.send(res);
            }
            Command::ReadIndex { done } => reads.push(done),
            Command::TransferLeader(to) => self.raw.transfer_leader(to),
            Command::Unreachable(id) => self.raw.report_unreachable(id),
            Command::SnapshotSent { to, ok } => {
                let status = if ok { raft::SnapshotStatus::Finish } else { raft::SnapshotStatus::Failure };
                self.raw.report_snapshot(to, status);
            }
            Command::Step(msg) => {
                if let Err(e) = self.raw.step(msg) {
                    tracing::debug!(error = %e, "raft step rejected a message");
                }
            }
            Command::Stop => return true,
        }
        false
    }

    fn start_read(&mut self, waiters: Vec<oneshot::Sender<Result<u64>>>) {
        // Followers' requests reach the leader's queue beside its own, which raft-rs
        // deduplicates by context: the member id keeps contexts unique cluster-wide.
        let mut ctx = self.raw.raft.id.to_be_bytes().to_vec();
        ctx.extend_from_slice(&self.next_read_ctx.to_be_bytes());
        self.next_read_ctx += 1;
        self.raw.read_index(ctx.clone());
        self.reads.push_back(PendingRead { ctx, deadline: Instant::now() + self.read_timeout, waiters });
    }

    fn expire_reads(&mut self) {
        let now = Instant::now();
        self.reads.retain_mut(|r| {
            if r.deadline > now {
                return true;
            }
            for w in r.waiters.drain(..) {
                let _unwanted = w.send(Err(Error::Timeout));
            }
            false
        });
    }

    fn answer_reads(&mut self, states: Vec<raft::ReadState>) {
        for rs in states {
            if let Some(pos) = self.reads.iter().position(|r| r.ctx == rs.request_ctx) {
                let read = self.reads.remove(pos).expect("position is in range");
                for w in read.waiters {
                    let _unwanted = w.send(Ok(rs.index));
                }
            }
        }
    }

    fn on_ready(&mut self) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        if !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
        }
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            tracing::info!(index = snap.get_metadata().index, bytes = snap.data.len(), "installing a snapshot");
            let mut batch = WriteBatch::new();
            self.sm.stage_restore(&snap.data, &mut batch)?;
            self.raw.store().apply_snapshot(&snap, batch)?;
            self.sm.restored()?;
        }
        // Persist and acknowledge first, apply after: a follower's ack (and so the leader's
        // commit) does not wait for this member to apply earlier entries. The committed entries
        // raft-rs hands out are already persisted, so applying them later is safe.
        self.raw.store().persist(ready.entries(), ready.hs())?;
        if !ready.persisted_messages().is_empty() {
            self.transport.send(ready.take_persisted_messages());
        }
        self.apply(ready.take_committed_entries())?;
        let read_states = ready.take_read_states();
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.store().set_commit(commit);
        }
        self.transport.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.answer_reads(read_states);
        self.compact_log()?;
        self.publish();
        Ok(())
    }

    /// Every `snapshot_count` applied entries, drops the log before the applied index minus a
    /// catch-up tail. Dropped entries are applied; their effects reach the engine's WAL before
    /// the compaction record does, so a crash never loses an entry that was not applied durably.
    fn compact_log(&mut self) -> Result<()> {
        let applied = self.raw.raft.raft_log.applied;
        let first = self.raw.store().first_index();
        let tail = CATCH_UP_ENTRIES.min(self.snapshot_count);
        if applied < first + self.snapshot_count + tail {
            return Ok(());
        }
        let keep_from = applied - tail;
        tracing::info!(applied, compact_to = keep_from, "compacting the raft log");
        self.raw.store().compact(keep_from)
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut committed = Vec::with_capacity(entries.len());
        for e in entries {
            committed.push(match e.get_entry_type() {
                EntryType::EntryNormal => Committed::Command { index: e.index, term: e.term, data: e.data.to_vec() },
                EntryType::EntryConfChange => self.apply_conf_change(&e)?,
                EntryType::EntryConfChangeV2 => {
                    return Err(Error::Unimplemented("joint-consensus configuration changes".into()));
                }
            });
        }
        self.sm.apply(committed)
    }

    /// Puts a committed configuration change into effect in raft and persists the new
    /// configuration, before the state machine records the member.
    fn apply_conf_change(&mut self, e: &Entry) -> Result<Committed> {
        let cc = ConfChange::parse_from_bytes(&e.data)
            .map_err(|err| Error::Internal(format!("undecodable conf change at {}: {err}", e.index)))?;
        let change = match cc.get_change_type() {
            ConfChangeType::AddNode => MemberChange::AddVoter(cc.node_id),
            ConfChangeType::AddLearnerNode => MemberChange::AddLearner(cc.node_id),
            ConfChangeType::RemoveNode => MemberChange::Remove(cc.node_id),
        };
        let cs = self
            .raw
            .apply_conf_change(&cc)
            .map_err(|err| Error::Internal(format!("conf change at {}: {err}", e.index)))?;
        self.raw.store().set_conf_state(cs)?;
        Ok(Committed::Membership { index: e.index, term: e.term, change, context: e.context.to_vec() })
    }

    fn publish(&mut self) {
        let raft = &self.raw.raft;
        let role = match raft.state {
            StateRole::Leader => Role::Leader,
            StateRole::Candidate | StateRole::PreCandidate => Role::Candidate,
            StateRole::Follower => Role::Follower,
        };
        let matched = if role == Role::Leader {
            let mut m: Vec<(u64, u64)> = raft.prs().iter().map(|(id, pr)| (*id, pr.matched)).collect();
            m.sort_unstable();
            m
        } else {
            Vec::new()
        };
        let next = RaftStatus {
            id: raft.id,
            leader_id: raft.leader_id,
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: raft.raft_log.applied,
            last_index: raft.raft_log.last_index(),
            role,
            matched,
        };
        self.status.send_if_modified(|cur| {
            // etcd counts a change to a known leader other than the last one seen.
            if next.leader_id != 0 && next.leader_id != cur.leader_id {
                crate::metrics::get().leader_changes.inc();
                // etcd's raft/node.go lines, which operators grep for leader changes.
                tracing::info!(target: "raft", "raft.node: {:x} elected leader {:x} at term {}", next.id, next.leader_id, next.term);
            } else if next.leader_id == 0 && cur.leader_id != 0 {
                tracing::info!(target: "raft", "raft.node: {:x} lost leader {:x} at term {}", next.id, cur.leader_id, next.term);
            }
            let changed = *cur != next;
            *cur = next;
            changed
        });
    }
}
