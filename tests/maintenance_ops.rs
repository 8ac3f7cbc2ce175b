//! Maintenance operations through the `etcd-client` crate: HashKV equal to etcd's after the same
//! history, Hash equal across members, the space quota and its NOSPACE alarm, Defragment.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Member};
use etcd_client::{AlarmAction, AlarmType, Client, CompactionOptions};

fn err(e: etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        other => format!("{other}"),
    }
}

/// The same history on both servers, then HashKV at several revisions, before and after a
/// compaction, plus its errors.
async fn hashes(mut c: Client) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")] {
        c.put(k, v, None).await.unwrap();
    }
    c.delete("b", None).await.unwrap();
    c.put("b", "5", None).await.unwrap();
    c.delete("c", None).await.unwrap();
    let mut record = |c: &mut Client, label: &str, r: Result<etcd_client::HashKvResponse, etcd_client::Error>| {
        let _ = c;
        out.push(match r {
            Ok(h) => format!(
                "{label}: hash {} compact {} rev {}",
                h.hash(),
                h.compact_version(),
                h.header().unwrap().revision()
            ),
            Err(e) => format!("{label}: {}", err(e)),
        });
    };
    for rev in [0, 3, 5, 8] {
        let r = c.hash_kv(rev).await;
        record(&mut c, &format!("rev {rev}"), r);
    }
    c.compact(5, Some(CompactionOptions::new().with_physical())).await.unwrap();
    for rev in [0, 5, 6, 99] {
        let r = c.hash_kv(rev).await;
        record(&mut c, &format!("compacted at 5, rev {rev}"), r);
    }
    c.compact(8, None).await.unwrap();
    let r = c.hash_kv(0).await;
    record(&mut c, "compacted at 8", r);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hash_kv_equals_etcds_after_the_same_history() {
    let ms = Member::start(&["--storage-engine", "memory"]);
    let ours = hashes(ms.client().await).await;
    let etcd = Member::start_etcd(&[]);
    let theirs = hashes(etcd.client().await).await;
    assert_eq!(ours, theirs, "MetaStore (left) and etcd (right) differ");
}

#[tokio::test(flavor = "multi_thread")]
async fn hash_is_equal_on_every_member_at_the_same_applied_index() {
    let cluster = Cluster::start(3);
    let mut c = cluster.members[0].client().await;
    for i in 0..50 {
        c.put(format!("k{i}"), format!("v{i}"), None).await.unwrap();
    }
    c.delete("k1", None).await.unwrap();
    c.compact(20, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut seen = Vec::new();
        for m in &cluster.members {
            let mut mc = m.client().await;
            let status = mc.status().await.unwrap();
            seen.push((status.raft_index(), mc.hash().await.unwrap().hash()));
        }
        let same_index = seen.iter().all(|s| s.0 == seen[0].0);
        if same_index {
            assert!(seen.iter().all(|s| s.1 == seen[0].1), "hashes differ at one applied index: {seen:?}");
            break;
        }
        assert!(Instant::now() < deadline, "members never reached one applied index: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quota_raises_nospace_until_disarmed_and_survives_restart() {
    let mut m = Member::start(&["--quota-backend-bytes", "200000"]);
    let mut c = m.client().await;
    c.put("small", "x", None).await.unwrap();
    let big = "b".repeat(16 * 1024);
    let mut refused = None;
    for i in 0..100 {
        if let Err(e) = c.put(format!("big{i}"), big.clone(), None).await {
            refused = Some(err(e));
            break;
        }
    }
    assert_eq!(refused.as_deref(), Some("etcdserver: mvcc: database space exceeded"));
    let alarms = c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
    assert_eq!(alarms.alarms().len(), 1);
    assert_eq!(alarms.alarms()[0].alarm(), AlarmType::Nospace);
    let health = common::http_get(&m.endpoint().replace("http://", ""), "/health").unwrap();
    assert!(health.contains(r#"{"health":"false"}"#), "{health}");
    // Writes that grow the store are refused; reads and deletes go on.
    assert_eq!(err(c.put("small", "y", None).await.unwrap_err()), "etcdserver: mvcc: database space exceeded");
    assert_eq!(err(c.lease_grant(60, None).await.unwrap_err()), "etcdserver: mvcc: database space exceeded");
    assert_eq!(c.get("small", None).await.unwrap().kvs()[0].value(), b"x");
    c.delete("big0", None).await.unwrap();

    m.kill();
    // `/health` (what `spawn` waits for) answers unhealthy while an alarm is active, as etcd's.
    m.spawn_nowait();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut c = loop {
        if let Ok(mut c) = Client::connect([m.endpoint()], None).await {
            if c.status().await.is_ok_and(|s| s.leader() != 0) {
                break c;
            }
        }
        assert!(Instant::now() < deadline, "the member did not serve after a restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let alarms = c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
    assert_eq!(alarms.alarms().len(), 1, "the alarm survives a restart");

    let rev = c.get("small", None).await.unwrap().header().unwrap().revision();
    c.compact(rev, Some(CompactionOptions::new().with_physical())).await.unwrap();
    c.delete("big", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    c.defragment().await.unwrap();
    let member = alarms.alarms()[0].member_id();
    let mut opts = etcd_client::AlarmOptions::new();
    opts.with_member(member);
    let cleared = c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(opts)).await.unwrap();
    assert_eq!(cleared.alarms().len(), 1);
    assert!(c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap().alarms().is_empty());
    c.put("small", "z", None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn defragment_reclaims_space_and_keeps_the_data() {
    let m = Member::start(&[]);
    let mut c = m.client().await;
    let value = "v".repeat(1024);
    for i in 0..2000 {
        c.put(format!("k{}", i % 10), value.clone(), None).await.unwrap();
    }
    let rev = c.get("k0", None).await.unwrap().header().unwrap().revision();
    c.compact(rev, Some(CompactionOptions::new().with_physical())).await.unwrap();
    let before = c.status().await.unwrap().db_size();
    c.defragment().await.unwrap();
    let after = c.status().await.unwrap().db_size();
    assert!(after < before, "defragment reclaimed nothing: {before} -> {after}");
    assert_eq!(c.get("k", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap().count(), 10);
}
