//! Disaster recovery as an operator does it: a 3-member cluster loses two members for good
//! (SIGKILL, data dirs wiped), the survivor restarts with `--force-new-cluster` as a one-member
//! cluster holding every acknowledged write, then grows again with `member add`.
//! Also `--wal-dir`: the raft WAL in its own directory, across a SIGKILL.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{client, etcdctl, ok, wait_leader, Cluster, Member};
use etcd_client::GetOptions;

const DEADLINE: Duration = Duration::from_secs(30);

/// Every key with its value, create and mod revision and version, read locally on `m`, and the
/// revision it was read at.
async fn local_state(m: &Member) -> (i64, BTreeMap<String, (String, i64, i64, i64)>) {
    let mut c = client(m).await;
    let resp = c.get("", Some(GetOptions::new().with_all_keys().with_serializable())).await.unwrap();
    let rev = resp.header().unwrap().revision();
    let kvs = resp
        .kvs()
        .iter()
        .map(|kv| {
            let v = (kv.value_str().unwrap().to_string(), kv.create_revision(), kv.mod_revision(), kv.version());
            (kv.key_str().unwrap().to_string(), v)
        })
        .collect();
    (rev, kvs)
}

/// Waits until member `m` has applied revision `rev` (read locally).
async fn wait_revision(m: &Member, rev: i64) {
    let start = Instant::now();
    while local_state(m).await.0 < rev {
        assert!(start.elapsed() < DEADLINE, "{} never reached revision {rev}", m.endpoint());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rows of `etcdctl member list` (one per member).
fn member_rows(endpoint: &str) -> Vec<String> {
    ok(etcdctl(endpoint, &["member", "list"], None)).lines().map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn force_new_cluster_recovers_the_survivor_of_a_lost_quorum_and_grows_again() {
    let mut c = Cluster::start(3);
    let leader = wait_leader(&c, None).await;
    let mut cl = client(&c.members[leader]).await;
    // History with overwrites and deletes, so revisions and versions matter.
    let mut last = 0;
    for i in 0..150 {
        last = cl.put(format!("k{:03}", i % 100), format!("v{i}"), None).await.unwrap().header().unwrap().revision();
    }
    for i in 0..10 {
        last = cl.delete(format!("k{i:03}"), None).await.unwrap().header().unwrap().revision();
    }
    let before_hash = cl.hash_kv(last).await.unwrap().hash();
    // A follower survives: it holds every acknowledged write once it applied the last one.
    let survivor = (leader + 1) % 3;
    wait_revision(&c.members[survivor], last).await;
    let (_, expected) = local_state(&c.members[survivor]).await;
    assert_eq!(expected.len(), 90);
    for (i, m) in c.members.iter_mut().enumerate().filter(|(i, _)| *i != survivor) {
        m.kill();
        std::fs::remove_dir_all(&m.data_dir).unwrap_or_else(|e| panic!("wipe m{i}: {e}"));
    }
    // Without a quorum the survivor cannot serve writes; with --force-new-cluster it does.
    let s = &mut c.members[survivor];
    s.kill();
    s.args.push("--force-new-cluster".into());
    s.spawn();
    assert!(s.log().contains("forcing restart of member as a new one-member cluster"), "{}", s.log());
    let endpoint = s.endpoint();
    assert_eq!(member_rows(&endpoint).len(), 1, "{:?}", member_rows(&endpoint));
    let mut sc = client(s).await;
    let (rev, got) = local_state(s).await;
    assert_eq!(got, expected, "every acknowledged write, at its revisions");
    assert_eq!(rev, last);
    assert_eq!(sc.hash_kv(last).await.unwrap().hash(), before_hash, "HashKV at the last revision");
    let after = sc.put("after-recovery", "yes", None).await.unwrap().header().unwrap().revision();
    assert_eq!(after, last + 1);
    // Restarting with the flag again (or without it) changes nothing.
    s.kill();
    s.spawn();
    assert_eq!(member_rows(&endpoint).len(), 1);
    s.kill();
    s.args.pop();
    s.spawn();
    assert_eq!(member_rows(&endpoint).len(), 1);
    assert_eq!(local_state(s).await.0, after);
    // The one-member cluster grows again: a fresh member is added, joins and catches up.
    let mut joiner = c.prepare_joiner("m3");
    let added = ok(etcdctl(&endpoint, &["member", "add", "m3", &format!("--peer-urls={}", joiner.peer_url)], None));
    assert!(added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{added}");
    joiner.spawn();
    wait_revision(&joiner, after).await;
    let (_, on_joiner) = local_state(&joiner).await;
    let (_, on_survivor) = local_state(&c.members[survivor]).await;
    assert_eq!(on_joiner, on_survivor);
    let mut jc = client(&joiner).await;
    assert_eq!(
        jc.hash_kv(after).await.unwrap().hash(),
        client(&c.members[survivor]).await.hash_kv(after).await.unwrap().hash()
    );
    let rows = member_rows(&endpoint);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.contains(", started, ")), "{rows:?}");
    // Two voters now: writes need both, and work.
    jc.put("after-growth", "yes", None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_write_ahead_log_lives_in_wal_dir_and_survives_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let wal = tmp.path().join("wal-disk").join("wal");
    let wal_arg = wal.display().to_string();
    let mut m = Member::start(&["--wal-dir", &wal_arg]);
    let mut c = client(&m).await;
    let mut last = 0;
    for i in 0..200 {
        last = c.put(format!("k{i}"), format!("v{i}"), None).await.unwrap().header().unwrap().revision();
    }
    let files = |dir: &std::path::Path, suffix: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.ends_with(suffix)).collect())
            .unwrap_or_default()
    };
    assert!(!files(&wal, ".wal").is_empty(), "the raft WAL's segments are in --wal-dir");
    assert!(files(&m.data_dir.join("member").join("wal"), ".wal").is_empty(), "and not in the data dir");
    assert!(files(&wal, ".log").is_empty(), "RocksDB's own log stays with its tables");
    let (_, before) = local_state(&m).await;
    m.kill();
    m.spawn();
    let (rev, after) = local_state(&m).await;
    assert_eq!((rev, &after), (last, &before), "every acknowledged write after a SIGKILL");
    // The data dir remembers its WAL dir: a start without it (or with another) is refused
    // instead of opening the database without its log.
    m.kill();
    m.args.clear();
    m.spawn_nowait();
    let refused = m.try_wait_ready().expect_err("a start without --wal-dir is refused");
    assert!(refused.contains("start it with --wal-dir"), "{refused}");
}
