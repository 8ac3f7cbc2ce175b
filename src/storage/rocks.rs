//! The RocksDB engine: one column family per [`Table`], one `rocksdb::WriteBatch` per
//! [`WriteBatch`] (atomic across column families), `sync` mapped to a WAL fsync.
//!
//! Memory is bounded by two budgets set at open ([`RocksOptions`], MetaStore's
//! `--rocksdb-block-cache-bytes` and `--rocksdb-memtable-bytes`): one LRU block cache shared by
//! every table, which also holds the SST index and bloom-filter blocks (so they do not grow with
//! the data outside the budget), and one write-buffer budget over every table's memtables (RocksDB
//! flushes the largest memtable when the total passes it).
//!
//! Durability note: a synced write also makes every earlier unsynced write durable, because they
//! share one WAL. The raft layer relies on this: state-machine batches are written unsynced and
//! become durable with the next synced raft-log write.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode, Options, ReadOptions,
    WriteOptions, DB,
};

use super::{Engine, Op, Table, Visitor, WriteBatch};
use crate::error::{Error, Result};

pub struct RocksEngine {
    db: DB,
    cache: Cache,
}

/// The memory budgets of a [`RocksEngine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RocksOptions {
    /// Bytes of the block cache shared by every table: data, index and filter blocks.
    pub block_cache_bytes: usize,
    /// Bytes all tables' memtables may hold together before the largest is flushed.
    pub memtable_bytes: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self { block_cache_bytes: 32 << 20, memtable_bytes: 32 << 20 }
    }
}

fn storage_err(e: rocksdb::Error) -> Error {
    Error::Storage(e.into_string())
}

impl RocksEngine {
    /// Opens (or creates) the database in `dir`, creating any missing table.
    pub fn open(dir: &Path, budget: RocksOptions) -> Result<Self> {
        Self::open_with_wal(dir, None, budget)
    }

    /// [`RocksEngine::open`] with the write-ahead log in `wal_dir` (etcd's `--wal-dir`: the
    /// synced log on a disk of its own), created if missing. RocksDB finds its WAL only there:
    /// a database must always be opened with the same WAL directory.
    pub fn open_with_wal(dir: &Path, wal_dir: Option<&Path>, budget: RocksOptions) -> Result<Self> {
        let cache = Cache::new_lru_cache(budget.block_cache_bytes).map_err(storage_err)?;
        let mut opts = Options::default();
        if let Some(wal) = wal_dir {
            std::fs::create_dir_all(wal)
                .map_err(|e| Error::Storage(format!("create WAL dir {}: {e}", wal.display())))?;
            opts.set_wal_dir(wal);
        }
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        // A rarely written table's memtable would otherwise keep every WAL file alive.
        opts.set_max_total_wal_size(64 * 1024 * 1024);
        opts.set_db_write_buffer_size(budget.memtable_bytes);
        let cfs = Table::ALL.iter().map(|t| ColumnFamilyDescriptor::new(t.name(), table_options(*t, &cache, budget)));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(storage_err)?;
        Ok(Self { db, cache })
    }

    fn cf(&self, table: Table) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(table.name()).expect("every table is created at open")
    }

    fn read_opts(start: &[u8], end: &[u8]) -> ReadOptions {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(start.to_vec());
        if !end.is_empty() {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        ro
    }
}

/// Data block size of the MVCC history table (RocksDB's default, for the others, is 4 KiB).
const KEY_TABLE_BLOCK_BYTES: usize = 16 << 10;

/// Turns RocksDB's per-thread perf counters off on this thread (RocksDB counts by default, a
/// thread-local update on every iterator step); MetaStore never reads them.
fn no_perf_counters() {
    thread_local!(static OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    OFF.with(|off| {
        if !off.replace(true) {
            rocksdb::perf::set_perf_stats(rocksdb::perf::PerfStatsLevel::Disable);
        }
    });
}

fn table_options(table: Table, cache: &Cache, budget: RocksOptions) -> Options {
    let mut opts = Options::default();
    let mut block = BlockBasedOptions::default();
    block.set_bloom_filter(10.0, false);
    block.set_block_cache(cache);
    block.set_cache_index_and_filter_blocks(true);
    block.set_pin_l0_filter_and_index_blocks_in_cache(true);
    if table == Table::Key {
        // MVCC history is read in runs of neighbouring revisions (a prefix written together):
        // 16 KiB blocks make a 1,000-key read cross about 20 block boundaries (each a block
        // cache lookup and a block iterator set-up) instead of about 70, and shrink the index
        // four times. Only new table files get the size; old ones keep theirs.
        block.set_block_size(KEY_TABLE_BLOCK_BYTES);
    }
    opts.set_block_based_table_factory(&block);
    // The two tables written on every request get a quarter of the budget per memtable; the
    // others are written rarely and stay small.
    opts.set_write_buffer_size(match table {
        Table::Key | Table::RaftLog => budget.memtable_bytes / 4,
        _ => budget.memtable_bytes / 16,
    });
    opts.set_compression_type(match table {
        Table::Key => DBCompressionType::Lz4,
        _ => DBCompressionType::None,
    });
    opts
}

/// A RocksDB snapshot: reads see the database as of its creation.
struct RocksSnapshot<'a> {
    engine: &'a RocksEngine,
    snap: rocksdb::Snapshot<'a>,
}

impl super::Reads for RocksSnapshot<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.snap.get_cf(self.engine.cf(table), key).map_err(storage_err)
    }

    fn scan(&self, table: Table, start: &[u8], end: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        if !end.is_empty() && start >= end {
            return Ok(());
        }
        let mut it = self.snap.raw_iterator_cf_opt(self.engine.cf(table), RocksEngine::read_opts(start, end));
        it.seek(start);
        while it.valid() {
            let (k, v) = (it.key().expect("valid iterator"), it.value().expect("valid iterator"));
            if !visit(k, v) {
                break;
            }
            it.next();
        }
        it.status().map_err(storage_err)
    }
}

impl Engine for RocksEngine {
    fn with_snapshot(&self, read: &mut dyn FnMut(&dyn super::Reads) -> Result<()>) -> Result<()> {
        read(&RocksSnapshot { engine: self, snap: self.db.snapshot() })
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(table), key).map_err(storage_err)
    }

    /// One forward iterator over the keys in sorted order: from each found key it steps with
    /// `next` (a few entries at most) to the following one and seeks only across a gap. Keys
    /// written together — a prefix loaded or updated in one go has neighbouring revisions —
    /// then cost one step each instead of an index and a data-block search (a profile of a
    /// 1,000-key prefix read had RocksDB's batched MultiGet at 43% of the server's CPU, nearly
    /// all of it in those searches). Values are handed out as the iterator's own slices.
    fn visit_many(&self, table: Table, keys: &[Vec<u8>], visit: &mut dyn FnMut(usize, &[u8])) -> Result<()> {
        /// Entries stepped over before a seek is cheaper.
        const MAX_STEPS: usize = 8;
        let mut order: Vec<usize> = (0..keys.len()).collect();
        if !keys.is_sorted() {
            order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
        }
        let (Some(first), Some(last)) = (order.first(), order.last()) else {
            return Ok(());
        };
        no_perf_counters();
        let mut upper = keys[*last].clone();
        upper.push(0);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(table), Self::read_opts(&keys[*first], &upper));
        it.seek(&keys[*first]);
        for i in order {
            let target = keys[i].as_slice();
            let mut steps = 0;
            while steps < MAX_STEPS && it.key().is_some_and(|k| k < target) {
                it.next();
                steps += 1;
            }
            if it.key().is_none_or(|k| k < target) {
                it.seek(target);
            }
            if it.key() == Some(target) {
                if let Some(v) = it.value() {
                    visit(i, v);
                }
            }
        }
        it.status().map_err(storage_err)
    }

    fn scan(&self, table: Table, start: &[u8], end: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        if !end.is_empty() && start >= end {
            return Ok(());
        }
        let mode = IteratorMode::From(start, Direction::Forward);
        for item in self.db.iterator_cf_opt(self.cf(table), Self::read_opts(start, end), mode) {
            let (k, v) = item.map_err(storage_err)?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(storage_err)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.ops {
            match op {
                Op::Put { table, key, value } => wb.put_cf(self.cf(table), key, value),
                Op::Delete { table, key } => wb.delete_cf(self.cf(table), key),
                Op::DeleteRange { table, start, end } => {
                    if end.is_empty() {
                        // RocksDB has no open-ended range delete: delete the keys one by one.
                        let mut keys = Vec::new();
                        self.scan(table, &start, &[], &mut |k, _| {
                            keys.push(k.to_vec());
                            true
                        })?;
                        for k in keys {
                            wb.delete_cf(self.cf(table), k);
                        }
                    } else if start < end {
                        wb.delete_range_cf(self.cf(table), start, end);
                    }
                }
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo).map_err(storage_err)
    }

    /// The block cache (`block_cache`, of which `block_cache_pinned` is held by reads in flight),
    /// memtables, and index and filter blocks outside the cache (`table_readers`: 0 while they
    /// are cached), from RocksDB's own counters.
    fn memory(&self) -> Vec<(&'static str, u64)> {
        let sum = |name: &str| -> u64 {
            Table::ALL.iter().filter_map(|t| self.db.property_int_value_cf(self.cf(*t), name).ok().flatten()).sum()
        };
        vec![
            ("block_cache", self.cache.get_usage() as u64),
            ("block_cache_pinned", self.cache.get_pinned_usage() as u64),
            ("memtables", sum("rocksdb.cur-size-all-mem-tables")),
            ("table_readers", sum("rocksdb.estimate-table-readers-mem")),
        ]
    }

    fn table_bytes(&self, tables: &[Table]) -> u64 {
        tables
            .iter()
            .map(|t| {
                let cf = self.cf(*t);
                let sst = self.db.property_int_value_cf(cf, "rocksdb.total-sst-files-size");
                let mem = self.db.property_int_value_cf(cf, "rocksdb.cur-size-all-mem-tables");
                sst.ok().flatten().unwrap_or(0) + mem.ok().flatten().unwrap_or(0)
            })
            .sum()
    }

    /// Flushes every memtable, then compacts every column family's whole key range to the
    /// bottom level, dropping deleted and overwritten versions. RocksDB runs it beside reads and
    /// writes (no lock is held).
    fn compact(&self) -> Result<()> {
        for table in Table::ALL {
            let cf = self.cf(table);
            self.db.flush_cf(cf).map_err(storage_err)?;
            let mut opts = rocksdb::CompactOptions::default();
            opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
            self.db.compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &opts);
        }
        Ok(())
    }
}
