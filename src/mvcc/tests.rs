//! KvStore behaviour on both engines: revisions, versions, ranges at old revisions, compaction,
//! and rebuilding the index from stored history.

use std::sync::Arc;

use super::*;
use crate::error::Error;
use crate::storage::{Engine, MemoryEngine, RocksEngine};

fn engines() -> Vec<(Arc<dyn Engine>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let rocks: Arc<dyn Engine> = Arc::new(RocksEngine::open(&dir.path().join("db"), Default::default()).unwrap());
    vec![(Arc::new(MemoryEngine::new()), tempfile::tempdir().unwrap()), (rocks, dir)]
}

fn put(kv: &KvStore, key: &str, value: &str) -> i64 {
    let mut apply = kv.apply();
    let rev = apply.txn().put(key.as_bytes(), value.as_bytes().to_vec(), 0);
    apply.commit().unwrap();
    rev
}

fn del(kv: &KvStore, range: KeyRange) -> i64 {
    let mut apply = kv.apply();
    let n = apply.txn().delete_range(&range);
    apply.commit().unwrap();
    n
}

/// `(key, value, create_revision, mod_revision, version)` of each key-value read.
type Row = (String, String, i64, i64, i64);

fn get(kv: &KvStore, range: KeyRange, rev: i64) -> Result<Vec<Row>, Error> {
    let res = kv.read().range(&range, RangeOptions { rev, ..Default::default() })?;
    Ok(res
        .kvs
        .into_iter()
        .map(|k| {
            (
                String::from_utf8(k.key).unwrap(),
                String::from_utf8(k.value).unwrap(),
                k.create_revision,
                k.mod_revision,
                k.version,
            )
        })
        .collect())
}

fn single(k: &str) -> KeyRange {
    KeyRange::Single(k.as_bytes().to_vec())
}

#[test]
fn revisions_versions_and_history() {
    for (engine, _dir) in engines() {
        let kv = KvStore::open(engine.clone()).unwrap();
        assert_eq!(kv.read().rev(), 1, "a new store starts at revision 1 as etcd");
        assert_eq!(put(&kv, "foo", "a"), 2);
        assert_eq!(put(&kv, "foo", "b"), 3);
        assert_eq!(put(&kv, "bar", "x"), 4);
        assert_eq!(get(&kv, single("foo"), 0).unwrap(), vec![("foo".into(), "b".into(), 2, 3, 2)]);
        assert_eq!(get(&kv, single("foo"), 2).unwrap(), vec![("foo".into(), "a".into(), 2, 2, 1)]);
        assert_eq!(get(&kv, single("bar"), 3).unwrap(), vec![]);
        assert_eq!(del(&kv, single("foo")), 1);
        assert_eq!(del(&kv, single("foo")), 0, "deleting a missing key changes nothing");
        assert_eq!(kv.read().rev(), 5);
        assert_eq!(put(&kv, "foo", "c"), 6);
        assert_eq!(get(&kv, single("foo"), 0).unwrap(), vec![("foo".into(), "c".into(), 6, 6, 1)]);
        assert_eq!(get(&kv, single("foo"), 7), Err(Error::FutureRev));
        let all = get(&kv, KeyRange::From(b"\0".to_vec()), 0).unwrap();
        assert_eq!(all.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), ["bar", "foo"]);
        let hist = kv.read().history(&single("foo"), 1, 6).unwrap();
        let kinds: Vec<(i32, i64)> = hist.iter().map(|e| (e.r#type, e.kv.as_ref().unwrap().mod_revision)).collect();
        assert_eq!(kinds, vec![(0, 2), (0, 3), (1, 5), (0, 6)]);
    }
}

#[test]
fn txn_sees_its_own_writes_at_one_revision() {
    for (engine, _dir) in engines() {
        let kv = KvStore::open(engine).unwrap();
        let mut apply = kv.apply();
        let mut txn = apply.txn();
        txn.put(b"a", b"1".to_vec(), 0);
        txn.put(b"a", b"2".to_vec(), 0);
        txn.put(b"b", b"3".to_vec(), 0);
        let seen = txn.range(&KeyRange::From(b"a".to_vec()), RangeOptions::default()).unwrap();
        assert_eq!(seen.kvs.len(), 2);
        assert_eq!(seen.kvs[0].value, b"2");
        assert_eq!(seen.kvs[0].version, 2);
        assert_eq!(txn.delete_range(&KeyRange::Single(b"b".to_vec())), 1);
        let mut txn2 = apply.txn();
        assert_eq!(txn2.put(b"c", b"4".to_vec(), 0), 3, "the next txn in the batch takes the next revision");
        apply.commit().unwrap();
        assert_eq!(get(&kv, single("a"), 0).unwrap(), vec![("a".into(), "2".into(), 2, 2, 2)]);
        assert_eq!(get(&kv, single("b"), 0).unwrap(), vec![]);
    }
}

#[test]
fn limit_count_and_count_only() {
    for (engine, _dir) in engines() {
        let kv = KvStore::open(engine).unwrap();
        for k in ["k1", "k2", "k3", "k4"] {
            put(&kv, k, "v");
        }
        let range = KeyRange::new(b"k", &prefix_end(b"k"));
        let res = kv.read().range(&range, RangeOptions { limit: 2, ..Default::default() }).unwrap();
        assert_eq!((res.kvs.len(), res.count, res.rev), (2, 4, 5));
        let res = kv.read().range(&range, RangeOptions { count_only: true, ..Default::default() }).unwrap();
        assert_eq!((res.kvs.len(), res.count), (0, 4));
        let res = kv.read().range(&KeyRange::new(b"k3", b"k1"), RangeOptions::default()).unwrap();
        assert_eq!(res.count, 0);
    }
}

#[test]
fn compaction_keeps_latest_and_survives_reopen() {
    for (engine, _dir) in engines() {
        let kv = KvStore::open(engine.clone()).unwrap();
        put(&kv, "a", "1"); // 2
        put(&kv, "a", "2"); // 3
        put(&kv, "b", "1"); // 4
        del(&kv, single("b")); // 5
        put(&kv, "a", "3"); // 6
        let mut apply = kv.apply();
        assert_eq!(apply.compact(7), Err(Error::FutureRev));
        apply.compact(5).unwrap();
        assert_eq!(apply.compact(5), Err(Error::Compacted));
        apply.commit().unwrap();
        assert_eq!(get(&kv, single("a"), 4), Err(Error::Compacted));
        assert_eq!(get(&kv, single("a"), 5).unwrap(), vec![("a".into(), "2".into(), 2, 3, 2)]);
        assert_eq!(get(&kv, single("b"), 5).unwrap(), vec![]);
        assert_eq!(kv.read().history(&KeyRange::From(vec![0]), 4, 6), Err(Error::Compacted));
        kv.wait_purged();
        let stored = crate::storage::scan_all(&*engine, crate::storage::Table::Key, b"", b"").unwrap();
        assert_eq!(stored.len(), 2, "only a@3 and a@6 stay stored");
        drop(kv);
        let kv = KvStore::open(engine).unwrap();
        assert_eq!(kv.read().rev(), 6);
        assert_eq!(kv.read().compact_rev(), 5);
        assert_eq!(get(&kv, single("a"), 0).unwrap(), vec![("a".into(), "3".into(), 2, 6, 3)]);
        assert_eq!(get(&kv, single("a"), 5).unwrap(), vec![("a".into(), "2".into(), 2, 3, 2)]);
        assert_eq!(put(&kv, "a", "4"), 7);
        assert_eq!(get(&kv, single("a"), 0).unwrap(), vec![("a".into(), "4".into(), 2, 7, 4)]);
    }
}

#[test]
fn compaction_of_a_trailing_delete_keeps_the_revision() {
    for (engine, _dir) in engines() {
        let kv = KvStore::open(engine.clone()).unwrap();
        put(&kv, "a", "1");
        del(&kv, single("a"));
        let mut apply = kv.apply();
        apply.compact(3).unwrap();
        apply.commit().unwrap();
        drop(kv);
        let kv = KvStore::open(engine).unwrap();
        assert_eq!(kv.read().rev(), 3, "the current revision never goes back");
        assert_eq!(put(&kv, "a", "2"), 4);
    }
}

/// `k00..k49` put three times (revisions 2..=151), then `k00..k09` deleted (152).
fn three_rounds(kv: &KvStore) {
    for round in 0..3 {
        for i in 0..50 {
            put(kv, &format!("k{i:02}"), &format!("v{round}"));
        }
    }
    del(kv, KeyRange::Between(b"k00".to_vec(), b"k10".to_vec()));
}

fn stored_revisions(engine: &Arc<dyn Engine>) -> usize {
    crate::storage::scan_all(&**engine, crate::storage::Table::Key, b"", b"").unwrap().len()
}

fn finished_marker(engine: &Arc<dyn Engine>) -> Option<u64> {
    let marker = engine.get(crate::storage::Table::Meta, crate::storage::schema::META_FINISHED_COMPACT).unwrap();
    marker.as_deref().and_then(crate::storage::schema::decode_u64)
}

/// Compaction's physical half deletes history in batches (7 keys here) after the logical half:
/// reads see the compaction at once, the stored history ends as one big batch leaves it, HashKV
/// is the same whatever the batch size, and the `finished` marker follows the last batch. A
/// crash after the logical half (`scheduled` ahead of `finished`) is completed at the next open.
#[test]
fn compaction_deletes_history_in_batches_with_the_same_outcome() {
    for (engine, _dir) in engines() {
        let (reference, _ref_dir) = engines().remove(0);
        let one_batch = KvStore::open(reference.clone()).unwrap();
        let kv = KvStore::open_with(engine.clone(), 7, &mut |_, _| {}).unwrap();
        for store in [&kv, &one_batch] {
            three_rounds(store);
            assert_eq!(store.hash_kv(0).unwrap().compact_rev, -1, "etcd's compact revision before any");
            let mut apply = store.apply();
            apply.compact(140).unwrap();
            apply.commit().unwrap();
        }
        assert_eq!(get(&kv, single("k20"), 139), Err(Error::Compacted), "visible at once");
        assert_eq!(get(&kv, single("k20"), 140).unwrap(), vec![("k20".into(), "v2".into(), 22, 122, 3)]);
        assert_eq!(get(&kv, single("k45"), 140).unwrap(), vec![("k45".into(), "v1".into(), 47, 97, 2)]);
        let hash = kv.hash_kv(0).unwrap();
        assert_eq!(hash, one_batch.hash_kv(0).unwrap());
        assert_eq!(hash.compact_rev, 140);
        kv.wait_purged();
        // Kept: k00..k38's round-2 revision (at or below 140), k39..k49's round-1 and round-2
        // revisions, and the ten tombstones.
        assert_eq!(stored_revisions(&engine), 39 + 22 + 10);
        assert_eq!(finished_marker(&engine), Some(140));
        // A crash right after the logical half of a compaction at 151: reopening finishes it.
        let mut b = crate::storage::WriteBatch::new();
        b.put(crate::storage::Table::Meta, crate::storage::schema::META_SCHEDULED_COMPACT, 151u64.to_be_bytes());
        engine.write(b, true).unwrap();
        drop(kv);
        let kv = KvStore::open_with(engine.clone(), 7, &mut |_, _| {}).unwrap();
        assert_eq!(kv.read().compact_rev(), 151);
        kv.wait_purged();
        assert_eq!(stored_revisions(&engine), 50 + 10, "each key's newest revision and the tombstones");
        assert_eq!(finished_marker(&engine), Some(151));
    }
}

/// etcd's compact revision is -1 until the first compaction: compacting at 0 succeeds once
/// (and is remembered across a restart); then 0 is compacted, as any revision at or below.
#[test]
fn the_first_compaction_may_be_at_revision_zero() {
    for (engine, _dir) in engines() {
        let kv = KvStore::open(engine.clone()).unwrap();
        assert_eq!(kv.apply().compact(-1), Err(Error::Compacted));
        let mut apply = kv.apply();
        apply.compact(0).unwrap();
        apply.commit().unwrap();
        assert_eq!(kv.hash_kv(0).unwrap().compact_rev, 0);
        assert_eq!(kv.apply().compact(0), Err(Error::Compacted));
        kv.wait_purged();
        drop(kv);
        let kv = KvStore::open(engine).unwrap();
        assert_eq!(kv.apply().compact(0), Err(Error::Compacted));
        assert_eq!(kv.hash_kv(0).unwrap().compact_rev, 0);
        put(&kv, "a", "1");
        let mut apply = kv.apply();
        apply.compact(1).unwrap();
        apply.commit().unwrap();
    }
}

/// A point-in-time reader holds no lock between its ranges: writes and compactions apply while
/// it lives (a held `ReadView` would block them), and it keeps answering as of its revision.
#[test]
fn point_in_time_reads_never_block_the_applier() {
    for (engine, _dir) in engines() {
        let kv = KvStore::open(engine).unwrap();
        for i in 0..100 {
            put(&kv, &format!("k{i:03}"), "old"); // revisions 2..=101
        }
        let reader = kv.point_in_time();
        assert_eq!(reader.rev(), 101);
        for i in 0..100 {
            put(&kv, &format!("k{i:03}"), "new"); // 102..=201: would deadlock under a ReadView
        }
        let mut apply = kv.apply();
        apply.compact(150).unwrap(); // keeps k050.. at their old values, drops k000..k049's
        apply.commit().unwrap();
        let all = KeyRange::From(b"k".to_vec());
        assert_eq!(reader.range(&all, RangeOptions::default()), Err(Error::Compacted));
        let now = kv.point_in_time();
        let res = now.range(&all, RangeOptions { limit: 3, ..Default::default() }).unwrap();
        assert_eq!((res.count, res.kvs.len(), res.rev), (100, 3, 201));
        assert!(res.kvs.iter().all(|kv| kv.value == b"new"));
        put(&kv, "k000", "newer");
        assert_eq!(
            now.range(&KeyRange::Single(b"k000".to_vec()), RangeOptions::default()).unwrap().kvs[0].value,
            b"new"
        );
    }
}

/// `has_more_keys_than` counts live keys at the reader's or an older revision, and stops early.
#[test]
fn has_more_keys_than_counts_live_keys_at_the_revision() {
    for (engine, _dir) in engines() {
        let kv = KvStore::open(engine).unwrap();
        for k in ["a", "b", "c", "d"] {
            put(&kv, k, "v");
        }
        let before_delete = kv.read().rev();
        del(&kv, KeyRange::Single(b"b".to_vec()));
        let reader = kv.point_in_time();
        let all = KeyRange::new(b"a", b"z");
        assert!(reader.has_more_keys_than(&all, 0, 2));
        assert!(!reader.has_more_keys_than(&all, 0, 3), "b is deleted");
        assert!(reader.has_more_keys_than(&all, before_delete, 3), "b lives at the older revision");
        assert!(!reader.has_more_keys_than(&KeyRange::new(b"a", b"\0"), 2, 1), "only a at revision 2");
        assert!(reader.has_more_keys_than(&KeyRange::Single(b"a".to_vec()), 0, 0));
        assert!(!reader.has_more_keys_than(&KeyRange::Single(b"b".to_vec()), 0, 0));
        assert!(!reader.has_more_keys_than(&KeyRange::new(b"z", b"a"), 0, 0));
    }
}
