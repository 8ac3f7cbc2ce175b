//! The in-memory engine: one `BTreeMap` per table behind a single `RwLock`, so a batch is atomic
//! with respect to readers. Nothing is persisted; `sync` is meaningless and ignored.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use super::{Engine, Op, Table, Visitor, WriteBatch};
use crate::error::Result;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
pub struct MemoryEngine {
    tables: RwLock<[Map; Table::ALL.len()]>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

fn idx(table: Table) -> usize {
    Table::ALL.iter().position(|t| *t == table).expect("table listed in Table::ALL")
}

fn bounds<'a>(start: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    let upper = if end.is_empty() { Bound::Unbounded } else { Bound::Excluded(end) };
    (Bound::Included(start), upper)
}

/// A copy of every table, taken under the engine's lock.
struct MemorySnapshot(Vec<Map>);

impl super::Reads for MemorySnapshot {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0[idx(table)].get(key).cloned())
    }

    fn scan(&self, table: Table, start: &[u8], end: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        if !end.is_empty() && start >= end {
            return Ok(());
        }
        for (k, v) in self.0[idx(table)].range::<[u8], _>(bounds(start, end)) {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }
}

impl Engine for MemoryEngine {
    fn with_snapshot(&self, read: &mut dyn FnMut(&dyn super::Reads) -> Result<()>) -> Result<()> {
        let copy = MemorySnapshot(self.tables.read().expect("engine lock").to_vec());
        read(&copy)
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tables.read().expect("engine lock")[idx(table)].get(key).cloned())
    }

    fn scan(&self, table: Table, start: &[u8], end: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        if !end.is_empty() && start >= end {
            return Ok(());
        }
        let tables = self.tables.read().expect("engine lock");
        for (k, v) in tables[idx(table)].range::<[u8], _>(bounds(start, end)) {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, batch: WriteBatch, _sync: bool) -> Result<()> {
        let mut tables = self.tables.write().expect("engine lock");
        for op in batch.ops {
            match op {
                Op::Put { table, key, value } => {
                    tables[idx(table)].insert(key, value);
                }
                Op::Delete { table, key } => {
                    tables[idx(table)].remove(&key);
                }
                Op::DeleteRange { table, start, end } => {
                    let map = &mut tables[idx(table)];
                    let doomed: Vec<Vec<u8>> =
                        map.range::<[u8], _>(bounds(&start, &end)).map(|(k, _)| k.clone()).collect();
                    for k in doomed {
                        map.remove(&k);
                    }
                }
            }
        }
        Ok(())
    }

    fn table_bytes(&self, tables: &[Table]) -> u64 {
        let all = self.tables.read().expect("engine lock");
        tables.iter().flat_map(|t| all[idx(*t)].iter()).map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }

    /// Nothing to reclaim: deleted entries leave the maps at once.
    fn compact(&self) -> Result<()> {
        Ok(())
    }
}
