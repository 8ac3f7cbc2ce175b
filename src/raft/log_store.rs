//! The raft log and hard state: durable in the raft WAL ([`super::wal`]), with only the newest
//! entries kept in memory. The configuration (`ConfState`) stays in the engine's `raft_state`
//! table, written with the state machine.
//!
//! ```text
//!   WAL segments:  [base .................................................. last]
//!   memory `recent`:                                     [recent_first ... last]  (≤ RECENT_BYTES)
//! ```
//!
//! Contract with the node loop: [`LogStore::persist`] appends new entries (an entry at an index
//! the log holds replaces the conflicting suffix) and the hard state as ONE WAL batch with one
//! `fdatasync`, then updates the in-memory tail. raft reads recent entries from memory and older
//! ones (a lagging follower's catch-up) from the WAL, so memory stays bounded whatever
//! `--snapshot-count` is.
//!
//! The state machine writes into the engine unsynced; a restart replays the log after the
//! engine's durable applied index. So the log may only forget what the engine holds durably:
//!
//! * compaction ([`LogStore::compact`]) deletes whole WAL segments, and syncs the engine first
//!   whenever it is about to delete one;
//! * a snapshot install ([`LogStore::apply_snapshot`]) writes the state machine's new content,
//!   applied index and configuration synced first, then resets the log. A crash between the two
//!   leaves an applied index past the log (or on an entry of another term); [`LogStore::open`]
//!   then finishes the reset;
//! * an applied index before the log's start can only mean a damaged data dir: open refuses it.
//!
//! At open, a commit index older than the applied index (the state machine may run ahead of the
//! last persisted hard state) is raised to it, since applied entries were committed.
//!
//! Data dirs from before the WAL kept the log in the engine's `raft_log` / `raft_state` tables:
//! open moves it into a new WAL (written and synced first, then the tables emptied and the
//! engine marked `META_RAFT_WAL` in one synced write; a crash in between redoes the move).
//!
//! With the in-memory engine (`--storage-engine memory`) there is no WAL: the whole log is kept
//! in `recent`, and nothing survives the process, like the engine.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use super::wal::{Replay, Wal, SEGMENT_BYTES};
use super::SnapshotSource;
use crate::error::{Error, Result};
use crate::storage::schema::{
    decode_u64, u64_key, META_APPLIED_TERM, META_RAFT_WAL, RAFT_CONF_STATE, RAFT_HARD_STATE, RAFT_TRUNCATED,
};
use crate::storage::{Engine, Table, WriteBatch};

/// Bytes of the newest entries kept in memory (at least one entry is always kept). 4 MiB is
/// about 13,000 entries of a 256-byte put, a second of writes at the single-member benchmark's
/// rates: enough for a follower that is briefly behind; older entries are read from the WAL
/// (16 MiB held ~15 MiB more RSS under steady writes, for reads that rarely happen).
const RECENT_BYTES: usize = 4 * 1024 * 1024;

/// Where the raft WAL lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDir {
    pub path: PathBuf,
    pub segment_bytes: u64,
}

impl LogDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), segment_bytes: SEGMENT_BYTES }
    }
}

pub struct LogStore {
    engine: Arc<dyn Engine>,
    /// `None`: the in-memory log of the in-memory engine.
    wal: Option<Mutex<Wal>>,
    snapshots: Option<Arc<dyn SnapshotSource>>,
    state: RwLock<LogState>,
}

struct LogState {
    hard_state: HardState,
    conf_state: ConfState,
    /// The log holds the entries after this `(index, term)`: the truncation point or snapshot.
    truncated: (u64, u64),
    /// Index of the last entry (`truncated.0` when the log is empty).
    last: u64,
    /// The newest entries, contiguous, ending at `last`.
    recent: VecDeque<Entry>,
    recent_bytes: usize,
    /// Bytes `recent` may hold (unbounded without a WAL to read older entries from).
    budget: usize,
}

impl LogState {
    fn new(conf_state: ConfState, budget: usize) -> Self {
        Self {
            hard_state: HardState::default(),
            conf_state,
            truncated: (0, 0),
            last: 0,
            recent: VecDeque::new(),
            recent_bytes: 0,
            budget,
        }
    }

    fn recent_first(&self) -> u64 {
        self.recent.front().map(|e| e.index).unwrap_or(self.last + 1)
    }

    /// Appends entries, each replacing any entry at its index or later, then drops the oldest
    /// kept entries beyond the memory budget.
    fn push(&mut self, entries: &[Entry]) {
        if let Some(first) = entries.first() {
            self.cut_from(first.index);
        }
        for e in entries {
            self.recent_bytes += e.compute_size() as usize;
            self.recent.push_back(e.clone());
            self.last = e.index;
        }
        while self.recent.len() > 1 && self.recent_bytes > self.budget {
            let dropped = self.recent.pop_front().expect("more than one entry");
            self.recent_bytes -= dropped.compute_size() as usize;
        }
    }

    /// Forgets entries from `index` on (they are being replaced).
    fn cut_from(&mut self, index: u64) {
        while self.recent.back().is_some_and(|e| e.index >= index) {
            let dropped = self.recent.pop_back().expect("checked");
            self.recent_bytes -= dropped.compute_size() as usize;
        }
        self.last = self.last.min(index.saturating_sub(1)).max(self.truncated.0);
    }

    /// Forgets entries before `index` (compacted away).
    fn drop_before(&mut self, index: u64) {
        while self.recent.front().is_some_and(|e| e.index < index) {
            let dropped = self.recent.pop_front().expect("checked");
            self.recent_bytes -= dropped.compute_size() as usize;
        }
    }

    /// Empties the log: it continues after `(index, term)`.
    fn reset(&mut self, index: u64, term: u64) {
        self.recent.clear();
        self.recent_bytes = 0;
        self.truncated = (index, term);
        self.last = index;
    }
}

fn decode<M: protobuf::Message>(bytes: &[u8], what: &str) -> Result<M> {
    M::parse_from_bytes(bytes).map_err(|e| Error::Storage(format!("corrupt raft {what}: {e}")))
}

fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().expect("encoding a raft message into memory cannot fail")
}

fn store_err(e: Error) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl LogStore {
    /// Whether the engine already holds a raft log (a restart rather than a bootstrap).
    pub fn exists(engine: &dyn Engine) -> Result<bool> {
        Ok(engine.get(Table::RaftState, RAFT_CONF_STATE)?.is_some())
    }

    /// Bootstraps a log: `voters` as the configuration, and `entries` (the initial members'
    /// configuration changes, term 1) already committed — or nothing at all for a joining member.
    /// The WAL is written first (replacing anything in `dir`), then the caller's `batch` with the
    /// configuration in one synced engine write: until that write, the engine holds no log and
    /// a restart bootstraps again.
    pub fn bootstrap(
        engine: Arc<dyn Engine>,
        dir: Option<&LogDir>,
        voters: Vec<u64>,
        entries: Vec<Entry>,
        mut batch: WriteBatch,
    ) -> Result<Self> {
        let cs = ConfState { voters, ..Default::default() };
        let hs = entries.last().map(|last| HardState { term: last.term, commit: last.index, ..Default::default() });
        batch.put(Table::RaftState, RAFT_CONF_STATE, encode(&cs));
        let Some(dir) = dir else {
            engine.write(batch, true)?;
            let mut state = LogState::new(cs, usize::MAX);
            state.push(&entries);
            state.hard_state = hs.unwrap_or_default();
            return Ok(Self { engine, wal: None, snapshots: None, state: RwLock::new(state) });
        };
        let mut wal = Wal::create(&dir.path, dir.segment_bytes, 0, 0)?;
        wal.append(None, &entries, hs.as_ref())?;
        drop(wal);
        batch.put(Table::Meta, META_RAFT_WAL, b"1".to_vec());
        engine.write(batch, true)?;
        Self::open(engine, Some(dir), 0)
    }

    /// Opens an existing log. `applied` is the state machine's applied index.
    pub fn open(engine: Arc<dyn Engine>, dir: Option<&LogDir>, applied: u64) -> Result<Self> {
        let Some(dir) = dir else {
            return Err(Error::Storage("an in-memory raft log cannot be reopened".into()));
        };
        let conf_state: ConfState = match engine.get(Table::RaftState, RAFT_CONF_STATE)? {
            Some(b) => decode(&b, "conf state")?,
            None => return Err(Error::Storage("raft conf state missing".into())),
        };
        if engine.get(Table::Meta, META_RAFT_WAL)?.is_none() {
            migrate(&*engine, dir)?;
        } else if !Wal::exists(&dir.path)? {
            return Err(Error::Storage(format!(
                "the raft WAL is missing from {}: the data dir keeps its raft log there",
                dir.path.display()
            )));
        }
        let mut state = LogState::new(conf_state, RECENT_BYTES);
        let mut wal = Wal::open(&dir.path, dir.segment_bytes, &mut |change| match change {
            Replay::Reset(index, term) => state.reset(index, term),
            Replay::Entry(e) => state.push(std::slice::from_ref(&e)),
            Replay::Truncate(index) => state.cut_from(index + 1),
            Replay::HardState(hs) => state.hard_state = hs,
        })?;
        if applied > 0 {
            if applied < state.truncated.0 {
                return Err(Error::Storage(format!(
                    "the state machine's applied index {applied} is before the start of the raft log ({}): the data dir is damaged",
                    state.truncated.0
                )));
            }
            let applied_term = engine.get(Table::Meta, META_APPLIED_TERM)?.as_deref().and_then(decode_u64).unwrap_or(0);
            if applied > state.last || (applied_term != 0 && wal.term(applied) != Some(applied_term)) {
                // A snapshot install made the state machine durable but crashed before the log
                // reset: finish it.
                let mut hs = state.hard_state.clone();
                hs.commit = hs.commit.max(applied);
                hs.term = hs.term.max(applied_term);
                tracing::warn!(
                    applied,
                    applied_term,
                    log_last = state.last,
                    "finishing an interrupted snapshot install: the raft log restarts after the applied index"
                );
                wal.reset(applied, applied_term, &hs)?;
                state.reset(applied, applied_term);
                state.hard_state = hs;
            }
        }
        let commit = state.hard_state.commit.min(state.last).max(applied);
        state.hard_state.commit = commit;
        Ok(Self { engine, wal: Some(Mutex::new(wal)), snapshots: None, state: RwLock::new(state) })
    }

    /// etcd's `restartAsStandaloneNode` (`--force-new-cluster`): rewrites an existing log so
    /// that member `id` forms a cluster of its own, keeping everything it committed. Entries
    /// past the commit index are dropped (nobody can commit them any more); one committed
    /// configuration change per other member removes it, appended at the commit index with the
    /// current term; the hard state's commit index moves past them. All in one WAL batch, so
    /// a crash leaves the old log or the new one, and running it again changes nothing. The
    /// removals then take effect through the ordinary apply path (raft's configuration and the
    /// state machine's member list alike). Returns the removed members.
    pub fn force_standalone(engine: Arc<dyn Engine>, dir: Option<&LogDir>, id: u64, applied: u64) -> Result<Vec<u64>> {
        let store = Self::open(engine, dir, applied)?;
        let mut hs = store.hard_state();
        let commit = hs.commit;
        // The persisted configuration reflects every applied change; committed ones not yet
        // applied follow from the log (etcd's getIDs).
        let cs = store.conf_state();
        if cs.learners.contains(&id) {
            return Err(Error::InvalidArgument("a learner cannot force a new cluster: promote it first".into()));
        }
        let mut ids: std::collections::BTreeSet<u64> = cs.voters.iter().chain(&cs.learners).copied().collect();
        let unapplied = (applied + 1).max(store.first_index());
        if unapplied <= commit {
            let entries = store
                .entries(unapplied, commit + 1, None, GetEntriesContext::empty(false))
                .map_err(|e| Error::Storage(format!("reading the committed log: {e}")))?;
            for e in entries.iter().filter(|e| e.get_entry_type() == EntryType::EntryConfChange) {
                let cc: ConfChange = decode(&e.data, "conf change")?;
                match cc.get_change_type() {
                    ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => ids.insert(cc.node_id),
                    ConfChangeType::RemoveNode => ids.remove(&cc.node_id),
                };
            }
        }
        if !ids.contains(&id) {
            return Err(Error::InvalidArgument(format!("member {id:x} is not in its own cluster configuration")));
        }
        let removed: Vec<u64> = ids.into_iter().filter(|m| *m != id).collect();
        let mut entries = Vec::with_capacity(removed.len());
        for (i, node_id) in removed.iter().enumerate() {
            let cc = ConfChange { change_type: ConfChangeType::RemoveNode, node_id: *node_id, ..Default::default() };
            let mut e =
                Entry { index: commit + 1 + i as u64, term: hs.term, data: encode(&cc).into(), ..Default::default() };
            e.set_entry_type(EntryType::EntryConfChange);
            entries.push(e);
        }
        let discarded = store.read().last.saturating_sub(commit);
        hs.commit = commit + removed.len() as u64;
        store.write_log(Some(commit), &entries, Some(&hs))?;
        tracing::warn!(
            member = %format!("{id:x}"),
            commit = hs.commit,
            discarded_uncommitted_entries = discarded,
            removed = ?removed.iter().map(|m| format!("{m:x}")).collect::<Vec<_>>(),
            "forcing restart of member as a new one-member cluster (--force-new-cluster)"
        );
        Ok(removed)
    }

    fn read(&self) -> RwLockReadGuard<'_, LogState> {
        self.state.read().expect("raft log lock")
    }

    fn write(&self) -> RwLockWriteGuard<'_, LogState> {
        self.state.write().expect("raft log lock")
    }

    pub fn set_snapshot_source(&mut self, source: Arc<dyn SnapshotSource>) {
        self.snapshots = Some(source);
    }

    /// Installs a snapshot: `batch` (the state machine's staged replacement of its state, with
    /// its applied index) and the snapshot's configuration in one synced engine write FIRST, then
    /// the log restarts after the snapshot. A crash between the two leaves an applied index past
    /// the log, which [`LogStore::open`] resolves by finishing the reset; the reverse order would
    /// let a crash leave a log that starts after a state machine that is not there.
    pub fn apply_snapshot(&self, snap: &Snapshot, mut batch: WriteBatch) -> Result<()> {
        let meta = snap.get_metadata();
        batch.put(Table::RaftState, RAFT_CONF_STATE, encode(meta.get_conf_state()));
        let mut hs = self.hard_state();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        self.engine.write(batch, true)?;
        if let Some(wal) = &self.wal {
            lock(wal).reset(meta.index, meta.term, &hs)?;
        }
        let mut st = self.write();
        st.reset(meta.index, meta.term);
        st.conf_state = meta.get_conf_state().clone();
        st.hard_state = hs;
        Ok(())
    }

    pub fn first_index(&self) -> u64 {
        self.read().truncated.0 + 1
    }

    /// Durably appends `entries` (replacing any conflicting suffix) and stores `hs`, in one WAL
    /// batch; then makes them visible to raft.
    pub fn persist(&self, entries: &[Entry], hs: Option<&HardState>) -> Result<()> {
        self.write_log(None, entries, hs)
    }

    /// One durable change of the log: entries past `truncate_after` dropped, `entries` appended,
    /// `hs` stored; then the in-memory view follows.
    ///
    /// A hard state that only moves the commit index is kept in memory, as [`Self::set_commit`]
    /// keeps one: etcd's `raft.MustSync` does not sync it either, and a lost commit index is
    /// learned again from the leader or raised from the applied index at open. On a leader that
    /// turn sits between a quorum's acknowledgements and applying the entry, so an `fdatasync`
    /// there would add a whole disk write to every replicated request.
    fn write_log(&self, truncate_after: Option<u64>, entries: &[Entry], hs: Option<&HardState>) -> Result<()> {
        if truncate_after.is_none() && entries.is_empty() {
            match hs {
                None => return Ok(()),
                Some(hs) if self.only_commit_moves(hs) => {
                    self.set_commit(hs.commit);
                    return Ok(());
                }
                Some(_) => {}
            }
        }
        if let Some(wal) = &self.wal {
            // etcd's WAL save: one append, one fdatasync (timed into wal_fsync by the WAL).
            lock(wal).append(truncate_after, entries, hs)?;
        }
        let mut st = self.write();
        if let Some(index) = truncate_after {
            st.cut_from(index + 1);
        }
        // Entries from the first one on are replaced, including older ones than the kept tail:
        // the WAL holds the rest.
        st.push(entries);
        if let Some(hs) = hs {
            st.hard_state = hs.clone();
        }
        Ok(())
    }

    fn only_commit_moves(&self, hs: &HardState) -> bool {
        let cur = &self.read().hard_state;
        hs.term == cur.term && hs.vote == cur.vote
    }

    /// Records a commit index learned after persistence (raft's light ready); it is written to
    /// the engine with the next batch, and raised from the applied index at open if lost.
    pub fn set_commit(&self, commit: u64) {
        self.write().hard_state.commit = commit;
    }

    /// Persists a new configuration (after a conf change is applied).
    pub fn set_conf_state(&self, cs: ConfState) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(Table::RaftState, RAFT_CONF_STATE, encode(&cs));
        self.engine.write(batch, false)?;
        self.write().conf_state = cs;
        Ok(())
    }

    /// Drops log entries before `index` (kept: `index` onwards). The caller guarantees every
    /// entry before `index` is applied. WAL segments go whole, once all their entries are before
    /// `index`, and only after the engine is synced: the applied effects of what they hold are
    /// then durable without them.
    pub fn compact(&self, index: u64) -> Result<()> {
        if index <= self.first_index() {
            return Ok(());
        }
        let term = self.term(index - 1).map_err(|e| Error::Storage(e.to_string()))?;
        if let Some(wal) = &self.wal {
            let mut wal = lock(wal);
            if wal.releasable_before(index) > 0 {
                self.engine.sync()?;
                let released = wal.release_before(index)?;
                tracing::debug!(released, index, "released raft WAL segments");
            }
            wal.forget_before(index);
        }
        let mut st = self.write();
        st.truncated = (index - 1, term);
        st.drop_before(index);
        Ok(())
    }

    pub fn hard_state(&self) -> HardState {
        self.read().hard_state.clone()
    }

    pub fn conf_state(&self) -> ConfState {
        self.read().conf_state.clone()
    }

    /// Reads `[low, high)` from the WAL, stopping once `max_size` bytes are reached (at least
    /// one entry).
    fn stored_entries(&self, low: u64, high: u64, max_size: u64, out: &mut Vec<Entry>) -> Result<u64> {
        let Some(wal) = &self.wal else {
            return Err(Error::Storage(format!("raft entries {low}..{high} are not in memory")));
        };
        let wal = lock(wal);
        let mut size = 0u64;
        for index in low..high {
            let e = wal.read(index)?;
            size += u64::from(e.compute_size());
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e);
        }
        Ok(size)
    }
}

fn lock(wal: &Mutex<Wal>) -> MutexGuard<'_, Wal> {
    wal.lock().expect("raft WAL lock")
}

/// Moves a log kept in the engine's `raft_log` / `raft_state` tables (data dirs from before the
/// WAL) into a new WAL in `dir`: the WAL is written and synced first, then the tables are
/// emptied and the engine marked in one synced write.
fn migrate(engine: &dyn Engine, dir: &LogDir) -> Result<()> {
    let hs: HardState = match engine.get(Table::RaftState, RAFT_HARD_STATE)? {
        Some(b) => decode(&b, "hard state")?,
        None => HardState::default(),
    };
    let truncated = match engine.get(Table::RaftState, RAFT_TRUNCATED)? {
        Some(b) if b.len() == 16 => (decode_u64(&b[..8]).unwrap_or(0), decode_u64(&b[8..]).unwrap_or(0)),
        _ => (0, 0),
    };
    let mut wal = Wal::create(&dir.path, dir.segment_bytes, truncated.0, truncated.1)?;
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0usize;
    let mut moved = 0u64;
    let mut expected = truncated.0 + 1;
    let mut failed = None;
    engine.scan(Table::RaftLog, &u64_key(truncated.0 + 1), &[], &mut |_, v| {
        match Entry::parse_from_bytes(v) {
            Ok(e) if e.index == expected => {
                expected += 1;
                chunk_bytes += v.len();
                chunk.push(e);
            }
            Ok(e) => {
                failed =
                    Some(Error::Storage(format!("corrupt raft log: entry {} where {expected} was expected", e.index)))
            }
            Err(e) => failed = Some(Error::Storage(format!("corrupt raft log: {e}"))),
        }
        if failed.is_none() && chunk_bytes >= 4 << 20 {
            moved += chunk.len() as u64;
            if let Err(e) = wal.append(None, &std::mem::take(&mut chunk), None) {
                failed = Some(e);
            }
            chunk_bytes = 0;
        }
        failed.is_none()
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    moved += chunk.len() as u64;
    wal.append(None, &chunk, Some(&hs))?;
    drop(wal);
    let mut batch = WriteBatch::new();
    batch.delete_range(Table::RaftLog, Vec::new(), Vec::new());
    batch.delete(Table::RaftState, RAFT_HARD_STATE);
    batch.delete(Table::RaftState, RAFT_TRUNCATED);
    batch.put(Table::Meta, META_RAFT_WAL, b"1".to_vec());
    engine.write(batch, true)?;
    tracing::info!(entries = moved, dir = %dir.path.display(), "moved the raft log from the engine into the raft WAL");
    Ok(())
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let st = self.read();
        Ok(RaftState { hard_state: st.hard_state.clone(), conf_state: st.conf_state.clone() })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let st = self.read();
        if low <= st.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > st.last + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let recent_first = st.recent_first();
        let mut out = Vec::new();
        let mut size = 0u64;
        if low < recent_first {
            size = self.stored_entries(low, high.min(recent_first), max_size, &mut out).map_err(store_err)?;
            if out.len() as u64 != high.min(recent_first) - low {
                return Ok(out); // the size limit stopped the read
            }
        }
        // `recent` is contiguous: the wanted entries are found by position, not by a walk.
        let to = high.saturating_sub(recent_first) as usize;
        let from = (low.saturating_sub(recent_first) as usize).min(to);
        for e in st.recent.range(from..to) {
            size += u64::from(e.compute_size());
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let st = self.read();
        if idx == st.truncated.0 {
            return Ok(st.truncated.1);
        }
        if idx < st.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > st.last {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let recent_first = st.recent_first();
        if idx >= recent_first {
            return Ok(st.recent[(idx - recent_first) as usize].term);
        }
        drop(st);
        let term = self.wal.as_ref().and_then(|wal| lock(wal).term(idx));
        term.ok_or_else(|| store_err(Error::Storage(format!("raft entry {idx} missing"))))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.read().truncated.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.read().last)
    }

    /// raft-rs asks for a snapshot on the node thread; building one scans every table, so the
    /// source builds it in the background and this answers "temporarily unavailable" (raft-rs
    /// asks again later) until one at or past `request_index` is ready — and never one older
    /// than the log's truncation point: the entries between it and the log are gone, so the
    /// follower could not continue from it (and one that already committed past it would ignore
    /// it, for ever).
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let unavailable = || raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable);
        let source = self.snapshots.as_ref().ok_or_else(unavailable)?;
        let min_index = request_index.max(self.first_index().saturating_sub(1));
        let (index, term, data) = match source.snapshot(min_index) {
            Ok(Some(ready)) => ready,
            Ok(None) => return Err(unavailable()),
            Err(e) => {
                tracing::error!(error = %e, to, "making a snapshot failed");
                return Err(unavailable());
            }
        };
        let mut snap = Snapshot { data: data.into(), ..Default::default() };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf_state());
        tracing::info!(index, to, bytes = snap.data.len(), "sending a snapshot");
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    /// Entries older than the in-memory tail are read back from the WAL, conflicts older than
    /// the tail replace the stored suffix, and a reopened log sees the same entries.
    #[test]
    fn entries_beyond_the_memory_budget_come_from_the_wal() {
        let (_tmp, d) = log_dir(1 << 20);
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let store = LogStore::bootstrap(engine.clone(), Some(&d), vec![1], Vec::new(), WriteBatch::new()).unwrap();
        let big = |index: u64, term: u64| Entry { index, term, data: vec![7u8; 1 << 20].into(), ..Default::default() };
        let entries: Vec<Entry> = (1..=40).map(|i| big(i, 1)).collect();
        store.persist(&entries, None).unwrap();
        assert!(store.read().recent.len() < 40, "the tail is bounded by bytes");
        assert!(store.read().recent_first() > 1);
        let all = store.entries(1, 41, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(all.iter().map(|e| e.index).collect::<Vec<_>>(), (1..=40).collect::<Vec<_>>());
        let limited = store.entries(1, 41, 7 << 19, GetEntriesContext::empty(false)).unwrap(); // 3.5 MiB
        assert_eq!(limited.len(), 3, "max_size is honoured across engine and memory");
        assert_eq!(store.term(2).unwrap(), 1);
        // A new leader replaces entries from 5 on, older than the kept tail.
        let replaced: Vec<Entry> = (5..=6).map(|i| big(i, 2)).collect();
        store.persist(&replaced, None).unwrap();
        assert_eq!(store.last_index().unwrap(), 6);
        assert_eq!(store.term(6).unwrap(), 2);
        assert_eq!(store.term(4).unwrap(), 1);
        let reopened = LogStore::open(engine, Some(&d), 0).unwrap();
        let terms: Vec<u64> =
            reopened.entries(1, 7, None, GetEntriesContext::empty(false)).unwrap().iter().map(|e| e.term).collect();
        assert_eq!(terms, vec![1, 1, 1, 1, 2, 2]);
        reopened.compact(4).unwrap();
        assert_eq!(reopened.first_index(), 4);
        assert_eq!(reopened.term(3).unwrap(), 1);
        assert!(reopened.entries(2, 5, None, GetEntriesContext::empty(false)).is_err());
    }

    /// A hard state that only moves the commit index is not written (no `fdatasync` between a
    /// leader's quorum and its apply); a new term or vote is, with the latest commit index.
    #[test]
    fn only_a_new_term_or_vote_is_written_not_a_commit_index() {
        let (_tmp, d) = log_dir(1 << 20);
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let store = LogStore::bootstrap(engine.clone(), Some(&d), vec![1], Vec::new(), WriteBatch::new()).unwrap();
        let hs = |term: u64, vote: u64, commit: u64| HardState { term, vote, commit, ..Default::default() };
        let entries: Vec<Entry> = (1..=3).map(|index| Entry { index, term: 2, ..Default::default() }).collect();
        store.persist(&entries, Some(&hs(2, 1, 1))).unwrap();
        store.persist(&[], Some(&hs(2, 1, 3))).unwrap();
        assert_eq!(store.hard_state(), hs(2, 1, 3), "the commit index moves in memory");
        let reopened = LogStore::open(engine.clone(), Some(&d), 0).unwrap();
        assert_eq!(reopened.hard_state().commit, 1, "but is not written");
        drop(reopened);
        store.persist(&[], Some(&hs(3, 0, 3))).unwrap();
        let reopened = LogStore::open(engine, Some(&d), 0).unwrap();
        assert_eq!(reopened.hard_state(), hs(3, 0, 3), "a new term is written, with the commit index");
    }

    /// `--force-new-cluster` on a member of {1, 2, 3} that also saw member 4 added (committed,
    /// not yet applied) and an uncommitted entry: the uncommitted entry is dropped, committed
    /// removals of 2, 3 and 4 follow the commit index at the current term, and a second run
    /// finds nobody left to remove.
    #[test]
    fn forcing_a_new_cluster_removes_every_other_member_after_the_commit_index() {
        let (_tmp, d) = log_dir(1 << 20);
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let conf = |index: u64, change_type: ConfChangeType, node_id: u64| {
            let cc = ConfChange { change_type, node_id, ..Default::default() };
            let mut e = Entry { index, term: 2, data: encode(&cc).into(), ..Default::default() };
            e.set_entry_type(EntryType::EntryConfChange);
            e
        };
        let store =
            LogStore::bootstrap(engine.clone(), Some(&d), vec![1, 2, 3], Vec::new(), WriteBatch::new()).unwrap();
        let mut entries: Vec<Entry> = (1..=4).map(|index| Entry { index, term: 2, ..Default::default() }).collect();
        entries.push(conf(5, ConfChangeType::AddNode, 4));
        entries.push(Entry { index: 6, term: 2, data: b"uncommitted".to_vec().into(), ..Default::default() });
        store.persist(&entries, Some(&HardState { term: 3, vote: 1, commit: 5, ..Default::default() })).unwrap();
        drop(store);
        let removed = LogStore::force_standalone(engine.clone(), Some(&d), 1, 4).unwrap();
        assert_eq!(removed, vec![2, 3, 4]);
        let store = LogStore::open(engine.clone(), Some(&d), 4).unwrap();
        let hs = store.hard_state();
        assert_eq!((hs.term, hs.vote, hs.commit), (3, 1, 8));
        assert_eq!(store.last_index().unwrap(), 8, "the uncommitted entry is gone");
        let tail = store.entries(6, 9, None, GetEntriesContext::empty(false)).unwrap();
        let changes: Vec<(u64, u64, ConfChangeType)> = tail
            .iter()
            .map(|e| {
                let cc: ConfChange = decode(&e.data, "conf change").unwrap();
                (e.index, e.term, cc.get_change_type())
            })
            .collect();
        assert_eq!(changes.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), vec![(6, 3), (7, 3), (8, 3)]);
        assert!(changes.iter().all(|c| c.2 == ConfChangeType::RemoveNode));
        // Once applied (the persisted configuration is then {1}), nothing is left to remove.
        store.set_conf_state(ConfState { voters: vec![1], ..Default::default() }).unwrap();
        drop(store);
        assert_eq!(LogStore::force_standalone(engine.clone(), Some(&d), 1, 8).unwrap(), Vec::<u64>::new());
        assert_eq!(LogStore::open(engine.clone(), Some(&d), 8).unwrap().last_index().unwrap(), 8);
        // A learner is refused.
        let learner: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let store = LogStore::bootstrap(learner.clone(), Some(&d), vec![1], Vec::new(), WriteBatch::new()).unwrap();
        store.set_conf_state(ConfState { voters: vec![1], learners: vec![2], ..Default::default() }).unwrap();
        drop(store);
        assert!(LogStore::force_standalone(learner, Some(&d), 2, 0).is_err());
    }

    /// Any `[low, high)` inside the in-memory tail comes back exactly, found by position (the
    /// tail holds tens of thousands of entries; walking it on every Ready cost the node loop).
    #[test]
    fn slices_of_the_in_memory_tail_are_exact() {
        let (_tmp, d) = log_dir(1 << 20);
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let store = LogStore::bootstrap(engine, Some(&d), vec![1], Vec::new(), WriteBatch::new()).unwrap();
        let entries: Vec<Entry> = (1..=100).map(|index| Entry { index, term: 1, ..Default::default() }).collect();
        store.persist(&entries, None).unwrap();
        store.compact(11).unwrap();
        for (low, high) in [(11, 12), (11, 101), (50, 51), (50, 80), (100, 101), (30, 30)] {
            let got = store.entries(low, high, None, GetEntriesContext::empty(false)).unwrap();
            assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), (low..high).collect::<Vec<_>>());
        }
        let limited = store.entries(20, 101, 1, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(limited.len(), 1, "at least one entry, then max_size");
    }

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::storage::schema::META_APPLIED_INDEX;

    fn log_dir(segment_bytes: u64) -> (tempfile::TempDir, LogDir) {
        let tmp = tempfile::tempdir().unwrap();
        let d = LogDir { path: tmp.path().to_path_buf(), segment_bytes };
        (tmp, d)
    }
    use crate::storage::{MemoryEngine, Visitor};

    /// An engine that "crashes" after `budget` more writes (later writes are lost), and counts
    /// the files in `dir` (the WAL's) at each sync.
    struct Crashing {
        inner: MemoryEngine,
        budget: AtomicUsize,
        dir: Option<std::path::PathBuf>,
        syncs: std::sync::Mutex<Vec<usize>>,
    }

    impl Crashing {
        fn new(dir: Option<std::path::PathBuf>) -> Self {
            Self { inner: MemoryEngine::new(), budget: AtomicUsize::new(usize::MAX), dir, syncs: Default::default() }
        }
    }

    impl Engine for Crashing {
        fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.inner.get(table, key)
        }
        fn scan(&self, table: Table, start: &[u8], end: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
            self.inner.scan(table, start, end, visit)
        }
        fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
            if self.budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1)).is_err() {
                return Err(Error::Storage("crashed".into()));
            }
            self.inner.write(batch, sync)
        }
        fn sync(&self) -> Result<()> {
            let files = self.dir.as_ref().map_or(0, |d| std::fs::read_dir(d).unwrap().count());
            self.syncs.lock().unwrap().push(files);
            Ok(())
        }
        fn with_snapshot(&self, read: &mut dyn FnMut(&dyn crate::storage::Reads) -> Result<()>) -> Result<()> {
            self.inner.with_snapshot(read)
        }
        fn table_bytes(&self, tables: &[Table]) -> u64 {
            self.inner.table_bytes(tables)
        }

        fn compact(&self) -> Result<()> {
            self.inner.compact()
        }
    }

    /// A member killed at any point of a snapshot install restarts: the state machine's applied
    /// index never lies past the end of its raft log. The state machine is written (synced)
    /// first; a crash before the log reset leaves an applied index past the log, or on an entry
    /// of another term, and open finishes the reset.
    #[test]
    fn a_crash_during_snapshot_install_leaves_a_startable_member() {
        // (snapshot index, term): past the log, and inside it on a conflicting term.
        for (index, term) in [(500, 2), (2, 2)] {
            for budget in 0..3 {
                let (_tmp, d) = log_dir(1 << 20);
                let engine = Arc::new(Crashing::new(None));
                let entries: Vec<Entry> = (1..=3).map(|i| Entry { index: i, term: 1, ..Default::default() }).collect();
                let store = LogStore::bootstrap(engine.clone(), Some(&d), vec![1], entries, WriteBatch::new()).unwrap();
                engine.budget.store(budget, Ordering::SeqCst);
                let mut snap = Snapshot::default();
                snap.mut_metadata().index = index;
                snap.mut_metadata().term = term;
                snap.mut_metadata().mut_conf_state().voters = vec![1];
                // What the state machine stages: its new content and applied index and term.
                let mut staged = WriteBatch::new();
                staged.put(Table::Key, b"k".to_vec(), b"v".to_vec());
                staged.put(Table::Meta, META_APPLIED_INDEX, index.to_be_bytes());
                staged.put(Table::Meta, META_APPLIED_TERM, term.to_be_bytes());
                if budget == 2 {
                    // The crash falls between the state machine's write and the log reset.
                    engine.write(staged, true).unwrap();
                } else {
                    let _crashed_or_done = store.apply_snapshot(&snap, staged);
                }
                drop(store);
                engine.budget.store(usize::MAX, Ordering::SeqCst);
                let applied =
                    engine.get(Table::Meta, META_APPLIED_INDEX).unwrap().as_deref().and_then(decode_u64).unwrap_or(0);
                let reopened = LogStore::open(engine.clone(), Some(&d), applied).unwrap();
                let (commit, last) = (reopened.hard_state().commit, reopened.last_index().unwrap());
                assert!(commit <= last, "budget {budget}: commit {commit} past the last log index {last}");
                assert!(applied == 0 || applied == index, "budget {budget}: applied {applied}");
                assert_eq!(applied == index, engine.get(Table::Key, b"k").unwrap().is_some());
                if applied == index {
                    assert_eq!((reopened.first_index(), last), (index + 1, index), "budget {budget}: the log restarts");
                    assert_eq!(reopened.term(index).unwrap(), term);
                    assert!(commit >= index);
                }
            }
        }
    }

    /// Compaction deletes WAL segments only after syncing the engine (whose unsynced applied
    /// effects the deleted entries could otherwise be needed to replay); a state machine found
    /// behind the log's start is refused rather than silently missing entries.
    #[test]
    fn compaction_syncs_the_engine_before_deleting_segments() {
        let (tmp, d) = log_dir(16 << 10);
        let engine = Arc::new(Crashing::new(Some(tmp.path().to_path_buf())));
        let store = LogStore::bootstrap(engine.clone(), Some(&d), vec![1], Vec::new(), WriteBatch::new()).unwrap();
        for i in 1..=200u64 {
            let e = Entry { index: i, term: 1, data: vec![1u8; 500].into(), ..Default::default() };
            store.persist(&[e], Some(&HardState { term: 1, vote: 1, commit: i, ..Default::default() })).unwrap();
        }
        let files = |p: &std::path::Path| std::fs::read_dir(p).unwrap().count();
        let before = files(tmp.path());
        store.compact(150).unwrap();
        let syncs = engine.syncs.lock().unwrap().clone();
        assert_eq!(syncs.first(), Some(&before), "the engine was synced before any segment went");
        assert!(files(tmp.path()) < before, "whole segments deleted");
        store.compact(151).unwrap();
        assert_eq!(engine.syncs.lock().unwrap().len(), syncs.len(), "nothing more to delete: no sync");
        assert_eq!(store.entries(151, 201, None, GetEntriesContext::empty(false)).unwrap().len(), 50);
        drop(store);
        let reopened = LogStore::open(engine.clone(), Some(&d), 150).unwrap();
        assert!(reopened.first_index() <= 150 && reopened.first_index() > 10);
        assert_eq!(reopened.last_index().unwrap(), 200);
        let first = reopened.first_index();
        drop(reopened);
        let err = LogStore::open(engine, Some(&d), first - 2).err().expect("refused").to_string();
        assert!(err.contains("before the start of the raft log"), "{err}");
    }

    /// A data dir from before the WAL (log and hard state in the engine's tables) opens with its
    /// log moved into the WAL and the tables emptied.
    #[test]
    fn a_log_kept_in_the_engine_moves_into_the_wal() {
        let (_tmp, d) = log_dir(16 << 10);
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let mut b = WriteBatch::new();
        b.put(Table::RaftState, RAFT_CONF_STATE, encode(&ConfState { voters: vec![1], ..Default::default() }));
        b.put(
            Table::RaftState,
            RAFT_HARD_STATE,
            encode(&HardState { term: 3, vote: 1, commit: 60, ..Default::default() }),
        );
        let mut trunc = u64_key(9).to_vec();
        trunc.extend_from_slice(&u64_key(2));
        b.put(Table::RaftState, RAFT_TRUNCATED, trunc);
        for i in 10..=70u64 {
            let e = Entry { index: i, term: 3, data: vec![2u8; 700].into(), ..Default::default() };
            b.put(Table::RaftLog, u64_key(i).to_vec(), encode(&e));
        }
        engine.write(b, true).unwrap();
        let store = LogStore::open(engine.clone(), Some(&d), 50).unwrap();
        assert_eq!((store.first_index(), store.last_index().unwrap()), (10, 70));
        assert_eq!(store.term(9).unwrap(), 2);
        assert_eq!(store.hard_state().commit, 60);
        assert_eq!(store.entries(10, 71, None, GetEntriesContext::empty(false)).unwrap().len(), 61);
        assert!(engine.get(Table::Meta, META_RAFT_WAL).unwrap().is_some());
        assert!(crate::storage::scan_all(&*engine, Table::RaftLog, b"", b"").unwrap().is_empty());
        assert!(engine.get(Table::RaftState, RAFT_HARD_STATE).unwrap().is_none());
        drop(store);
        let store = LogStore::open(engine, Some(&d), 50).unwrap();
        assert_eq!((store.first_index(), store.last_index().unwrap(), store.hard_state().vote), (10, 70, 1));
    }

    /// The in-memory engine's log keeps everything in memory and cannot be reopened.
    #[test]
    fn the_in_memory_log_needs_no_directory() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let entries: Vec<Entry> = (1..=3).map(|i| Entry { index: i, term: 1, ..Default::default() }).collect();
        let store = LogStore::bootstrap(engine.clone(), None, vec![1], entries, WriteBatch::new()).unwrap();
        store.persist(&[Entry { index: 4, term: 2, ..Default::default() }], None).unwrap();
        assert_eq!(store.entries(1, 5, None, GetEntriesContext::empty(false)).unwrap().len(), 4);
        store.compact(3).unwrap();
        assert_eq!((store.first_index(), store.term(2).unwrap()), (3, 1));
        assert!(LogStore::open(engine, None, 0).is_err());
    }

    /// A snapshot older than the log's truncation point bridges nothing: a follower that
    /// restarted with a commit index past it ignores it, and the leader would offer it for ever.
    #[test]
    fn snapshots_offered_are_never_older_than_the_truncation_point() {
        let (_tmp, d) = log_dir(1 << 20);
        struct Recorder(std::sync::Mutex<Vec<u64>>);
        impl SnapshotSource for Recorder {
            fn snapshot(&self, min_index: u64) -> Result<Option<(u64, u64, Vec<u8>)>> {
                self.0.lock().unwrap().push(min_index);
                Ok(None)
            }
        }
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let mut store = LogStore::bootstrap(engine, Some(&d), vec![1], Vec::new(), WriteBatch::new()).unwrap();
        let recorder = Arc::new(Recorder(Default::default()));
        store.set_snapshot_source(recorder.clone());
        let entries: Vec<Entry> = (1..=50).map(|index| Entry { index, term: 1, ..Default::default() }).collect();
        store.persist(&entries, None).unwrap();
        store.compact(40).unwrap();
        assert!(raft::Storage::snapshot(&store, 0, 2).is_err(), "the source has none ready yet");
        assert!(raft::Storage::snapshot(&store, 45, 2).is_err());
        assert_eq!(*recorder.0.lock().unwrap(), vec![store.first_index() - 1, 45]);
        assert_eq!(store.first_index(), 40, "compacted up to the truncation point");
    }
}
