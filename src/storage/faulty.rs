//! A disk that fails on command, for fault tests only (cargo feature `fault-injection`, off in
//! the normal build): [`FaultyEngine`] wraps the real engine and, armed through the failpoints
//! `disk-fail-write-after=N` / `disk-fail-sync-after=N` (`METASTORE_FAILPOINTS`), lets N writes
//! (or N synced writes) through and fails every one after them, as a dying disk does.
//!
//! * A failed **write** applies nothing and returns a storage error.
//! * A failed **sync** is fsyncgate's case: the batch reached the engine (the page cache) but is
//!   not known to be durable, and an error is returned. A member that went on would serve state
//!   it never persisted; it must stop instead (the raft loop exits on any storage error), and
//!   after a restart on a healthy disk it must still hold every write it acknowledged.
//!
//! The raft WAL (`raft/wal.rs`) is not an engine: it checks the same two failpoints itself
//! before each append's write and `fdatasync`, and a fault there poisons it the same way.

use std::sync::Arc;

use super::{Engine, Reads, Table, Visitor, WriteBatch};
use crate::error::{Error, Result};
use crate::failpoint;

pub struct FaultyEngine {
    inner: Arc<dyn Engine>,
}

impl FaultyEngine {
    pub fn wrap(inner: Arc<dyn Engine>) -> Arc<dyn Engine> {
        Arc::new(FaultyEngine { inner })
    }
}

impl Engine for FaultyEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(table, key)
    }

    fn scan(&self, table: Table, start: &[u8], end: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        self.inner.scan(table, start, end, visit)
    }

    fn with_snapshot(&self, read: &mut dyn FnMut(&dyn Reads) -> Result<()>) -> Result<()> {
        self.inner.with_snapshot(read)
    }

    fn visit_many(&self, table: Table, keys: &[Vec<u8>], visit: &mut dyn FnMut(usize, &[u8])) -> Result<()> {
        self.inner.visit_many(table, keys, visit)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        if failpoint::after("disk-fail-write-after") {
            return Err(Error::Storage("injected disk fault: write failed".into()));
        }
        if sync && failpoint::after("disk-fail-sync-after") {
            self.inner.write(batch, false)?;
            return Err(Error::Storage("injected disk fault: fsync failed".into()));
        }
        self.inner.write(batch, sync)
    }

    fn sync(&self) -> Result<()> {
        if failpoint::after("disk-fail-sync-after") {
            return Err(Error::Storage("injected disk fault: fsync failed".into()));
        }
        self.inner.sync()
    }

    fn table_bytes(&self, tables: &[Table]) -> u64 {
        self.inner.table_bytes(tables)
    }

    fn compact(&self) -> Result<()> {
        self.inner.compact()
    }
}
