//! etcd's corruption checks: members compare HashKV over the peer API. The failpoint
//! `hashkv-mismatch` makes one member's HashKV differ, as a corrupt store would.

mod common;

use std::time::{Duration, Instant};

use common::{ok, wait_leader, Cluster};
use etcd_client::{AlarmAction, AlarmType};

const CORRUPT: (&str, &str) = ("METASTORE_FAILPOINTS", "hashkv-mismatch=1000000");

/// The leader's periodic check sees a follower's different hash and raises CORRUPT; writes are
/// then refused and `etcdctl alarm list` shows it.
#[tokio::test(flavor = "multi_thread")]
async fn periodic_check_raises_the_corrupt_alarm() {
    let mut cluster = Cluster::start_with(3, &["--experimental-corrupt-check-time=300ms"]);
    let leader = wait_leader(&cluster, None).await;
    let mut c = cluster.members[leader].client().await;
    for i in 0..5 {
        c.put(format!("k{i}"), "v", None).await.unwrap();
    }
    // Equal members: checks complete and raise nothing.
    let start = Instant::now();
    while cluster.members[leader].log().matches("finished peer corruption check").count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(20), "no check ran:\n{}", cluster.members[leader].log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap().alarms().is_empty());
    let follower = (leader + 1) % 3;
    let m = &mut cluster.members[follower];
    m.kill();
    m.env.push((CORRUPT.0.into(), CORRUPT.1.into()));
    // Not `spawn`: once the alarm is raised `/health` is false, which readiness polls.
    m.spawn_nowait();
    let start = Instant::now();
    loop {
        let alarms = c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
        if alarms.alarms().iter().any(|a| a.alarm() == AlarmType::Corrupt) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no CORRUPT alarm; leader log:\n{}",
            cluster.members[leader].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = ok(cluster.members[leader].etcdctl(&["alarm", "list"]));
    assert!(listed.contains("alarm:CORRUPT"), "{listed}");
    let err = c.put("k", "v", None).await.unwrap_err();
    assert!(err.to_string().contains("etcdserver: corrupt cluster"), "{err}");
}

/// A member restarting with `--experimental-initial-corrupt-check` whose HashKV differs from its
/// peers' refuses to start; with the same history it starts.
#[tokio::test(flavor = "multi_thread")]
async fn initial_check_refuses_to_start_on_a_mismatch() {
    let mut cluster = Cluster::start(3);
    let leader = wait_leader(&cluster, None).await;
    let mut c = cluster.members[leader].client().await;
    for i in 0..5 {
        c.put(format!("k{i}"), "v", None).await.unwrap();
    }
    let follower = (leader + 1) % 3;
    let m = &mut cluster.members[follower];
    m.kill();
    m.args.push("--experimental-initial-corrupt-check".into());
    m.env.push((CORRUPT.0.into(), CORRUPT.1.into()));
    m.spawn_nowait();
    let status = m.child.as_mut().unwrap().wait().unwrap();
    assert!(!status.success());
    assert!(m.log().contains("found data inconsistency with peers"), "{}", m.log());
    m.child = None;
    m.env.clear();
    m.spawn();
    assert!(m.log().contains("succeeded on initial corruption checking: no corruption"), "{}", m.log());
}
