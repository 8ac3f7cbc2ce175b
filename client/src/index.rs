//! Index sets: which data files hold the records of a (table, id, day).
//!
//! Each file is written twice, in one txn, so that every lookup is one prefix range over an
//! ordered keyspace — O(log n + k) — instead of the `KEYS index:table:T:id:*:DAY` scan an engine
//! does over Redis sets:
//!
//! ```text
//! R data/<T>/index/id/<id>/<day>/<path>    by (id, day), by id (all days), by table
//! R data/<T>/index/day/<day>/<id>/<path>   by day (all ids)
//! ```
//!
//! Adding or removing files updates the table's [`TableStats`] in the same txn, guarded by the
//! stats key's mod revision and by each entry's mod revision (re-adding a path replaces it
//! without double counting); conflicting writers retry.

use std::collections::BTreeMap;

use etcd_client::{Client, Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use crate::catalog::{now_ms, TableStats};
use crate::error::{Error, Result};
use crate::keys::{component, decode, encode};
use crate::layout::{validate_table_name, Layout};

/// A data file in an index set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    pub path: String,
    pub size_bytes: u64,
    pub record_count: u64,
    /// Timestamps of its oldest and newest record (caller's unit), if known.
    #[serde(default)]
    pub oldest_record: Option<i64>,
    #[serde(default)]
    pub newest_record: Option<i64>,
}

impl DataFile {
    pub fn new(path: impl Into<String>, size_bytes: u64, record_count: u64) -> DataFile {
        DataFile { path: path.into(), size_bytes, record_count, oldest_record: None, newest_record: None }
    }

    pub fn with_records_between(mut self, oldest: i64, newest: i64) -> DataFile {
        self.oldest_record = Some(oldest);
        self.newest_record = Some(newest);
        self
    }
}

/// One member of an index set, with the set it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub id: String,
    pub day: String,
    pub file: DataFile,
}

/// The index sets under one [`Layout`].
#[derive(Clone)]
pub struct Index {
    client: Client,
    layout: Layout,
}

/// Compares and ops that change index entries and the stats that summarize them, built from
/// one read; the caller adds its own guards and runs them as one txn.
pub(crate) struct Plan {
    pub compares: Vec<Compare>,
    pub ops: Vec<TxnOp>,
    pub stats: TableStats,
}

impl Plan {
    /// Reads the stats and the current members of (table, id, day).
    pub async fn read(kv: &mut KvClient, l: &Layout, table: &str, id: &str, day: &str) -> Result<(Plan, Members)> {
        let stats_key = l.stats(table);
        let txn = Txn::new().and_then([
            TxnOp::get(stats_key.as_str(), None),
            TxnOp::get(entry_prefix(l, table, id, day), Some(GetOptions::new().with_prefix())),
        ]);
        let resp = kv.txn(txn).await?;
        let mut gets = resp.op_responses().into_iter().map(|r| match r {
            etcd_client::TxnOpResponse::Get(mut g) => g.take_kvs(),
            _ => Vec::new(),
        });
        let stats_kvs = gets.next().unwrap_or_default();
        let Some(stats_kv) = stats_kvs.first() else { return Err(Error::NotFound(format!("table {table}"))) };
        let stats: TableStats = decode(stats_kv.key(), stats_kv.value())?;
        let prefix_len = entry_prefix(l, table, id, day).len();
        let mut members = Members::new();
        for kv in gets.next().unwrap_or_default() {
            let path = String::from_utf8_lossy(&kv.key()[prefix_len..]).into_owned();
            members.insert(path, (decode(kv.key(), kv.value())?, kv.mod_revision()));
        }
        let plan = Plan {
            compares: vec![Compare::mod_revision(stats_key, CompareOp::Equal, stats_kv.mod_revision())],
            ops: Vec::new(),
            stats,
        };
        Ok((plan, members))
    }

    pub fn add(&mut self, l: &Layout, table: &str, id: &str, day: &str, files: &[DataFile], members: &Members) {
        for f in files {
            let (by_id, by_day) = entry_keys(l, table, id, day, &f.path);
            let old = members.get(&f.path);
            self.compares.push(Compare::mod_revision(by_id.as_str(), CompareOp::Equal, old.map_or(0, |(_, r)| *r)));
            if let Some((old, _)) = old {
                self.uncount(old);
            }
            let s = &mut self.stats;
            s.file_count += 1;
            s.size_bytes += f.size_bytes;
            s.record_count += f.record_count;
            s.oldest_record = min_opt(s.oldest_record, f.oldest_record);
            s.newest_record = max_opt(s.newest_record, f.newest_record);
            self.ops.push(TxnOp::put(by_id, encode(f), None));
            self.ops.push(TxnOp::put(by_day, encode(f), None));
        }
        self.stats.last_write = Some(now_ms());
    }

    fn uncount(&mut self, old: &DataFile) {
        let s = &mut self.stats;
        s.file_count = s.file_count.saturating_sub(1);
        s.size_bytes = s.size_bytes.saturating_sub(old.size_bytes);
        s.record_count = s.record_count.saturating_sub(old.record_count);
    }

    /// Finishes the plan with the stats write.
    pub fn finish(mut self, l: &Layout, table: &str) -> (Vec<Compare>, Vec<TxnOp>, TableStats) {
        self.ops.push(TxnOp::put(l.stats(table), encode(&self.stats), None));
        (self.compares, self.ops, self.stats)
    }
}

/// Current members of one (table, id, day) set: path -> (file, mod revision of its id-ordered key).
pub(crate) type Members = BTreeMap<String, (DataFile, i64)>;

fn entry_prefix(l: &Layout, table: &str, id: &str, day: &str) -> String {
    format!("{}{id}/{day}/", l.index_by_id(table))
}

fn entry_keys(l: &Layout, table: &str, id: &str, day: &str, path: &str) -> (String, String) {
    (format!("{}{id}/{day}/{path}", l.index_by_id(table)), format!("{}{day}/{id}/{path}", l.index_by_day(table)))
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

pub(crate) fn validate(table: &str, id: &str, day: &str) -> Result<()> {
    validate_table_name(table)?;
    component("id", id)?;
    component("day", day)
}

impl Index {
    pub fn new(client: &Client) -> Index {
        Index::with_layout(client, Layout::default())
    }

    pub fn with_layout(client: &Client, layout: Layout) -> Index {
        Index { client: client.clone(), layout }
    }

    /// Adds files to the set of (table, id, day) and updates the table's stats, in one txn.
    /// Returns the stats as written.
    pub async fn add(&self, table: &str, id: &str, day: &str, files: &[DataFile]) -> Result<TableStats> {
        validate(table, id, day)?;
        for f in files {
            if f.path.is_empty() {
                return Err(Error::InvalidArgument("empty data-file path".into()));
            }
        }
        let l = &self.layout;
        let mut kv = self.client.kv_client();
        for attempt in 0..100 {
            let (mut plan, members) = Plan::read(&mut kv, l, table, id, day).await?;
            plan.add(l, table, id, day, files, &members);
            let (compares, ops, stats) = plan.finish(l, table);
            if kv.txn(Txn::new().when(compares).and_then(ops)).await?.succeeded() {
                return Ok(stats);
            }
            crate::concurrency::backoff(attempt).await;
        }
        Err(Error::Conflict { attempts: 100 })
    }

    /// Removes files (by path) from the set; paths not in it are ignored. Returns the stats.
    pub async fn remove(&self, table: &str, id: &str, day: &str, paths: &[&str]) -> Result<TableStats> {
        validate(table, id, day)?;
        let l = &self.layout;
        let mut kv = self.client.kv_client();
        for attempt in 0..100 {
            let (mut plan, members) = Plan::read(&mut kv, l, table, id, day).await?;
            for path in paths {
                let Some((old, rev)) = members.get(*path) else { continue };
                let (by_id, by_day) = entry_keys(l, table, id, day, path);
                plan.compares.push(Compare::mod_revision(by_id.as_str(), CompareOp::Equal, *rev));
                plan.uncount(old);
                plan.ops.push(TxnOp::delete(by_id, None));
                plan.ops.push(TxnOp::delete(by_day, None));
            }
            plan.stats.last_write = Some(now_ms());
            let (compares, ops, stats) = plan.finish(l, table);
            if kv.txn(Txn::new().when(compares).and_then(ops)).await?.succeeded() {
                return Ok(stats);
            }
            crate::concurrency::backoff(attempt).await;
        }
        Err(Error::Conflict { attempts: 100 })
    }

    /// Members of one (table, id, day) set.
    pub async fn files(&self, table: &str, id: &str, day: &str) -> Result<Vec<IndexEntry>> {
        validate(table, id, day)?;
        self.scan(&entry_prefix(&self.layout, table, id, day), table, Order::IdDay).await
    }

    /// Every file of `id`, all days, ordered by day then path.
    pub async fn by_id(&self, table: &str, id: &str) -> Result<Vec<IndexEntry>> {
        validate_table_name(table)?;
        component("id", id)?;
        self.scan(&format!("{}{id}/", self.layout.index_by_id(table)), table, Order::IdDay).await
    }

    /// Every file of `day`, all ids, ordered by id then path.
    pub async fn by_day(&self, table: &str, day: &str) -> Result<Vec<IndexEntry>> {
        validate_table_name(table)?;
        component("day", day)?;
        self.scan(&format!("{}{day}/", self.layout.index_by_day(table)), table, Order::DayId).await
    }

    /// Every file of a table, ordered by id, day, path.
    pub async fn by_table(&self, table: &str) -> Result<Vec<IndexEntry>> {
        validate_table_name(table)?;
        self.scan(&self.layout.index_by_id(table), table, Order::IdDay).await
    }

    async fn scan(&self, prefix: &str, table: &str, order: Order) -> Result<Vec<IndexEntry>> {
        let resp = self.client.kv_client().get(prefix, Some(GetOptions::new().with_prefix())).await?;
        let base = match order {
            Order::IdDay => self.layout.index_by_id(table),
            Order::DayId => self.layout.index_by_day(table),
        };
        resp.kvs()
            .iter()
            .map(|kv| {
                let rest = String::from_utf8_lossy(&kv.key()[base.len()..]).into_owned();
                let mut parts = rest.splitn(3, '/');
                let (a, b) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                let (id, day) = match order {
                    Order::IdDay => (a, b),
                    Order::DayId => (b, a),
                };
                Ok(IndexEntry { id: id.to_string(), day: day.to_string(), file: decode(kv.key(), kv.value())? })
            })
            .collect()
    }
}

#[derive(Clone, Copy)]
enum Order {
    IdDay,
    DayId,
}
