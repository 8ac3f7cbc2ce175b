//! Ordered byte key-value engines with named tables, atomic write batches and consistent reads.
//!
//! Everything MetaStore persists goes through the [`Engine`] trait: MVCC history, leases, the raft
//! configuration, and the meta keys that tie them together (applied index, compaction
//! markers); the raft log itself lives in the raft WAL (`raft/wal.rs`). Two engines implement it:
//!
//! * [`RocksEngine`]: the persistent default; one RocksDB column family per [`Table`];
//! * [`MemoryEngine`]: one `BTreeMap` per table behind a lock; for tests and caches
//!   (`--storage-engine memory`). Nothing survives the process.
//!
//! Invariants every engine upholds (checked by the conformance suite in `tests.rs`, run on both):
//!
//! * a [`WriteBatch`] is applied atomically and in order: a reader sees all of it or none of it,
//!   and after a crash either all of it is there or none;
//! * `write(batch, sync = true)` returns only once the batch (and every batch written before it)
//!   is durable;
//! * `scan` visits keys of one table in ascending byte order, within `[start, end)`; an empty
//!   `end` means "to the end of the table".
//!
//! With the cargo feature `fault-injection` (fault tests only), `FaultyEngine` wraps the engine
//! the member opens and fails writes or syncs on command (`faulty.rs`).
//!
//! Not done here: MVCC, raft or etcd semantics. The engine knows bytes and tables only.

pub mod crc32c;
#[cfg(feature = "fault-injection")]
mod faulty;
mod memory;
mod rocks;
pub mod schema;
#[cfg(test)]
mod tests;

#[cfg(feature = "fault-injection")]
pub use faulty::FaultyEngine;
pub use memory::MemoryEngine;
pub use rocks::{RocksEngine, RocksOptions};
pub use schema::Table;

use crate::error::Result;

/// One mutation inside a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: Vec<u8>,
    },
    /// Deletes `[start, end)`; an empty `end` deletes to the end of the table.
    DeleteRange {
        table: Table,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// Mutations applied atomically, in order.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    ops: Vec<Op>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put { table, key: key.into(), value: value.into() });
    }

    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete { table, key: key.into() });
    }

    pub fn delete_range(&mut self, table: Table, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) {
        self.ops.push(Op::DeleteRange { table, start: start.into(), end: end.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

/// A visitor for [`Engine::scan`]: gets each key and value, returns `false` to stop.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> bool + 'a;

/// An ordered key-value engine with named tables.
/// Reads of a point-in-time engine snapshot (see [`Engine::with_snapshot`]).
pub trait Reads {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Visits `[start, end)` in key order (`end` empty: to the end) until `visit` says stop.
    fn scan(&self, table: Table, start: &[u8], end: &[u8], visit: &mut Visitor<'_>) -> Result<()>;
}

pub trait Engine: Send + Sync + 'static {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Visits `[start, end)` of `table` in ascending key order until `visit` returns `false`.
    /// An empty `end` means "to the end of the table".
    fn scan(&self, table: Table, start: &[u8], end: &[u8], visit: &mut Visitor<'_>) -> Result<()>;

    /// Runs `read` on a consistent point-in-time view of every table while writes go on.
    fn with_snapshot(&self, read: &mut dyn FnMut(&dyn Reads) -> Result<()>) -> Result<()>;

    /// The values of `keys`, in their order (`None` where absent): one batched lookup where the
    /// engine has one (see [`Engine::visit_many`]).
    fn get_many(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = vec![None; keys.len()];
        self.visit_many(table, keys, &mut |i, v| out[i] = Some(v.to_vec()))?;
        Ok(out)
    }

    /// Calls `visit(i, value)` for each `keys[i]` present, in ascending key order (so in the
    /// caller's order when `keys` is sorted), with the value borrowed from the engine: a caller
    /// that copies what it needs into one buffer makes no allocation per key. Absent keys are
    /// skipped; a key given twice is visited twice.
    fn visit_many(&self, table: Table, keys: &[Vec<u8>], visit: &mut dyn FnMut(usize, &[u8])) -> Result<()> {
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
        for i in order {
            if let Some(v) = self.get(table, &keys[i])? {
                visit(i, &v);
            }
        }
        Ok(())
    }

    /// Applies `batch` atomically; with `sync`, durably (fsync) before returning.
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()>;

    /// Makes every write so far durable (the raft log calls it before it forgets entries whose
    /// effects were written unsynced).
    fn sync(&self) -> Result<()> {
        self.write(WriteBatch::new(), true)
    }

    /// Approximate bytes used on disk (or in memory), as reported in `Status.dbSize`.
    fn size_bytes(&self) -> u64 {
        self.table_bytes(&Table::ALL)
    }

    /// Memory the engine holds now, by kind, in bytes (for `/metrics`); empty where it keeps no
    /// account of its own.
    fn memory(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Approximate bytes `tables` use (files and memtables; key and value bytes in memory).
    fn table_bytes(&self, tables: &[Table]) -> u64;

    /// Reclaims the space of deleted and overwritten data in every table, now (etcd's
    /// defragment). Reads and writes go on meanwhile.
    fn compact(&self) -> Result<()>;
}

/// Decodes every value of `table` as a protobuf message `M`, in key order; a value that does not
/// decode is a storage error naming `what`.
pub fn decode_all<M: prost::Message + Default>(engine: &dyn Engine, table: Table, what: &str) -> Result<Vec<M>> {
    let mut out = Vec::new();
    let mut bad = None;
    engine.scan(table, b"", b"", &mut |_, v| {
        match M::decode(v) {
            Ok(m) => out.push(m),
            Err(e) => bad = Some(e.to_string()),
        }
        bad.is_none()
    })?;
    match bad {
        Some(e) => Err(crate::error::Error::Storage(format!("corrupt {what}: {e}"))),
        None => Ok(out),
    }
}

/// Collects every key-value pair of `[start, end)` in ascending order (small tables, tests).
pub fn scan_all(engine: &dyn Engine, table: Table, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    engine.scan(table, start, end, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        true
    })?;
    Ok(out)
}
