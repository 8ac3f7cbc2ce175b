//! Backups in etcd's format, both directions, with stock etcd 3.4.23 tooling on the other side:
//! a MetaStore backup passes `etcdctl snapshot status`, restores with `etcdctl snapshot restore`
//! and real etcd serves the same keys at the same revisions; an etcd backup passes `metastore
//! snapshot status` (same figures as etcdctl) and `metastore snapshot restore`, and MetaStore
//! serves it; and a MetaStore backup restores into MetaStore.

mod common;

use common::{etcdctl, ok, Member, BIN, ETCD_BIN};
use etcd_client::{Client, GetOptions, PutOptions};

/// Overwrites, a delete, a lease with a key, a value spanning pages, enough keys for branch
/// pages, a compaction; returns the compaction revision.
async fn workload(c: &mut Client) -> i64 {
    c.put("foo", "bar", None).await.unwrap();
    c.put("foo", "bar2", None).await.unwrap();
    c.put("gone", "x", None).await.unwrap();
    let compact = c.delete("gone", None).await.unwrap().header().unwrap().revision();
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put("leased", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    c.put("big", vec![b'x'; 10_000], None).await.unwrap();
    for i in 0..300 {
        c.put(format!("k{i:04}"), format!("value {i}"), None).await.unwrap();
    }
    c.compact(compact, None).await.unwrap();
    c.put("after", "compact", None).await.unwrap();
    compact
}

/// key, value, create, mod, version, lease.
type Row = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

/// Everything a client can see of the workload's result.
#[derive(Debug, PartialEq)]
struct Seen {
    revision: i64,
    /// Every key now and at the compaction revision.
    now: Vec<Row>,
    at_compaction: Vec<Row>,
    below_compaction_fails: bool,
    /// id, granted TTL, attached keys.
    leases: Vec<(i64, i64, Vec<Vec<u8>>)>,
}

async fn seen(c: &mut Client, compact: i64) -> Seen {
    let all = |rev: i64| GetOptions::new().with_all_keys().with_revision(rev);
    let rows = |r: etcd_client::GetResponse| {
        r.kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key().to_vec(),
                    kv.value().to_vec(),
                    kv.create_revision(),
                    kv.mod_revision(),
                    kv.version(),
                    kv.lease(),
                )
            })
            .collect::<Vec<_>>()
    };
    let now = c.get("", Some(all(0))).await.unwrap();
    let revision = now.header().unwrap().revision();
    let at_compaction = rows(c.get("", Some(all(compact))).await.unwrap());
    let below_compaction_fails = c.get("", Some(all(compact - 1))).await.is_err();
    let mut leases = Vec::new();
    for l in c.leases().await.unwrap().leases() {
        let ttl =
            c.lease_time_to_live(l.id(), Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
        leases.push((l.id(), ttl.granted_ttl(), ttl.keys().to_vec()));
    }
    Seen { revision, now: rows(now), at_compaction, below_compaction_fails, leases }
}

fn status_json(out: String) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("status JSON {out:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn metastore_backup_restores_into_real_etcd() {
    let ms = Member::start(&[]);
    let mut c = ms.client().await;
    let compact = workload(&mut c).await;
    let before = seen(&mut c, compact).await;
    assert!(before.below_compaction_fails && before.leases.len() == 1 && before.now.len() == 304);

    // The stream as etcd sends it: 32 KiB chunks counting down, then the sha256 of the rest.
    let mut stream = c.snapshot().await.unwrap();
    let mut messages = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        messages.push((m.remaining_bytes(), m.blob().to_vec()));
    }
    let ((last_remaining, sha), chunks) = messages.split_last().unwrap();
    let db: Vec<u8> = chunks.iter().flat_map(|(_, b)| b.clone()).collect();
    let mut remaining = db.len() as u64;
    for (r, blob) in chunks {
        assert!(blob.len() <= 32 * 1024);
        remaining -= blob.len() as u64;
        assert_eq!(*r, remaining);
    }
    assert_eq!(*last_remaining, 0);
    assert_eq!(sha.as_slice(), ring::digest::digest(&ring::digest::SHA256, &db).as_ref());

    // Stock etcdctl: save, status, restore; then real etcd serves the same.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metastore.db").display().to_string();
    ok(ms.etcdctl(&["snapshot", "save", &file]));
    let status = status_json(ok(etcdctl(&ms.endpoint(), &["snapshot", "status", &file, "-w", "json"], None)));
    assert_eq!(status["revision"], before.revision);
    assert_eq!(status["totalSize"].as_u64().unwrap() as usize, db.len());

    let mut etcd = Member::prepare(ETCD_BIN);
    let data_dir = etcd.data_dir.display().to_string();
    ok(etcdctl(
        &ms.endpoint(),
        &[
            "snapshot",
            "restore",
            &file,
            "--name",
            &etcd.name,
            "--data-dir",
            &data_dir,
            "--initial-cluster",
            &etcd.initial_cluster,
            "--initial-advertise-peer-urls",
            &etcd.peer_url,
        ],
        None,
    ));
    etcd.spawn();
    let mut e = etcd.client().await;
    assert_eq!(seen(&mut e, compact).await, before);

    // And back into MetaStore: backup, fresh data dir, restore, same state.
    let mut again = Member::prepare(BIN);
    ok(metastore_restore(&file, &again));
    again.spawn();
    assert_eq!(seen(&mut again.client().await, compact).await, before);
}

/// `metastore snapshot restore FILE` for `m`'s (not yet existing) data dir and cluster.
fn metastore_restore(file: &str, m: &Member) -> std::process::Output {
    let data_dir = m.data_dir.display().to_string();
    std::process::Command::new(BIN)
        .args(["snapshot", "restore", file, "--name", &m.name, "--data-dir", &data_dir])
        .args(["--initial-cluster", &m.initial_cluster, "--initial-advertise-peer-urls", &m.peer_url])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_backup_restores_into_metastore() {
    let etcd = Member::start_etcd(&[]);
    let mut c = etcd.client().await;
    let compact = workload(&mut c).await;
    let before = seen(&mut c, compact).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etcd.db").display().to_string();
    ok(etcd.etcdctl(&["snapshot", "save", &file]));

    let metastore = |args: &[&str]| std::process::Command::new(BIN).arg("snapshot").args(args).output().unwrap();
    let theirs = status_json(ok(etcd.etcdctl(&["snapshot", "status", &file, "-w", "json"])));
    let ours = status_json(ok(metastore(&["status", &file, "-w", "json"])));
    assert_eq!(ours, theirs, "same hash, revision, key count and size as etcdctl");

    let mut ms = Member::prepare(BIN);
    let mut tampered = std::fs::read(&file).unwrap();
    tampered[5000] ^= 1;
    let tampered_file = dir.path().join("tampered.db").display().to_string();
    std::fs::write(&tampered_file, tampered).unwrap();
    let refused = metastore_restore(&tampered_file, &ms);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("expected sha256"));
    ok(metastore_restore(&file, &ms));
    ms.spawn();
    let mut m = ms.client().await;
    assert_eq!(seen(&mut m, compact).await, before);
    let next = m.put("new", "x", None).await.unwrap().header().unwrap().revision();
    assert_eq!(next, before.revision + 1, "the restored store continues at its revision");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_is_one_point_in_time_while_writes_go_on() {
    let ms = Member::start(&[]);
    let mut c = ms.client().await;
    let value = vec![b'v'; 1000];
    for batch in 0..100 {
        let puts: Vec<_> =
            (0..100).map(|i| etcd_client::TxnOp::put(format!("bulk{batch:03}{i:03}"), value.clone(), None)).collect();
        c.txn(etcd_client::Txn::new().and_then(puts)).await.unwrap();
    }
    // A writer runs all along; the backup is streamed meanwhile.
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (flag, mut w) = (writing.clone(), c.clone());
    let writer = tokio::spawn(async move {
        let mut last = 0;
        while flag.load(std::sync::atomic::Ordering::Relaxed) {
            last = w.put("counter", "x", None).await.unwrap().header().unwrap().revision();
        }
        last
    });
    let mut stream = c.snapshot().await.unwrap();
    let first = c.get("counter", None).await.unwrap().header().unwrap().revision();
    let mut chunks = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        chunks.push(m.blob().to_vec());
    }
    let messages = chunks.len();
    chunks.pop(); // the sha256
    let db: Vec<u8> = chunks.concat();
    let during = c.get("counter", None).await.unwrap().header().unwrap().revision();
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let last_write = writer.await.unwrap();
    assert!(messages > 300, "a 10 MB database in 32 KiB chunks");
    assert!(during > first, "writes went on while the backup streamed");

    // Every revision up to the backup's is in it, none after: one point in time.
    let db = metastore::bbolt::Db::open(db).unwrap();
    let mut revisions = Vec::new();
    db.for_each(b"key", &mut |k, _| {
        revisions.push(u64::from_be_bytes(k[..8].try_into().unwrap()));
        Ok(())
    })
    .unwrap();
    revisions.dedup(); // a txn's puts share their main revision
    let top = *revisions.last().unwrap();
    assert_eq!(revisions, (2..=top).collect::<Vec<_>>());
    assert!(top as i64 <= last_write);
}
