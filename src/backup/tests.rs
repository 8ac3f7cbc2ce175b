use std::io::Cursor;
use std::sync::Arc;

use prost::Message as _;

use super::*;
use crate::mvcc::KvStore;
use crate::proto::metastorepb::{LeaseRecord, MemberRecord};
use crate::storage::schema::{decode_u64, u64_key, META_APPLIED_INDEX, META_FINISHED_COMPACT, META_SCHEDULED_COMPACT};
use crate::storage::{scan_all, Engine, MemoryEngine, Table, WriteBatch};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bbolt/testdata/etcd-3.4.23.db");

/// A restore of `db` into a fresh memory engine.
fn restored(db: &crate::bbolt::Db) -> Arc<dyn Engine> {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    restore(db, &mut |batch| engine.write(batch, false)).unwrap();
    engine
}

#[test]
fn status_of_an_etcd_snapshot_matches_etcdctl() {
    let db = open_file(GOLDEN.as_ref(), false).unwrap();
    // `etcdctl snapshot status -w json` on the same file.
    assert_eq!(
        status(&db, 20480).unwrap(),
        Status { hash: 2951326202, revision: 12, total_key: 17, total_size: 20480 }
    );
}

#[test]
fn an_etcd_snapshot_restores_keys_leases_and_compaction() {
    let engine = restored(&open_file(GOLDEN.as_ref(), false).unwrap());
    let meta = |k: &[u8]| engine.get(Table::Meta, k).unwrap().as_deref().and_then(decode_u64);
    assert_eq!((meta(META_SCHEDULED_COMPACT), meta(META_FINISHED_COMPACT)), (Some(3), Some(3)));
    assert_eq!(meta(META_APPLIED_INDEX), None, "the new cluster's log starts afresh");
    let leases = scan_all(&*engine, Table::Lease, b"", b"").unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(LeaseRecord::decode(&*leases[0].1).unwrap().ttl, 600);

    let kv = KvStore::open(engine).unwrap();
    let view = kv.read();
    assert_eq!((view.rev(), view.compact_rev()), (12, 3));
}

#[test]
fn a_metastore_backup_reads_back_as_the_same_tables() {
    let source = MemoryEngine::new();
    let mut b = WriteBatch::new();
    for rev in 1..=300u64 {
        let key = [&rev.to_be_bytes()[..], b"_", &0u64.to_be_bytes()].concat();
        b.put(Table::Key, key, vec![rev as u8; 50]);
    }
    let lease = LeaseRecord { id: 7, ttl: 60, ..Default::default() };
    b.put(Table::Lease, u64_key(7).to_vec(), lease.encode_to_vec());
    let member =
        MemberRecord { id: 0xabc, name: "n1".into(), peer_urls: vec!["http://p".into()], ..Default::default() };
    b.put(Table::Members, u64_key(0xabc).to_vec(), member.encode_to_vec());
    b.put(Table::Meta, META_APPLIED_INDEX, 42u64.to_be_bytes());
    b.put(Table::Meta, META_SCHEDULED_COMPACT, 5u64.to_be_bytes());
    b.put(Table::Meta, META_FINISHED_COMPACT, 5u64.to_be_bytes());
    source.write(b, true).unwrap();

    let mut bytes = Vec::new();
    source
        .with_snapshot(&mut |snap| {
            bytes = write(snap, Cursor::new(Vec::new()))?.0.into_inner();
            Ok(())
        })
        .unwrap();
    let db = crate::bbolt::Db::open(bytes).unwrap();
    let names: Vec<String> = db.buckets().unwrap().iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect();
    let etcd_buckets =
        ["alarm", "auth", "authRoles", "authUsers", "cluster", "key", "lease", "members", "members_removed", "meta"];
    assert_eq!(names, etcd_buckets);
    let mut members = Vec::new();
    db.for_each(MEMBERS, &mut |k, v| {
        members.push((String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()));
        Ok(())
    })
    .unwrap();
    assert_eq!(members, [("abc".into(), r#"{"id":2748,"name":"n1","peerURLs":["http://p"]}"#.into())]);
    assert_eq!(status(&db, 0).unwrap().revision, 300);

    let engine = restored(&db);
    for table in [Table::Key, Table::Lease] {
        assert_eq!(scan_all(&*engine, table, b"", b"").unwrap(), scan_all(&source, table, b"", b"").unwrap());
    }
    assert_eq!(engine.get(Table::Meta, META_FINISHED_COMPACT).unwrap(), Some(5u64.to_be_bytes().to_vec()));
}

#[test]
fn hash_checks_follow_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(GOLDEN).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let bad = dir.path().join("bad.db");
    std::fs::write(&bad, &bytes).unwrap();
    assert!(open_file(&bad, false).unwrap_err().to_string().contains("expected sha256"));
    assert!(open_file(&bad, true).is_ok());
    let bare = dir.path().join("bare.db");
    std::fs::write(&bare, &bytes[..bytes.len() - SHA256_LEN]).unwrap();
    assert!(open_file(&bare, false).unwrap_err().to_string().contains("missing hash"));
    assert!(open_file(&bare, true).is_ok());
}
