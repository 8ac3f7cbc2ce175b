//! The reader against a file real etcd 3.4.23 wrote (`testdata/etcd-3.4.23.db`: `etcdctl snapshot
//! save` after puts, a delete, a lease and `compaction 3`, its sha256 trailer included), and the
//! writer against the reader. That stock etcd tooling opens the writer's files is checked by the
//! process tests (`tests/snapshot.rs`).

use std::io::Cursor;

use super::*;

const GOLDEN: &[u8] = include_bytes!("testdata/etcd-3.4.23.db");

fn entries(db: &Db, bucket: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let found = db
        .for_each(bucket, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
    assert!(found, "bucket {:?} missing", String::from_utf8_lossy(bucket));
    out
}

#[test]
fn reads_a_snapshot_written_by_etcd() {
    let db = Db::open(GOLDEN[..GOLDEN.len() - 32].to_vec()).unwrap();
    let names: Vec<String> = db.buckets().unwrap().iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
    assert_eq!(
        names,
        ["alarm", "auth", "authRoles", "authUsers", "cluster", "key", "lease", "members", "members_removed", "meta"]
    );
    let keys = entries(&db, b"key");
    assert_eq!(keys.len(), 10, "revisions 3..=12");
    assert_eq!(keys[0].0, [&3u64.to_be_bytes()[..], b"_", &0u64.to_be_bytes()].concat());
    assert_eq!(keys[2].0.last(), Some(&b't'), "revision 5 deletes a");
    let meta = entries(&db, b"meta");
    assert_eq!(meta[0], (b"consistent_index".to_vec(), 17u64.to_be_bytes().to_vec()));
    assert_eq!(entries(&db, b"cluster"), [(b"clusterVersion".to_vec(), b"3.4.0".to_vec())]);
    assert_eq!(entries(&db, b"lease").len(), 1);
    assert!(!db.for_each(b"nope", &mut |_, _| Ok(())).unwrap());
}

fn write(buckets: &[(&[u8], Entries)]) -> Vec<u8> {
    let mut w = Writer::new(Cursor::new(Vec::new())).unwrap();
    for (name, kvs) in buckets {
        let mut b = w.bucket(name);
        for (k, v) in kvs {
            b.put(k, v).unwrap();
        }
        b.finish().unwrap();
    }
    let (out, len) = w.finish().unwrap();
    let bytes = out.into_inner();
    assert_eq!(bytes.len() as u64, len);
    assert_eq!(len % PAGE_SIZE as u64, 0);
    bytes
}

#[test]
fn written_files_read_back_with_branches_and_overflow() {
    let many: Vec<(Vec<u8>, Vec<u8>)> =
        (0..20_000u32).map(|i| (format!("k{i:08}").into_bytes(), vec![i as u8; (i % 97) as usize])).collect();
    let big: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"a".to_vec(), vec![1; 3 * PAGE_SIZE + 5]),
        (b"b".to_vec(), b"small".to_vec()),
        (b"c".to_vec(), vec![2; 100_000]),
    ];
    let bytes = write(&[(b"many", many.clone()), (b"empty", Vec::new()), (b"big", big.clone())]);
    let db = Db::open(bytes).unwrap();
    assert_eq!(db.buckets().unwrap(), [b"big".to_vec(), b"empty".to_vec(), b"many".to_vec()]);
    assert_eq!(entries(&db, b"many"), many);
    assert_eq!(entries(&db, b"big"), big);
    assert!(entries(&db, b"empty").is_empty());
}

#[test]
fn the_writer_rejects_unsorted_keys_and_the_reader_corrupt_metas() {
    let mut w = Writer::new(Cursor::new(Vec::new())).unwrap();
    let mut b = w.bucket(b"x");
    b.put(b"b", b"").unwrap();
    assert!(b.put(b"a", b"").is_err());
    assert!(b.put(b"b", b"").is_err());

    let mut bytes = write(&[(b"x", vec![(b"k".to_vec(), b"v".to_vec())])]);
    bytes[PAGE_HEADER + 20] ^= 1; // page 0's meta: checksum fails, page 1's is used
    let db = Db::open(bytes.clone()).unwrap();
    assert_eq!(entries(&db, b"x").len(), 1);
    bytes[PAGE_SIZE + PAGE_HEADER + 20] ^= 1;
    assert!(Db::open(bytes).is_err(), "no valid meta left");
    assert!(Db::open(b"not a bolt file".to_vec()).is_err());
}
