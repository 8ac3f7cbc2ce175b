//! The raft log and hard state, persisted in the engine's `raft_log` / `raft_state` tables, with
//! only the newest entries kept in memory.
//!
//! ```text
//!   engine raft_log:  [first ............................................. last]
//!   memory `recent`:                                     [recent_first ... last]  (≤ RECENT_BYTES)
//! ```
//!
//! Contract with the node loop: [`LogStore::persist`] writes new entries (truncating any
//! conflicting suffix) and the hard state in ONE synced batch, then updates the in-memory tail.
//! raft reads recent entries from memory and older ones (a lagging follower's catch-up, a
//! restart's replay) from the engine, so memory stays bounded whatever `--snapshot-count` is.
//! At open, a commit index older than the applied index (the applied index is written by the
//! state machine, which may run ahead of the last persisted hard state) is raised to it, since
//! applied entries were committed.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use super::SnapshotSource;
use crate::error::{Error, Result};
use crate::storage::schema::{decode_u64, u64_key, RAFT_CONF_STATE, RAFT_HARD_STATE, RAFT_TRUNCATED};
use crate::storage::{Engine, Table, WriteBatch};

/// Bytes of the newest entries kept in memory (at least one entry is always kept).
const RECENT_BYTES: usize = 16 * 1024 * 1024;

pub struct LogStore {
    engine: Arc<dyn Engine>,
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
}

impl LogState {
    fn recent_first(&self) -> u64 {
        self.recent.front().map(|e| e.index).unwrap_or(self.last + 1)
    }

    /// Appends entries that follow on from `last` (after the caller cut any conflicting suffix),
    /// then drops the oldest kept entries beyond the memory budget.
    fn push(&mut self, entries: &[Entry]) {
        for e in entries {
            self.recent_bytes += e.compute_size() as usize;
            self.recent.push_back(e.clone());
            self.last = e.index;
        }
        while self.recent.len() > 1 && self.recent_bytes > RECENT_BYTES {
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
    /// configuration changes, term 1) already committed — or nothing at all for a joining member
    /// — in one synced write with the caller's `batch`.
    pub fn bootstrap(
        engine: Arc<dyn Engine>,
        voters: Vec<u64>,
        entries: Vec<Entry>,
        mut batch: WriteBatch,
    ) -> Result<Self> {
        let cs = ConfState { voters, ..Default::default() };
        if let Some(last) = entries.last() {
            let hs = HardState { term: last.term, commit: last.index, ..Default::default() };
            batch.put(Table::RaftState, RAFT_HARD_STATE, encode(&hs));
        }
        for e in &entries {
            batch.put(Table::RaftLog, u64_key(e.index).to_vec(), encode(e));
        }
        batch.put(Table::RaftState, RAFT_CONF_STATE, encode(&cs));
        engine.write(batch, true)?;
        Self::open(engine, 0)
    }

    /// Opens an existing log. `applied` is the state machine's applied index.
    pub fn open(engine: Arc<dyn Engine>, applied: u64) -> Result<Self> {
        let conf_state: ConfState = match engine.get(Table::RaftState, RAFT_CONF_STATE)? {
            Some(b) => decode(&b, "conf state")?,
            None => return Err(Error::Storage("raft conf state missing".into())),
        };
        let mut hard_state: HardState = match engine.get(Table::RaftState, RAFT_HARD_STATE)? {
            Some(b) => decode(&b, "hard state")?,
            None => HardState::default(),
        };
        let truncated = match engine.get(Table::RaftState, RAFT_TRUNCATED)? {
            Some(b) if b.len() == 16 => (decode_u64(&b[..8]).unwrap_or(0), decode_u64(&b[8..]).unwrap_or(0)),
            _ => (0, 0),
        };
        let mut state = LogState {
            hard_state: HardState::default(),
            conf_state,
            truncated,
            last: truncated.0,
            recent: VecDeque::new(),
            recent_bytes: 0,
        };
        let mut bad = None;
        let mut expected = truncated.0 + 1;
        engine.scan(Table::RaftLog, &u64_key(truncated.0 + 1), &[], &mut |_, v| {
            match Entry::parse_from_bytes(v) {
                Ok(e) if e.index == expected => {
                    expected += 1;
                    state.push(std::slice::from_ref(&e));
                }
                Ok(e) => bad = Some(format!("entry {} where {expected} was expected", e.index)),
                Err(e) => bad = Some(e.to_string()),
            }
            bad.is_none()
        })?;
        if let Some(e) = bad {
            return Err(Error::Storage(format!("corrupt raft log: {e}")));
        }
        if hard_state.commit < applied {
            hard_state.commit = applied;
        }
        state.hard_state = hard_state;
        Ok(Self { engine, snapshots: None, state: RwLock::new(state) })
    }

    /// etcd's `restartAsStandaloneNode` (`--force-new-cluster`): rewrites an existing log so
    /// that member `id` forms a cluster of its own, keeping everything it committed. Entries
    /// past the commit index are dropped (nobody can commit them any more); one committed
    /// configuration change per other member removes it, appended at the commit index with the
    /// current term; the hard state's commit index moves past them. All in one synced write, so
    /// a crash leaves the old log or the new one, and running it again changes nothing. The
    /// removals then take effect through the ordinary apply path (raft's configuration and the
    /// state machine's member list alike). Returns the removed members.
    pub fn force_standalone(engine: Arc<dyn Engine>, id: u64, applied: u64) -> Result<Vec<u64>> {
        let store = Self::open(engine.clone(), applied)?;
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
        let mut batch = WriteBatch::new();
        batch.delete_range(Table::RaftLog, u64_key(commit + 1).to_vec(), Vec::new());
        for (i, node_id) in removed.iter().enumerate() {
            let cc = ConfChange { change_type: ConfChangeType::RemoveNode, node_id: *node_id, ..Default::default() };
            let mut e =
                Entry { index: commit + 1 + i as u64, term: hs.term, data: encode(&cc).into(), ..Default::default() };
            e.set_entry_type(EntryType::EntryConfChange);
            batch.put(Table::RaftLog, u64_key(e.index).to_vec(), encode(&e));
        }
        let discarded = store.read().last.saturating_sub(commit);
        hs.commit = commit + removed.len() as u64;
        batch.put(Table::RaftState, RAFT_HARD_STATE, encode(&hs));
        engine.write(batch, true)?;
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

    /// Installs a snapshot: the log restarts after it, with its configuration, in ONE synced
    /// write together with `batch`, the state machine's staged replacement of its state. (Two
    /// writes would let a crash between them leave an applied index past the end of the log.)
    pub fn apply_snapshot(&self, snap: &Snapshot, mut batch: WriteBatch) -> Result<()> {
        let meta = snap.get_metadata();
        batch.delete_range(Table::RaftLog, Vec::new(), Vec::new());
        let mut trunc = u64_key(meta.index).to_vec();
        trunc.extend_from_slice(&u64_key(meta.term));
        batch.put(Table::RaftState, RAFT_TRUNCATED, trunc);
        batch.put(Table::RaftState, RAFT_CONF_STATE, encode(meta.get_conf_state()));
        let mut hs = self.hard_state();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        batch.put(Table::RaftState, RAFT_HARD_STATE, encode(&hs));
        self.engine.write(batch, true)?;
        let mut st = self.write();
        st.recent.clear();
        st.recent_bytes = 0;
        st.truncated = (meta.index, meta.term);
        st.last = meta.index;
        st.conf_state = meta.get_conf_state().clone();
        st.hard_state = hs;
        Ok(())
    }

    pub fn first_index(&self) -> u64 {
        self.read().truncated.0 + 1
    }

    /// Durably appends `entries` (replacing any conflicting suffix) and stores `hs`, in one synced
    /// batch; then makes them visible to raft.
    pub fn persist(&self, entries: &[Entry], hs: Option<&HardState>) -> Result<()> {
        let mut batch = WriteBatch::new();
        if let Some(first) = entries.first() {
            if first.index <= self.read().last {
                batch.delete_range(Table::RaftLog, u64_key(first.index).to_vec(), Vec::new());
            }
            for e in entries {
                batch.put(Table::RaftLog, u64_key(e.index).to_vec(), encode(e));
            }
        }
        if let Some(hs) = hs {
            batch.put(Table::RaftState, RAFT_HARD_STATE, encode(hs));
        }
        if batch.is_empty() {
            return Ok(());
        }
        // etcd's WAL fsync: here the synced write of the raft log and hard state.
        let started = std::time::Instant::now();
        self.engine.write(batch, true)?;
        crate::metrics::get().wal_fsync.observe(started.elapsed().as_secs_f64());
        let mut st = self.write();
        if let Some(first) = entries.first() {
            // Entries from `first` on are replaced, including older ones than the kept tail: the
            // engine holds the rest.
            st.cut_from(first.index);
            st.push(entries);
        }
        if let Some(hs) = hs {
            st.hard_state = hs.clone();
        }
        Ok(())
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

    /// Drops log entries before `index` (kept: `index` onwards), recording the truncation point.
    /// The caller guarantees every entry before `index` is applied and durable.
    pub fn compact(&self, index: u64) -> Result<()> {
        if index <= self.first_index() {
            return Ok(());
        }
        let term = self.term(index - 1).map_err(|e| Error::Storage(e.to_string()))?;
        let mut batch = WriteBatch::new();
        batch.delete_range(Table::RaftLog, u64_key(0).to_vec(), u64_key(index).to_vec());
        let mut trunc = u64_key(index - 1).to_vec();
        trunc.extend_from_slice(&u64_key(term));
        batch.put(Table::RaftState, RAFT_TRUNCATED, trunc);
        self.engine.write(batch, false)?;
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

    /// Reads `[low, high)` from the engine, stopping once `max_size` bytes are reached (at least
    /// one entry).
    fn stored_entries(&self, low: u64, high: u64, max_size: u64, out: &mut Vec<Entry>) -> Result<u64> {
        let mut size = 0u64;
        let mut bad = None;
        self.engine.scan(
            Table::RaftLog,
            &u64_key(low),
            &u64_key(high),
            &mut |_, v| match Entry::parse_from_bytes(v) {
                Ok(e) => {
                    size += u64::from(e.compute_size());
                    if !out.is_empty() && size > max_size {
                        return false;
                    }
                    out.push(e);
                    true
                }
                Err(e) => {
                    bad = Some(e.to_string());
                    false
                }
            },
        )?;
        match bad {
            Some(e) => Err(Error::Storage(format!("corrupt raft entry: {e}"))),
            None => Ok(size),
        }
    }
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
        let bytes = self.engine.get(Table::RaftLog, &u64_key(idx)).map_err(store_err)?;
        let bytes = bytes.ok_or_else(|| store_err(Error::Storage(format!("raft entry {idx} missing"))))?;
        decode::<Entry>(&bytes, "entry").map(|e| e.term).map_err(store_err)
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
    /// Entries older than the in-memory tail are read back from the engine, conflicts older than
    /// the tail replace the stored suffix, and a reopened log sees the same entries.
    #[test]
    fn entries_beyond_the_memory_budget_come_from_the_engine() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let store = LogStore::bootstrap(engine.clone(), vec![1], Vec::new(), WriteBatch::new()).unwrap();
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
        let reopened = LogStore::open(engine, 0).unwrap();
        let terms: Vec<u64> =
            reopened.entries(1, 7, None, GetEntriesContext::empty(false)).unwrap().iter().map(|e| e.term).collect();
        assert_eq!(terms, vec![1, 1, 1, 1, 2, 2]);
        reopened.compact(4).unwrap();
        assert_eq!(reopened.first_index(), 4);
        assert_eq!(reopened.term(3).unwrap(), 1);
        assert!(reopened.entries(2, 5, None, GetEntriesContext::empty(false)).is_err());
    }

    /// `--force-new-cluster` on a member of {1, 2, 3} that also saw member 4 added (committed,
    /// not yet applied) and an uncommitted entry: the uncommitted entry is dropped, committed
    /// removals of 2, 3 and 4 follow the commit index at the current term, and a second run
    /// finds nobody left to remove.
    #[test]
    fn forcing_a_new_cluster_removes_every_other_member_after_the_commit_index() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let conf = |index: u64, change_type: ConfChangeType, node_id: u64| {
            let cc = ConfChange { change_type, node_id, ..Default::default() };
            let mut e = Entry { index, term: 2, data: encode(&cc).into(), ..Default::default() };
            e.set_entry_type(EntryType::EntryConfChange);
            e
        };
        let store = LogStore::bootstrap(engine.clone(), vec![1, 2, 3], Vec::new(), WriteBatch::new()).unwrap();
        let mut entries: Vec<Entry> = (1..=4).map(|index| Entry { index, term: 2, ..Default::default() }).collect();
        entries.push(conf(5, ConfChangeType::AddNode, 4));
        entries.push(Entry { index: 6, term: 2, data: b"uncommitted".to_vec().into(), ..Default::default() });
        store.persist(&entries, Some(&HardState { term: 3, vote: 1, commit: 5, ..Default::default() })).unwrap();
        drop(store);
        let removed = LogStore::force_standalone(engine.clone(), 1, 4).unwrap();
        assert_eq!(removed, vec![2, 3, 4]);
        let store = LogStore::open(engine.clone(), 4).unwrap();
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
        assert_eq!(LogStore::force_standalone(engine.clone(), 1, 8).unwrap(), Vec::<u64>::new());
        assert_eq!(LogStore::open(engine.clone(), 8).unwrap().last_index().unwrap(), 8);
        // A learner is refused.
        let learner: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let store = LogStore::bootstrap(learner.clone(), vec![1], Vec::new(), WriteBatch::new()).unwrap();
        store.set_conf_state(ConfState { voters: vec![1], learners: vec![2], ..Default::default() }).unwrap();
        drop(store);
        assert!(LogStore::force_standalone(learner, 2, 0).is_err());
    }

    /// Any `[low, high)` inside the in-memory tail comes back exactly, found by position (the
    /// tail holds tens of thousands of entries; walking it on every Ready cost the node loop).
    #[test]
    fn slices_of_the_in_memory_tail_are_exact() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let store = LogStore::bootstrap(engine, vec![1], Vec::new(), WriteBatch::new()).unwrap();
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
    use crate::storage::{MemoryEngine, Visitor};

    /// An engine that "crashes" after `budget` more writes: later writes are lost.
    struct Crashing {
        inner: MemoryEngine,
        budget: AtomicUsize,
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
    /// index never lies past the end of its raft log (two separate writes used to allow that,
    /// and raft then refused to start with a commit index beyond the last entry).
    #[test]
    fn a_crash_during_snapshot_install_leaves_a_startable_member() {
        let (index, term) = (500, 2);
        for budget in 0..3 {
            let engine = Arc::new(Crashing { inner: MemoryEngine::new(), budget: AtomicUsize::new(usize::MAX) });
            let entries: Vec<Entry> = (1..=3).map(|i| Entry { index: i, term: 1, ..Default::default() }).collect();
            let store = LogStore::bootstrap(engine.clone(), vec![1], entries, WriteBatch::new()).unwrap();
            engine.budget.store(budget, Ordering::SeqCst);
            let mut snap = Snapshot::default();
            snap.mut_metadata().index = index;
            snap.mut_metadata().term = term;
            snap.mut_metadata().mut_conf_state().voters = vec![1];
            // What the state machine stages: its new content and applied index.
            let mut staged = WriteBatch::new();
            staged.put(Table::Key, b"k".to_vec(), b"v".to_vec());
            staged.put(Table::Meta, META_APPLIED_INDEX, index.to_be_bytes());
            let _crashed_or_done = store.apply_snapshot(&snap, staged);
            engine.budget.store(usize::MAX, Ordering::SeqCst);
            let applied =
                engine.get(Table::Meta, META_APPLIED_INDEX).unwrap().as_deref().and_then(decode_u64).unwrap_or(0);
            let reopened = LogStore::open(engine.clone(), applied).unwrap();
            let (commit, last) = (reopened.hard_state().commit, reopened.last_index().unwrap());
            assert!(commit <= last, "budget {budget}: commit {commit} past the last log index {last}");
            assert!(applied == 0 || applied == index, "budget {budget}: applied {applied}");
            assert_eq!(applied == index, engine.get(Table::Key, b"k").unwrap().is_some());
        }
    }

    /// A snapshot older than the log's truncation point bridges nothing: a follower that
    /// restarted with a commit index past it ignores it, and the leader would offer it for ever.
    #[test]
    fn snapshots_offered_are_never_older_than_the_truncation_point() {
        struct Recorder(std::sync::Mutex<Vec<u64>>);
        impl SnapshotSource for Recorder {
            fn snapshot(&self, min_index: u64) -> Result<Option<(u64, u64, Vec<u8>)>> {
                self.0.lock().unwrap().push(min_index);
                Ok(None)
            }
        }
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let mut store = LogStore::bootstrap(engine, vec![1], Vec::new(), WriteBatch::new()).unwrap();
        let recorder = Arc::new(Recorder(Default::default()));
        store.set_snapshot_source(recorder.clone());
        let entries: Vec<Entry> = (2..=50).map(|index| Entry { index, term: 1, ..Default::default() }).collect();
        store.persist(&entries, None).unwrap();
        store.compact(40).unwrap();
        assert!(raft::Storage::snapshot(&store, 0, 2).is_err(), "the source has none ready yet");
        assert!(raft::Storage::snapshot(&store, 45, 2).is_err());
        assert_eq!(*recorder.0.lock().unwrap(), vec![store.first_index() - 1, 45]);
        assert_eq!(store.first_index(), 40, "compacted up to the truncation point");
    }
}
