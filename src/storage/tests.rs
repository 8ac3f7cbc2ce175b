//! Storage conformance: the same script runs against every engine.

use super::schema::Table;
use super::*;

fn engines() -> Vec<(Box<dyn Engine>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let rocks = RocksEngine::open(dir.path(), Default::default()).expect("open rocksdb");
    vec![(Box::new(MemoryEngine::new()), None), (Box::new(rocks), Some(dir))]
}

fn keys(engine: &dyn Engine, table: Table, start: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
    scan_all(engine, table, start, end).unwrap().into_iter().map(|(k, _)| k).collect()
}

#[test]
fn put_get_delete_per_table() {
    for (e, _dir) in engines() {
        let mut b = WriteBatch::new();
        b.put(Table::Key, b"a".to_vec(), b"1".to_vec());
        b.put(Table::Meta, b"a".to_vec(), b"2".to_vec());
        e.write(b, true).unwrap();
        assert_eq!(e.get(Table::Key, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(e.get(Table::Meta, b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(e.get(Table::Lease, b"a").unwrap(), None);
        let mut b = WriteBatch::new();
        b.delete(Table::Key, b"a".to_vec());
        e.write(b, false).unwrap();
        assert_eq!(e.get(Table::Key, b"a").unwrap(), None);
        assert_eq!(e.get(Table::Meta, b"a").unwrap(), Some(b"2".to_vec()));
    }
}

/// `get_many` answers in the caller's order whatever the order, gaps (longer than the RocksDB
/// engine steps over before seeking), duplicates, absent keys, keys past the last one and keys
/// of another table.
#[test]
fn get_many_answers_in_order() {
    for (e, _dir) in engines() {
        let mut b = WriteBatch::new();
        for i in (0u32..100).filter(|i| i % 3 != 0 && !(40..60).contains(i)) {
            b.put(Table::Key, i.to_be_bytes().to_vec(), format!("v{i}").into_bytes());
        }
        b.put(Table::Meta, 200u32.to_be_bytes().to_vec(), b"meta".to_vec());
        e.write(b, false).unwrap();
        let ask: Vec<u32> = vec![98, 1, 2, 3, 61, 1, 39, 200, 0, 97, 64, 62, 5, 500];
        let keys: Vec<Vec<u8>> = ask.iter().map(|i| i.to_be_bytes().to_vec()).collect();
        let want: Vec<Option<Vec<u8>>> = ask
            .iter()
            .map(|i| (*i < 100 && i % 3 != 0 && !(40..60).contains(i)).then(|| format!("v{i}").into_bytes()))
            .collect();
        assert_eq!(e.get_many(Table::Key, &keys).unwrap(), want);
        let mut sorted = keys.clone();
        sorted.sort();
        let want_sorted: Vec<_> = sorted.iter().map(|k| e.get(Table::Key, k).unwrap()).collect();
        assert_eq!(e.get_many(Table::Key, &sorted).unwrap(), want_sorted);
        assert_eq!(e.get_many(Table::Key, &[]).unwrap(), Vec::<Option<Vec<u8>>>::new());
    }
}

/// `visit_many` visits present keys once per mention, in ascending key order, with the caller's
/// index and the stored value.
#[test]
fn visit_many_visits_in_key_order() {
    for (e, _dir) in engines() {
        let mut b = WriteBatch::new();
        for i in (0u32..100).filter(|i| i % 3 != 0) {
            b.put(Table::Key, i.to_be_bytes().to_vec(), format!("v{i}").into_bytes());
        }
        e.write(b, false).unwrap();
        let ask: Vec<u32> = vec![98, 1, 3, 61, 1, 0, 97, 500, 2];
        let keys: Vec<Vec<u8>> = ask.iter().map(|i| i.to_be_bytes().to_vec()).collect();
        let mut seen = Vec::new();
        e.visit_many(Table::Key, &keys, &mut |i, v| seen.push((i, v.to_vec()))).unwrap();
        let mut want: Vec<(usize, Vec<u8>)> = ask
            .iter()
            .enumerate()
            .filter(|(_, k)| **k < 100 && *k % 3 != 0)
            .map(|(i, k)| (i, format!("v{k}").into_bytes()))
            .collect();
        want.sort_by_key(|(i, _)| ask[*i]);
        assert_eq!(seen, want);
    }
}

#[test]
fn batch_applies_in_order() {
    for (e, _dir) in engines() {
        let mut b = WriteBatch::new();
        b.put(Table::Key, b"k".to_vec(), b"1".to_vec());
        b.delete(Table::Key, b"k".to_vec());
        b.put(Table::Key, b"k".to_vec(), b"2".to_vec());
        e.write(b, false).unwrap();
        assert_eq!(e.get(Table::Key, b"k").unwrap(), Some(b"2".to_vec()));
    }
}

#[test]
fn scans_are_ordered_and_bounded() {
    for (e, _dir) in engines() {
        let mut b = WriteBatch::new();
        for k in [&b"b"[..], b"a", b"c\x00", b"c", b"d", b"\xff"] {
            b.put(Table::Key, k.to_vec(), k.to_vec());
        }
        e.write(b, false).unwrap();
        let all: Vec<Vec<u8>> =
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"c\x00".to_vec(), b"d".to_vec(), b"\xff".to_vec()];
        assert_eq!(keys(&*e, Table::Key, b"", b""), all);
        assert_eq!(keys(&*e, Table::Key, b"b", b"d"), all[1..4].to_vec());
        assert_eq!(keys(&*e, Table::Key, b"d", b"b"), Vec::<Vec<u8>>::new());
        assert_eq!(keys(&*e, Table::Key, b"c\x00", b""), all[3..].to_vec());
        let mut first_two = Vec::new();
        e.scan(Table::Key, b"", b"", &mut |k, _| {
            first_two.push(k.to_vec());
            first_two.len() < 2
        })
        .unwrap();
        assert_eq!(first_two, all[..2].to_vec());
    }
}

#[test]
fn delete_range_bounded_and_open() {
    for (e, _dir) in engines() {
        let mut b = WriteBatch::new();
        for k in [b"a", b"b", b"c", b"d", b"e"] {
            b.put(Table::RaftLog, k.to_vec(), b"v".to_vec());
        }
        b.put(Table::Key, b"c".to_vec(), b"kept".to_vec());
        e.write(b, false).unwrap();
        let mut b = WriteBatch::new();
        b.delete_range(Table::RaftLog, b"b".to_vec(), b"d".to_vec());
        e.write(b, false).unwrap();
        assert_eq!(keys(&*e, Table::RaftLog, b"", b""), vec![b"a".to_vec(), b"d".to_vec(), b"e".to_vec()]);
        let mut b = WriteBatch::new();
        b.delete_range(Table::RaftLog, b"d".to_vec(), Vec::new());
        e.write(b, false).unwrap();
        assert_eq!(keys(&*e, Table::RaftLog, b"", b""), vec![b"a".to_vec()]);
        assert_eq!(e.get(Table::Key, b"c").unwrap(), Some(b"kept".to_vec()));
    }
}

#[test]
fn rocksdb_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = RocksEngine::open(dir.path(), Default::default()).unwrap();
        let mut b = WriteBatch::new();
        b.put(Table::Members, b"m".to_vec(), b"1".to_vec());
        e.write(b, true).unwrap();
    }
    let e = RocksEngine::open(dir.path(), Default::default()).unwrap();
    assert_eq!(e.get(Table::Members, b"m").unwrap(), Some(b"1".to_vec()));
    assert!(e.size_bytes() > 0);
}
