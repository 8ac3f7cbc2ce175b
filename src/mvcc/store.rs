//! The MVCC key-value store: an in-memory key index over history kept in the engine's `key`
//! table.
//!
//! ```text
//!   index (BTreeMap key -> KeyIndex)          engine table `key`
//!   "foo" -> {1.0, 2.0, 3.0(t)} {4.0}  ───►   rev 4.0 -> KeyValue{foo, v, create 4, mod 4, ver 1}
//! ```
//!
//! Readers take a [`ReadView`] (a shared lock) and see one consistent revision. The applier
//! takes an [`ApplyBatch`] (the exclusive lock) for a group of committed raft entries: each entry
//! runs as one [`WriteTxn`] with its own main revision, all of them accumulate into one engine
//! batch — together with whatever the caller adds, such as the applied index — and
//! [`ApplyBatch::commit`] writes it atomically. Values written earlier in the same group are read
//! from an overlay until the batch reaches the engine.
//!
//! Deliberately not done here: request validation and etcd's response shaping (the server layer),
//! leases (the key only records the lease id it was given).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::{Bound, Range};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use prost::Message;

use super::key_index::KeyIndex;
use super::key_range::KeyRange;
use super::purge::{Job, Purger};
use super::revision::Revision;
use crate::error::{Error, Result};
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};
use crate::storage::schema::{decode_u64, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT};
use crate::storage::{Engine, Table, WriteBatch};

/// Options of a range read.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeOptions {
    /// Maximum number of key-values returned; 0 means no limit. `count` is not limited.
    pub limit: i64,
    /// Revision to read at; 0 (or less) means the current revision.
    pub rev: i64,
    /// Only count the keys, return no key-values.
    pub count_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// Number of keys in the range at the read revision, regardless of `limit`.
    pub count: i64,
    /// The store's current revision (not the read revision), as etcd reports it.
    pub rev: i64,
}

struct State {
    index: BTreeMap<Vec<u8>, KeyIndex>,
    current_rev: i64,
    /// History below this revision is gone; 0 before the first compaction.
    compact_rev: i64,
    /// Whether any compaction happened, even one at revision 0 (etcd's compact revision is -1
    /// until then, so a first `compaction 0` succeeds and a second one is `compacted`).
    compacted: bool,
}

pub struct KvStore {
    engine: Arc<dyn Engine>,
    state: RwLock<State>,
    /// Deletes compacted history in batches, off the apply path.
    purger: Purger,
}

impl KvStore {
    /// Opens the store over `engine`, rebuilding the key index from stored history and finishing
    /// a compaction that a crash interrupted.
    pub fn open(engine: Arc<dyn Engine>) -> Result<Self> {
        Self::open_with(engine, super::purge::DEFAULT_BATCH_LIMIT, &mut |_, _| {})
    }

    /// [`KvStore::open`] deleting compacted history `batch_limit` keys per engine write
    /// (`--experimental-compaction-batch-limit`), also calling `leased` with every live key that
    /// carries a lease and its lease id: found in the same pass over history that rebuilds the index.
    pub fn open_with(engine: Arc<dyn Engine>, batch_limit: usize, leased: &mut dyn FnMut(&[u8], i64)) -> Result<Self> {
        let (state, scheduled) = load(&*engine, leased)?;
        let purger = Purger::start(engine.clone(), batch_limit);
        let store = Self { engine, state: RwLock::new(state), purger };
        store.finish_compaction(scheduled)?;
        Ok(store)
    }

    /// Waits until compacted history is physically deleted (see [`super::purge`]).
    pub fn wait_purged(&self) {
        self.purger.wait_idle();
    }

    /// The shared lock, taken while no compacted history awaits deletion: what the engine holds
    /// then depends only on the revision, not on deletion progress (no deletion can start while
    /// the lock is held, since compactions are applied under the exclusive lock).
    fn settled(&self) -> RwLockReadGuard<'_, State> {
        loop {
            let st = self.state.read().expect("mvcc lock");
            if self.purger.is_idle() {
                return st;
            }
            drop(st);
            self.purger.wait_idle();
        }
    }

    /// Runs `read` on an engine snapshot of settled history (see `settled`); the lock is
    /// released once the snapshot is taken, before `read` runs.
    pub fn with_settled_snapshot(&self, read: &mut dyn FnMut(&dyn crate::storage::Reads) -> Result<()>) -> Result<()> {
        let mut locked = Some(self.settled());
        self.engine.with_snapshot(&mut |snap| {
            locked.take();
            read(snap)
        })
    }

    /// Rebuilds the in-memory index from the engine after its tables were replaced wholesale
    /// (a snapshot from the leader was installed); `leased` as in [`KvStore::open_with`].
    pub fn reload(&self, leased: &mut dyn FnMut(&[u8], i64)) -> Result<()> {
        self.purger.wait_idle();
        let (state, scheduled) = load(&*self.engine, leased)?;
        *self.state.write().expect("mvcc lock") = state;
        self.finish_compaction(scheduled)
    }

    fn finish_compaction(&self, scheduled: Option<i64>) -> Result<()> {
        let (finished, compacted) = {
            let st = self.state.read().expect("mvcc lock");
            (st.compact_rev, st.compacted)
        };
        let Some(scheduled) = scheduled else { return Ok(()) };
        if scheduled > finished || !compacted {
            tracing::info!(scheduled, finished, "resuming interrupted compaction");
            let mut apply = self.apply();
            apply.compact(scheduled)?;
            apply.commit()?;
        }
        Ok(())
    }

    /// A reader of the store as of now that never holds the store's lock while it reads values
    /// from the engine: each range collects the revisions it needs under a brief shared lock,
    /// then reads them unlocked. A long read therefore never delays the applier (and with it the
    /// raft loop and its heartbeats).
    pub fn point_in_time(&self) -> PointInTime<'_> {
        let st = self.state.read().expect("mvcc lock");
        PointInTime { store: self, rev: st.current_rev, compact_rev: st.compact_rev }
    }

    /// A consistent read view at the current revision, holding the store's shared lock while it
    /// lives: for short reads (single keys, history chunks).
    pub fn read(&self) -> ReadView<'_> {
        ReadView { state: self.state.read().expect("mvcc lock"), engine: &*self.engine }
    }

    /// Starts applying a group of write transactions; readers wait until it commits.
    pub fn apply(&self) -> ApplyBatch<'_> {
        ApplyBatch {
            state: self.state.write().expect("mvcc lock"),
            engine: &*self.engine,
            batch: WriteBatch::new(),
            overlay: HashMap::new(),
            events: Vec::new(),
            purger: &self.purger,
            purge: Vec::new(),
            purge_rev: None,
        }
    }

    /// Empties the index without freeing it, for a process about to exit: freeing millions of
    /// small allocations one by one took seconds (2.3M keys: about 3 s of a graceful stop),
    /// while the OS reclaims the memory at once. The store answers nothing useful afterwards.
    pub fn abandon_index_for_exit(&self) {
        std::mem::forget(std::mem::take(&mut self.state.write().expect("mvcc lock").index));
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// etcd's `HashByRev`: CRC-32C over `key`, then every stored revision up to `rev` (0: the
    /// current one) as its 17-byte key (+`t` for a tombstone) and its `KeyValue` bytes, skipping
    /// revisions at or below the compaction that a compaction at `rev` would remove. Reads an
    /// engine snapshot taken under the shared lock, which is released before the scan.
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash> {
        let st = self.settled();
        let (current, compact) = (st.current_rev, st.compact_rev);
        // etcd's compact revision is -1 until the first compaction.
        let reported_compact = if st.compacted { compact } else { -1 };
        if rev > 0 && rev <= compact {
            return Err(Error::Compacted);
        }
        if rev > current {
            return Err(Error::FutureRev);
        }
        let rev = if rev <= 0 { current } else { rev };
        let mut keep = HashSet::new();
        for ki in st.index.values() {
            ki.keep(rev, &mut keep);
        }
        let mut locked = Some(st);
        let mut hash = crate::storage::crc32c::Crc32c::default();
        hash.update(Table::Key.name().as_bytes());
        let upper = Revision::new(rev + 1, 0).to_key(false);
        self.engine.with_snapshot(&mut |snap| {
            locked.take();
            snap.scan(Table::Key, b"", &upper, &mut |k, v| {
                // etcd skips compacted-away revisions only when the compaction keeps some.
                let skip = !keep.is_empty()
                    && Revision::from_key(k).is_some_and(|(r, _)| r.main <= compact && !keep.contains(&r));
                if !skip {
                    hash.update(k);
                    hash.update(v);
                }
                true
            })
        })?;
        Ok(KvHash { hash: hash.sum(), current_rev: current, compact_rev: reported_compact })
    }
}

/// What [`KvStore::hash_kv`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    pub hash: u32,
    /// The store's revision when the hash was taken.
    pub current_rev: i64,
    /// -1 before the first compaction, as etcd.
    pub compact_rev: i64,
}

/// The fields of a stored `KeyValue` that rebuilding the index needs. Decoding one skips the
/// value (field 5) and `mod_revision` (the record's key holds it) without copying them.
#[derive(Clone, PartialEq, prost::Message)]
struct StoredHeader {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(int64, tag = "2")]
    create_revision: i64,
    #[prost(int64, tag = "4")]
    version: i64,
    #[prost(int64, tag = "6")]
    lease: i64,
}

/// One stored history record, as [`load`] collects it.
struct Record {
    key: Vec<u8>,
    rev: Revision,
    tombstone: bool,
    create_revision: i64,
    version: i64,
}

/// Reads the stored history into a fresh index; also returns the scheduled compaction revision,
/// and calls `leased` with each live key's lease (as of its newest version).
///
/// History is stored in revision order, not key order, so the records are collected, sorted by
/// key (stably: each key's records stay in revision order), folded into one [`KeyIndex`] per key
/// and bulk-built into the map: no search per record, and every tree node full (inserting one
/// key at a time leaves nodes about half full, roughly doubling the index's memory).
fn load(engine: &dyn Engine, leased: &mut dyn FnMut(&[u8], i64)) -> Result<(State, Option<i64>)> {
    let meta = |k: &[u8]| -> Result<Option<i64>> {
        Ok(engine.get(Table::Meta, k)?.as_deref().and_then(decode_u64).map(|v| v as i64))
    };
    let (scheduled, finished) = (meta(META_SCHEDULED_COMPACT)?, meta(META_FINISHED_COMPACT)?);
    let compacted = finished.is_some();
    let finished = finished.unwrap_or(0);
    let mut current_rev = 1;
    let mut records = Vec::new();
    // Keys whose newest version so far carries a lease.
    let mut leases: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut bad = None;
    engine.scan(Table::Key, b"", b"", &mut |k, v| {
        let (Some((rev, tombstone)), Ok(kv)) = (Revision::from_key(k), StoredHeader::decode(v)) else {
            bad = Some(k.to_vec());
            return false;
        };
        current_rev = current_rev.max(rev.main);
        if tombstone || kv.lease == 0 {
            if !leases.is_empty() {
                leases.remove(&kv.key);
            }
        } else {
            leases.insert(kv.key.clone(), kv.lease);
        }
        records.push(Record { key: kv.key, rev, tombstone, create_revision: kv.create_revision, version: kv.version });
        true
    })?;
    if let Some(k) = bad {
        return Err(Error::Storage(format!("malformed history record at {k:?}")));
    }
    records.sort_by(|a, b| a.key.cmp(&b.key));
    let mut keys: Vec<(Vec<u8>, KeyIndex)> = Vec::new();
    for r in records {
        match keys.last_mut() {
            Some((key, ki)) if *key == r.key => {
                if r.tombstone {
                    ki.tombstone(r.rev);
                } else {
                    ki.put(r.rev);
                }
            }
            // The key's earlier history (and the put that created it) was compacted away.
            _ if !r.tombstone => {
                let mut ki = KeyIndex::default();
                ki.restore(Revision::new(r.create_revision, 0), r.rev, r.version);
                keys.push((r.key, ki));
            }
            _ => {}
        }
    }
    for (key, lease) in &leases {
        leased(key, *lease);
    }
    let state = State {
        index: keys.into_iter().collect(),
        current_rev: current_rev.max(scheduled.unwrap_or(0)).max(finished),
        compact_rev: finished,
        compacted,
    };
    Ok((state, scheduled))
}

/// Reads at one revision without holding the store's lock (see [`KvStore::point_in_time`]).
///
/// Revisions are immutable once written, so values read after the lock is released are those of
/// the collected revisions — unless a compaction removed one meanwhile. Such a range is read
/// again, and answers `Compacted` if its revision is now below the compaction.
pub struct PointInTime<'a> {
    store: &'a KvStore,
    rev: i64,
    compact_rev: i64,
}

/// Attempts of one range before a revision that keeps disappearing is reported.
const POINT_IN_TIME_ATTEMPTS: usize = 3;

impl PointInTime<'_> {
    pub fn rev(&self) -> i64 {
        self.rev
    }

    pub fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        self.read_collected(range, opts, &mut |engine, revs| {
            let keys: Vec<Vec<u8>> = revs.iter().map(|r| r.to_key(false)).collect();
            let values = engine.get_many(Table::Key, &keys)?;
            if !values.iter().all(Option::is_some) {
                return Ok(None);
            }
            let kvs =
                values.into_iter().zip(revs).map(|(bytes, rev)| decode_value(*rev, &bytes.expect("checked present")));
            Ok(Some(kvs.collect::<Result<Vec<_>>>()?))
        })
        .map(|(kvs, count)| RangeResult { kvs, count, rev: self.rev })
    }

    /// Whether `range` holds more than `n` live keys at revision `rev` (0: this reader's): a
    /// walk of the index that stops after `n + 1` keys, under a brief shared lock.
    pub fn has_more_keys_than(&self, range: &KeyRange, rev: i64, n: usize) -> bool {
        let at = if rev <= 0 { self.rev } else { rev };
        let st = self.store.state.read().expect("mvcc lock");
        let (lo, hi) = match range {
            KeyRange::Single(_) => return n == 0 && st.index.get(range.start()).is_some_and(|ki| ki.get(at).is_some()),
            KeyRange::From(s) => (Bound::Included(s.as_slice()), Bound::Unbounded),
            KeyRange::Between(s, e) if s < e => (Bound::Included(s.as_slice()), Bound::Excluded(e.as_slice())),
            KeyRange::Between(..) => return false,
        };
        st.index.range::<[u8], _>((lo, hi)).filter(|(_, ki)| ki.get(at).is_some()).nth(n).is_some()
    }

    /// [`PointInTime::range`] answered with the stored `KeyValue` records themselves, not
    /// decoded: each preceded by the protobuf key of a length-delimited field number `field` and
    /// its length, so that the records taken in key order ([`Records::order`]) are an
    /// encoded `repeated KeyValue` field of that number, to be spliced into an encoded message
    /// (etcd's `RangeResponse.kvs` is field 2): no `KeyValue` is built, and no allocation is made
    /// per key. A stored record is the prost encoding of the `KeyValue` written, which is what
    /// encoding the decoded value again gives.
    pub fn range_records(&self, range: &KeyRange, opts: RangeOptions, field: u32) -> Result<Records> {
        self.read_collected(range, opts, &mut |engine, revs| stored_records(engine, revs, field))
            .map(|((bytes, order), count)| Records { bytes, order, count, rev: self.rev })
    }

    /// Collects the revisions of `range` under the shared lock, then runs `read` on them without
    /// it; `read` answers `None` when a revision is gone (a compaction ran in between), and the
    /// range is collected again. Also answers the range's count.
    fn read_collected<T>(
        &self,
        range: &KeyRange,
        opts: RangeOptions,
        read: &mut ReadRevisions<'_, T>,
    ) -> Result<(T, i64)> {
        let at = read_at(opts, self.rev, self.rev)?;
        for _ in 0..POINT_IN_TIME_ATTEMPTS {
            let (revs, count) = {
                let st = self.store.state.read().expect("mvcc lock");
                Reader { state: &st, engine: &*self.store.engine, overlay: None }.select(range, opts, at)?
            };
            if let Some(found) = read(&*self.store.engine, &revs)? {
                return Ok((found, count));
            }
            // A compaction removed a revision after it was collected: collect again.
        }
        Err(Error::Storage(format!("revisions of {range:?} at {at} keep disappearing")))
    }
}

/// Reads the values of collected revisions; `None` when one is gone.
type ReadRevisions<'a, T> = dyn FnMut(&dyn Engine, &[Revision]) -> Result<Option<T>> + 'a;

/// What [`PointInTime::range_records`] answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    /// The stored records, each framed as one element of a repeated protobuf field, in the order
    /// the engine read them (see [`Records::order`]).
    pub bytes: Vec<u8>,
    /// Where each framed record of `bytes` is, in key order; empty when `bytes` is in key order
    /// already. Kept apart rather than applied, so that the one copy into the response buffer
    /// also puts the records in order.
    pub order: Vec<Range<usize>>,
    /// Number of keys in the range at the read revision, regardless of `limit`.
    pub count: i64,
    /// The store's revision when the reader was taken, as [`RangeResult::rev`].
    pub rev: i64,
}

/// Framed records as read, and where each is in key order (see [`Records`]).
type FramedRecords = (Vec<u8>, Vec<Range<usize>>);

/// The stored records of `revs` framed as elements of field `field` (see
/// [`PointInTime::range_records`]), and where each is in key order (nothing when they were read
/// in key order); `None` if one is missing.
///
/// The engine hands values out in revision order. Each is copied once, with its frame, into one
/// buffer.
fn stored_records(engine: &dyn Engine, revs: &[Revision], field: u32) -> Result<Option<FramedRecords>> {
    use prost::encoding::{encode_key, encode_varint, WireType};
    let keys: Vec<Vec<u8>> = revs.iter().map(|r| r.to_key(false)).collect();
    let mut buf = Vec::new();
    let mut spans = vec![0..0; revs.len()];
    let mut found = 0;
    engine.visit_many(Table::Key, &keys, &mut |i, value| {
        if found == 0 {
            // Records of one range tend to be alike in size: one allocation instead of doublings.
            buf.reserve((value.len() + 8) * revs.len());
        }
        let start = buf.len();
        encode_key(field, WireType::LengthDelimited, &mut buf);
        encode_varint(value.len() as u64, &mut buf);
        buf.extend_from_slice(value);
        spans[i] = start..buf.len();
        found += 1;
    })?;
    if found != revs.len() {
        return Ok(None);
    }
    if keys.is_sorted() {
        spans.clear();
    }
    Ok(Some((buf, spans)))
}

impl KvRead for PointInTime<'_> {
    fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        PointInTime::range(self, range, opts)
    }

    fn read_rev(&self) -> i64 {
        self.rev
    }

    fn compact_rev(&self) -> i64 {
        self.compact_rev
    }
}

/// A consistent, read-only view of the store.
pub struct ReadView<'a> {
    state: RwLockReadGuard<'a, State>,
    engine: &'a dyn Engine,
}

impl ReadView<'_> {
    pub fn rev(&self) -> i64 {
        self.state.current_rev
    }

    pub fn compact_rev(&self) -> i64 {
        self.state.compact_rev
    }

    /// Keys in the index: live ones, and deleted ones until a compaction drops their history.
    pub fn key_count(&self) -> usize {
        self.state.index.len()
    }

    pub fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        let reader = Reader { state: &self.state, engine: self.engine, overlay: None };
        reader.range(range, opts, self.state.current_rev)
    }

    /// The events of every revision in `[from, to]` touching `range`, in revision order.
    pub fn history(&self, range: &KeyRange, from: i64, to: i64) -> Result<Vec<Event>> {
        if from < self.state.compact_rev {
            return Err(Error::Compacted);
        }
        let mut events = Vec::new();
        let mut bad = None;
        let start = Revision::new(from, 0).to_key(false);
        let end = Revision::new(to.saturating_add(1), 0).to_key(false);
        self.engine.scan(Table::Key, &start, &end, &mut |k, v| {
            let (Some((rev, tombstone)), Ok(mut kv)) = (Revision::from_key(k), KeyValue::decode(v)) else {
                bad = Some(k.to_vec());
                return false;
            };
            if range.contains(&kv.key) {
                let kind = if tombstone {
                    kv.mod_revision = rev.main;
                    EventType::Delete
                } else {
                    EventType::Put
                };
                events.push(Event { r#type: kind as i32, kv: Some(kv), prev_kv: None });
            }
            true
        })?;
        match bad {
            Some(k) => Err(Error::Storage(format!("malformed history record at {k:?}"))),
            None => Ok(events),
        }
    }
}

/// Range reads shared by read views and write transactions.
struct Reader<'s> {
    state: &'s State,
    engine: &'s dyn Engine,
    /// Values written by the current apply batch, not yet in the engine.
    overlay: Option<&'s HashMap<Revision, KeyValue>>,
}

impl Reader<'_> {
    fn range(&self, range: &KeyRange, opts: RangeOptions, read_rev: i64) -> Result<RangeResult> {
        let current = self.state.current_rev;
        let at = read_at(opts, read_rev, current)?;
        let (revs, count) = self.select(range, opts, at)?;
        let kvs = self.values(&revs)?;
        Ok(RangeResult { kvs, count, rev: current })
    }

    /// The revisions a range reads at `at` (after `limit`; none for `count_only`) and how many
    /// keys the range holds.
    fn select(&self, range: &KeyRange, opts: RangeOptions, at: i64) -> Result<(Vec<Revision>, i64)> {
        if at < self.state.compact_rev {
            return Err(Error::Compacted);
        }
        let mut revs = self.revisions(range, at);
        let count = revs.len() as i64;
        let take = if opts.count_only {
            0
        } else if opts.limit > 0 {
            (opts.limit as usize).min(revs.len())
        } else {
            revs.len()
        };
        revs.truncate(take);
        Ok((revs, count))
    }

    /// Revisions of the live version, as of `at`, of every key in `range`, in key order.
    fn revisions(&self, range: &KeyRange, at: i64) -> Vec<Revision> {
        let found = |ki: &KeyIndex| ki.get(at).map(|f| f.modified);
        match range {
            KeyRange::Single(k) => self.state.index.get(k).and_then(found).into_iter().collect(),
            KeyRange::From(start) => self
                .state
                .index
                .range::<[u8], _>((Bound::Included(start.as_slice()), Bound::Unbounded))
                .filter_map(|(_, ki)| found(ki))
                .collect(),
            KeyRange::Between(start, end) if start < end => self
                .state
                .index
                .range::<[u8], _>((Bound::Included(start.as_slice()), Bound::Excluded(end.as_slice())))
                .filter_map(|(_, ki)| found(ki))
                .collect(),
            KeyRange::Between(..) => Vec::new(),
        }
    }

    /// The stored values of `revs`, in their order: from the overlay where the current batch
    /// wrote them, the rest from the engine in one batched lookup.
    fn values(&self, revs: &[Revision]) -> Result<Vec<KeyValue>> {
        let overlay = |r: &Revision| self.overlay.and_then(|o| o.get(r));
        let keys: Vec<Vec<u8>> = revs.iter().filter(|r| overlay(r).is_none()).map(|r| r.to_key(false)).collect();
        let mut stored = self.engine.get_many(Table::Key, &keys)?.into_iter();
        revs.iter()
            .map(|rev| match overlay(rev) {
                Some(kv) => Ok(kv.clone()),
                None => match stored.next().flatten() {
                    Some(bytes) => decode_value(*rev, &bytes),
                    None => Err(Error::Storage(format!("revision {rev} is indexed but not stored"))),
                },
            })
            .collect()
    }
}

/// The revision a range reads at: `opts.rev`, or `read_rev` for 0; `FutureRev` past `current`.
fn read_at(opts: RangeOptions, read_rev: i64, current: i64) -> Result<i64> {
    if opts.rev > current {
        return Err(Error::FutureRev);
    }
    Ok(if opts.rev <= 0 { read_rev } else { opts.rev })
}

fn decode_value(rev: Revision, bytes: &[u8]) -> Result<KeyValue> {
    KeyValue::decode(bytes).map_err(|e| Error::Storage(format!("revision {rev}: {e}")))
}

/// A group of write transactions applied as one engine batch. Holds the store's exclusive lock.
pub struct ApplyBatch<'a> {
    state: RwLockWriteGuard<'a, State>,
    engine: &'a dyn Engine,
    batch: WriteBatch,
    overlay: HashMap<Revision, KeyValue>,
    events: Vec<Event>,
    purger: &'a Purger,
    /// Stored revision keys a compaction in this batch dropped from the index, deleted after
    /// the commit by the purger.
    purge: Vec<Vec<u8>>,
    /// The last compaction revision in this batch.
    purge_rev: Option<i64>,
}

impl<'a> ApplyBatch<'a> {
    pub fn rev(&self) -> i64 {
        self.state.current_rev
    }

    pub fn compact_rev(&self) -> i64 {
        self.state.compact_rev
    }

    /// Starts the next write transaction; it takes revision `rev() + 1` if it changes anything.
    pub fn txn(&mut self) -> WriteTxn<'_, 'a> {
        let begin_rev = self.state.current_rev;
        WriteTxn { apply: self, begin_rev, changes: 0 }
    }

    /// Compacts history below `rev`: keeps each key's newest version at or below it. Records the
    /// scheduled and finished markers in the same batch, so a crash never leaves it half done.
    /// etcd's rule (`updateCompactRev`): a revision at or below the last compaction (-1 before
    /// the first, so `compaction 0` succeeds once) is `compacted`, one past the current revision
    /// a future one.
    ///
    /// This is the logical half (see [`super::purge`]): the revision and the index change now,
    /// with the `scheduled` marker in this batch; the stored revisions the index dropped are
    /// deleted in batches after the commit, and the `finished` marker follows them.
    pub fn compact(&mut self, rev: i64) -> Result<()> {
        let compacted_through = if self.state.compacted { self.state.compact_rev } else { -1 };
        if rev <= compacted_through {
            return Err(Error::Compacted);
        }
        if rev > self.state.current_rev {
            return Err(Error::FutureRev);
        }
        self.state.compact_rev = rev;
        self.state.compacted = true;
        // The key index knows every stored revision, so what to remove comes from it, in memory:
        // no scan of the stored history on the apply path.
        let mut keep = HashSet::new();
        let doomed = &mut self.purge;
        self.state.index.retain(|_, ki| {
            let candidates = ki.revisions_through(rev);
            ki.compact(rev, &mut keep);
            for (r, tombstone) in candidates {
                if !keep.contains(&r) {
                    doomed.push(r.to_key(tombstone));
                }
            }
            !ki.is_empty()
        });
        self.purge_rev = Some(rev);
        self.batch.put(Table::Meta, META_SCHEDULED_COMPACT, (rev as u64).to_be_bytes());
        Ok(())
    }

    /// Events recorded so far in this batch, in revision order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The engine batch, for the caller's own records (e.g. the applied index).
    pub fn batch_mut(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    /// Writes everything atomically (unsynced: the raft log is the durable record) and returns
    /// the events of the committed transactions, in revision order.
    pub fn commit(self) -> Result<Vec<Event>> {
        let ApplyBatch { state, engine, batch, events, purger, purge, purge_rev, .. } = self;
        engine.write(batch, false)?;
        if let Some(rev) = purge_rev {
            // Queued under the exclusive lock: see `KvStore::settled`.
            purger.submit(Job { rev, keys: purge });
        }
        drop(state);
        Ok(events)
    }
}

/// One write transaction: every change it makes shares one main revision.
pub struct WriteTxn<'b, 'a> {
    apply: &'b mut ApplyBatch<'a>,
    begin_rev: i64,
    /// Number of changes so far; also the next sub revision.
    changes: i64,
}

impl WriteTxn<'_, '_> {
    /// The revision reads in this transaction see: its own changes included.
    pub fn read_rev(&self) -> i64 {
        self.begin_rev + (self.changes > 0) as i64
    }

    /// The revision this transaction writes at.
    pub fn write_rev(&self) -> i64 {
        self.begin_rev + 1
    }

    pub fn has_changes(&self) -> bool {
        self.changes > 0
    }

    pub fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        let reader = Reader { state: &self.apply.state, engine: self.apply.engine, overlay: Some(&self.apply.overlay) };
        let mut res = reader.range(range, opts, self.read_rev())?;
        res.rev = self.read_rev();
        Ok(res)
    }

    /// Puts `key`; returns the revision it was written at.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> i64 {
        let rev = Revision::new(self.write_rev(), self.changes);
        let (create_revision, version) = match self.apply.state.index.get(key).and_then(|ki| ki.get(rev.main)) {
            Some(found) => (found.created.main, found.version + 1),
            None => (rev.main, 1),
        };
        let kv = KeyValue { key: key.to_vec(), create_revision, mod_revision: rev.main, version, value, lease };
        self.apply.state.index.entry(key.to_vec()).or_default().put(rev);
        self.record(rev, kv, EventType::Put);
        rev.main
    }

    /// Deletes every live key in `range`; returns how many were deleted.
    pub fn delete_range(&mut self, range: &KeyRange) -> i64 {
        let reader = Reader { state: &self.apply.state, engine: self.apply.engine, overlay: None };
        let at = self.read_rev();
        let keys: Vec<Vec<u8>> = match range {
            KeyRange::Single(k) => reader.revisions(range, at).iter().map(|_| k.clone()).collect(),
            _ => self.live_keys(range, at),
        };
        for key in &keys {
            let rev = Revision::new(self.write_rev(), self.changes);
            if let Some(ki) = self.apply.state.index.get_mut(key) {
                ki.tombstone(rev);
            }
            let kv = KeyValue { key: key.clone(), mod_revision: rev.main, ..Default::default() };
            self.record(rev, kv, EventType::Delete);
        }
        keys.len() as i64
    }

    fn live_keys(&self, range: &KeyRange, at: i64) -> Vec<Vec<u8>> {
        let (lo, hi) = match range {
            KeyRange::Single(k) => (Bound::Included(k.as_slice()), Bound::Included(k.as_slice())),
            KeyRange::From(s) => (Bound::Included(s.as_slice()), Bound::Unbounded),
            KeyRange::Between(s, e) if s < e => (Bound::Included(s.as_slice()), Bound::Excluded(e.as_slice())),
            KeyRange::Between(..) => return Vec::new(),
        };
        let index = &self.apply.state.index;
        index.range::<[u8], _>((lo, hi)).filter(|(_, ki)| ki.get(at).is_some()).map(|(k, _)| k.clone()).collect()
    }

    fn record(&mut self, rev: Revision, kv: KeyValue, kind: EventType) {
        let tombstone = kind == EventType::Delete;
        let stored = if tombstone { KeyValue { key: kv.key.clone(), ..Default::default() } } else { kv.clone() };
        self.apply.batch.put(Table::Key, rev.to_key(tombstone), stored.encode_to_vec());
        self.apply.overlay.insert(rev, stored);
        self.apply.events.push(Event { r#type: kind as i32, kv: Some(kv), prev_kv: None });
        self.changes += 1;
        self.apply.state.current_rev = self.begin_rev + 1;
    }
}

/// Reads shared by read views and write transactions, so etcd's request logic runs on either.
pub trait KvRead {
    fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult>;
    /// The revision reads see by default.
    fn read_rev(&self) -> i64;
    /// The oldest revision still readable.
    fn compact_rev(&self) -> i64;
}

/// Writes of a transaction; every change shares one main revision.
pub trait KvWrite: KvRead {
    /// Puts `key`; returns the revision written.
    fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<i64>;
    /// Deletes the live keys of `range`; returns how many.
    fn delete_range(&mut self, range: &KeyRange) -> Result<i64>;
    /// The revision this transaction writes at.
    fn write_rev(&self) -> i64;
    fn has_changes(&self) -> bool;
}

impl KvRead for ReadView<'_> {
    fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        ReadView::range(self, range, opts)
    }

    fn read_rev(&self) -> i64 {
        self.rev()
    }

    fn compact_rev(&self) -> i64 {
        ReadView::compact_rev(self)
    }
}

impl KvRead for WriteTxn<'_, '_> {
    fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        WriteTxn::range(self, range, opts)
    }

    fn read_rev(&self) -> i64 {
        WriteTxn::read_rev(self)
    }

    fn compact_rev(&self) -> i64 {
        self.apply.state.compact_rev
    }
}

impl KvWrite for WriteTxn<'_, '_> {
    fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<i64> {
        Ok(WriteTxn::put(self, key, value, lease))
    }

    fn delete_range(&mut self, range: &KeyRange) -> Result<i64> {
        Ok(WriteTxn::delete_range(self, range))
    }

    fn write_rev(&self) -> i64 {
        WriteTxn::write_rev(self)
    }

    fn has_changes(&self) -> bool {
        WriteTxn::has_changes(self)
    }
}
