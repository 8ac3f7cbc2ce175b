//! State-machine snapshots for members behind the compacted raft log: every replicated table
//! (MVCC history, leases, members) plus the meta keys that describe them (applied index and term,
//! compaction markers). A member's own identity (its id, its cluster id) is never part of one.

use std::sync::Arc;

use prost::Message as _;

use crate::error::{Error, Result};
use crate::proto::metastorepb::{SnapshotData, SnapshotEntry};
use crate::raft::SnapshotSource;
use crate::storage::schema::{
    decode_u64, META_APPLIED_INDEX, META_APPLIED_TERM, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT,
};
use crate::storage::{Engine, Table, WriteBatch};

const TABLES: [Table; 3] = [Table::Key, Table::Lease, Table::Members];
const META_KEYS: [&[u8]; 4] = [META_APPLIED_INDEX, META_APPLIED_TERM, META_SCHEDULED_COMPACT, META_FINISHED_COMPACT];

pub struct Snapshots {
    pub engine: Arc<dyn Engine>,
}

impl SnapshotSource for Snapshots {
    fn snapshot(&self) -> Result<(u64, u64, Vec<u8>)> {
        let mut entries = Vec::new();
        for table in TABLES {
            self.engine.scan(table, b"", b"", &mut |k, v| {
                entries.push(SnapshotEntry { table: table.name().into(), key: k.to_vec(), value: v.to_vec() });
                true
            })?;
        }
        let mut meta = |key: &[u8]| -> Result<u64> {
            let value = self.engine.get(Table::Meta, key)?;
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
        Ok((index, term, SnapshotData { entries }.encode_to_vec()))
    }
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
        let (index, term, data) = Snapshots { engine: source }.snapshot().unwrap();
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
}
