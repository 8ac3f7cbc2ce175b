//! The raft log and hard state: kept in memory (raft-rs `MemStorage`) for raft's reads and
//! persisted to the engine's `raft_log` / `raft_state` tables before raft is told they are
//! durable.
//!
//! Contract with the node loop: [`LogStore::persist`] writes new entries (truncating any
//! conflicting suffix) and the hard state in ONE synced batch, then updates the in-memory copy.
//! At open, the in-memory copy is rebuilt from the engine; a commit index older than the applied
//! index (the applied index is written by the state machine, which may run ahead of the last
//! persisted hard state) is raised to it, since applied entries were committed.

use std::sync::Arc;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage};

use super::SnapshotSource;
use crate::error::{Error, Result};
use crate::storage::schema::{decode_u64, u64_key, RAFT_CONF_STATE, RAFT_HARD_STATE, RAFT_TRUNCATED};
use crate::storage::{Engine, Table, WriteBatch};

pub struct LogStore {
    mem: MemStorage,
    engine: Arc<dyn Engine>,
    snapshots: Option<Arc<dyn SnapshotSource>>,
}

fn decode<M: protobuf::Message>(bytes: &[u8], what: &str) -> Result<M> {
    M::parse_from_bytes(bytes).map_err(|e| Error::Storage(format!("corrupt raft {what}: {e}")))
}

fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().expect("encoding a raft message into memory cannot fail")
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
        let cs: ConfState = match engine.get(Table::RaftState, RAFT_CONF_STATE)? {
            Some(b) => decode(&b, "conf state")?,
            None => return Err(Error::Storage("raft conf state missing".into())),
        };
        let mut hs: HardState = match engine.get(Table::RaftState, RAFT_HARD_STATE)? {
            Some(b) => decode(&b, "hard state")?,
            None => HardState::default(),
        };
        let (trunc_index, trunc_term) = match engine.get(Table::RaftState, RAFT_TRUNCATED)? {
            Some(b) if b.len() == 16 => (decode_u64(&b[..8]).unwrap_or(0), decode_u64(&b[8..]).unwrap_or(0)),
            _ => (0, 0),
        };
        let mem = MemStorage::new();
        if trunc_index == 0 {
            mem.initialize_with_conf_state(cs);
        } else {
            let mut snap = Snapshot::default();
            snap.mut_metadata().index = trunc_index;
            snap.mut_metadata().term = trunc_term;
            snap.mut_metadata().set_conf_state(cs);
            mem.wl().apply_snapshot(snap).map_err(|e| Error::Storage(e.to_string()))?;
        }
        let mut entries = Vec::new();
        let mut bad = None;
        engine.scan(Table::RaftLog, &u64_key(trunc_index + 1), &[], &mut |_, v| {
            match Entry::parse_from_bytes(v) {
                Ok(e) => entries.push(e),
                Err(e) => bad = Some(e.to_string()),
            }
            bad.is_none()
        })?;
        if let Some(e) = bad {
            return Err(Error::Storage(format!("corrupt raft entry: {e}")));
        }
        mem.wl().append(&entries).map_err(|e| Error::Storage(e.to_string()))?;
        if hs.commit < applied {
            hs.commit = applied;
        }
        mem.wl().set_hardstate(hs);
        Ok(Self { mem, engine, snapshots: None })
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
        let mut empty = snap.clone();
        empty.data = Default::default();
        self.mem.wl().apply_snapshot(empty).map_err(|e| Error::Storage(e.to_string()))
    }

    pub fn first_index(&self) -> u64 {
        self.mem.first_index().unwrap_or(1)
    }

    /// Durably appends `entries` (replacing any conflicting suffix) and stores `hs`, in one synced
    /// batch; then makes them visible to raft.
    pub fn persist(&self, entries: &[Entry], hs: Option<&HardState>) -> Result<()> {
        let mut batch = WriteBatch::new();
        if let Some(first) = entries.first() {
            let last_stored = self.mem.last_index().map_err(|e| Error::Storage(e.to_string()))?;
            if first.index <= last_stored {
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
        self.engine.write(batch, true)?;
        let mut core = self.mem.wl();
        if !entries.is_empty() {
            core.append(entries).map_err(|e| Error::Storage(e.to_string()))?;
        }
        if let Some(hs) = hs {
            core.set_hardstate(hs.clone());
        }
        Ok(())
    }

    /// Records a commit index learned after persistence (raft's light ready); it is written to
    /// the engine with the next batch, and raised from the applied index at open if lost.
    pub fn set_commit(&self, commit: u64) {
        self.mem.wl().mut_hard_state().commit = commit;
    }

    /// Persists a new configuration (after a conf change is applied).
    pub fn set_conf_state(&self, cs: ConfState) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(Table::RaftState, RAFT_CONF_STATE, encode(&cs));
        self.engine.write(batch, false)?;
        self.mem.wl().set_conf_state(cs);
        Ok(())
    }

    /// Drops log entries before `index` (kept: `index` onwards), recording the truncation point.
    /// The caller guarantees every entry before `index` is applied and durable.
    pub fn compact(&self, index: u64) -> Result<()> {
        let first = self.mem.first_index().map_err(|e| Error::Storage(e.to_string()))?;
        if index <= first {
            return Ok(());
        }
        let term = self.mem.term(index - 1).map_err(|e| Error::Storage(e.to_string()))?;
        let mut batch = WriteBatch::new();
        batch.delete_range(Table::RaftLog, u64_key(0).to_vec(), u64_key(index).to_vec());
        let mut trunc = u64_key(index - 1).to_vec();
        trunc.extend_from_slice(&u64_key(term));
        batch.put(Table::RaftState, RAFT_TRUNCATED, trunc);
        self.engine.write(batch, false)?;
        self.mem.wl().compact(index).map_err(|e| Error::Storage(e.to_string()))
    }

    pub fn hard_state(&self) -> HardState {
        self.mem.rl().hard_state().clone()
    }

    pub fn conf_state(&self) -> ConfState {
        self.mem.initial_state().map(|s| s.conf_state).unwrap_or_default()
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, ctx)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    /// raft-rs asks for a snapshot on the node thread; building one scans every table, so the
    /// source builds it in the background and this answers "temporarily unavailable" (raft-rs
    /// asks again later) until one at or past `request_index` is ready.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let unavailable = || raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable);
        let source = self.snapshots.as_ref().ok_or_else(unavailable)?;
        let (index, term, data) = match source.snapshot(request_index) {
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
        fn size_bytes(&self) -> u64 {
            self.inner.size_bytes()
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
}
