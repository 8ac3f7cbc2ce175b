//! State-machine snapshots for members behind the compacted raft log: every replicated table
//! (MVCC history, leases, members, auth) plus the meta keys that describe them (applied index and term,
//! compaction markers). A member's own identity (its id, its cluster id) is never part of one.

use std::sync::{Arc, Mutex};

use prost::Message as _;

use crate::error::{Error, Result};
use crate::proto::metastorepb::{SnapshotData, SnapshotEntry};
use crate::raft::SnapshotSource;
use crate::storage::schema::{
    decode_u64, META_APPLIED_INDEX, META_APPLIED_TERM, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT,
};
use crate::storage::{Engine, Table, WriteBatch};

const TABLES: [Table; 4] = [Table::Key, Table::Lease, Table::Members, Table::Auth];
const META_KEYS: [&[u8]; 4] = [META_APPLIED_INDEX, META_APPLIED_TERM, META_SCHEDULED_COMPACT, META_FINISHED_COMPACT];

/// Builds snapshots on a background thread from an engine snapshot (writes go on meanwhile),
/// and keeps the last one for the next member that needs it.
pub struct Snapshots {
    pub engine: Arc<dyn Engine>,
    state: Arc<Mutex<Building>>,
}

#[derive(Default)]
enum Building {
    #[default]
    Idle,
    Running,
    Ready(Arc<(u64, u64, Vec<u8>)>),
    Failed(Error),
}

impl Snapshots {
    pub fn new(engine: Arc<dyn Engine>) -> Self {
        Self { engine, state: Arc::default() }
    }

    fn start_building(&self) {
        let (engine, state) = (self.engine.clone(), self.state.clone());
        let spawned = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
            let outcome = build(&*engine);
            *state.lock().expect("snapshot lock") = match outcome {
                Ok(built) => Building::Ready(Arc::new(built)),
                Err(e) => Building::Failed(e),
            };
        });
        if let Err(e) = spawned {
            *self.state.lock().expect("snapshot lock") =
                Building::Failed(Error::Internal(format!("snapshot thread: {e}")));
        }
    }
}

impl SnapshotSource for Snapshots {
    fn snapshot(&self, min_index: u64) -> Result<Option<(u64, u64, Vec<u8>)>> {
        let mut state = self.state.lock().expect("snapshot lock");
        match &*state {
            Building::Ready(built) if built.0 >= min_index => return Ok(Some((**built).clone())),
            Building::Running => return Ok(None),
            Building::Failed(e) => {
                let e = e.clone();
                *state = Building::Idle;
                return Err(e);
            }
            Building::Idle | Building::Ready(_) => {}
        }
        *state = Building::Running;
        drop(state);
        self.start_building();
        Ok(None)
    }
}

/// Every replicated table and the meta keys describing them, read from one engine snapshot.
fn build(engine: &dyn Engine) -> Result<(u64, u64, Vec<u8>)> {
    let mut built = None;
    engine.with_snapshot(&mut |snap| {
        let mut entries = Vec::new();
        for table in TABLES {
            snap.scan(table, b"", b"", &mut |k, v| {
                entries.push(SnapshotEntry { table: table.name().into(), key: k.to_vec(), value: v.to_vec() });
                true
            })?;
        }
        let mut meta = |key: &[u8]| -> Result<u64> {
            let value = snap.get(Table::Meta, key)?;
            let n = value.as_deref().and_then(decode_u64).unwrap_or(0);
            if let Some(v) = value {
                entries.push(SnapshotEntry { table: Table::Meta.name().into(), key: key.to_vec(), value: v });
            }
            Ok(n)
        };
        let index = meta(META_APPLIED_INDEX)?;
        let term = meta(META_APPLIED_TERM)?;
        meta(META_SCHEDULED_COMPACT)?;
        meta(META_FINISHED_COMPACT)?;
        built = Some((index, term, SnapshotData { entries }.encode_to_vec()));
        Ok(())
    })?;
    built.ok_or_else(|| Error::Internal("the engine snapshot was never read".into()))
}

/// Stages the replacement of the replicated tables by a snapshot's content into `batch` (written
/// by the raft log store together with the snapshot's raft metadata).
pub fn stage(data: &[u8], batch: &mut WriteBatch) -> Result<()> {
    let snap = SnapshotData::decode(data).map_err(|e| Error::Internal(format!("undecodable snapshot: {e}")))?;
    for table in TABLES {
        batch.delete_range(table, Vec::new(), Vec::new());
    }
    for key in META_KEYS {
        batch.delete(Table::Meta, key.to_vec());
    }
    for e in snap.entries {
        let table = Table::ALL
            .into_iter()
            .find(|t| t.name() == e.table)
            .filter(|t| TABLES.contains(t) || *t == Table::Meta)
            .ok_or_else(|| Error::Internal(format!("snapshot names unknown table {:?}", e.table)))?;
        batch.put(table, e.key, e.value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryEngine;

    #[test]
    fn round_trip_replaces_replicated_tables_only() {
        let source: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let mut b = WriteBatch::new();
        b.put(Table::Key, b"k1".to_vec(), b"v1".to_vec());
        b.put(Table::Lease, b"l1".to_vec(), b"x".to_vec());
        b.put(Table::Meta, META_APPLIED_INDEX, 42u64.to_be_bytes());
        b.put(Table::Meta, META_APPLIED_TERM, 3u64.to_be_bytes());
        b.put(Table::Meta, b"member_id", 7u64.to_be_bytes());
        source.write(b, false).unwrap();
        let (index, term, data) = build(&*source).unwrap();
        assert_eq!((index, term), (42, 3));

        let target = MemoryEngine::new();
        let mut b = WriteBatch::new();
        b.put(Table::Key, b"stale".to_vec(), b"gone".to_vec());
        b.put(Table::Meta, b"member_id", 9u64.to_be_bytes());
        target.write(b, false).unwrap();
        let mut batch = WriteBatch::new();
        stage(&data, &mut batch).unwrap();
        target.write(batch, true).unwrap();
        assert_eq!(target.get(Table::Key, b"stale").unwrap(), None);
        assert_eq!(target.get(Table::Key, b"k1").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(target.get(Table::Meta, b"member_id").unwrap(), Some(9u64.to_be_bytes().to_vec()));
        assert_eq!(target.get(Table::Meta, META_APPLIED_INDEX).unwrap(), Some(42u64.to_be_bytes().to_vec()));
    }

    #[test]
    fn snapshots_are_built_in_the_background_then_served() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let mut b = WriteBatch::new();
        b.put(Table::Meta, META_APPLIED_INDEX, 7u64.to_be_bytes());
        engine.write(b, false).unwrap();
        let source = Snapshots::new(engine);
        assert_eq!(source.snapshot(5).unwrap(), None, "the first request starts a build");
        let start = std::time::Instant::now();
        let built = loop {
            if let Some(s) = source.snapshot(5).unwrap() {
                break s;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "never built");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(built.0, 7);
        assert_eq!(source.snapshot(8).unwrap(), None, "too old for index 8: rebuilt");
    }
}
