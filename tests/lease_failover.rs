//! Leases where clients meet them in production: kept alive through followers, across a leader
//! failure, revoked while keep-alives are in flight, and expired while a revoke proposal is lost.

mod common;

use std::time::{Duration, Instant};

use common::{client, etcdctl, ok, wait_leader, Cluster, Member};
use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};

const WAIT: Duration = Duration::from_secs(30);

/// One keep-alive on an open stream; its TTL (0 once the lease is gone).
async fn keep_alive_once(keeper: &mut LeaseKeeper, stream: &mut LeaseKeepAliveStream) -> i64 {
    keeper.keep_alive().await.expect("send keep-alive");
    let resp = tokio::time::timeout(WAIT, stream.message()).await.expect("keep-alive answered in time");
    resp.expect("stream open").expect("a response").ttl()
}

/// A client pinned to a follower keeps its lease: keep-alives and time-to-live are forwarded to
/// the leader, with etcdctl and with a long-lived stream that stays open while the leader dies.
#[tokio::test]
async fn lease_keep_alive_through_a_follower_survives_the_leaders_death() {
    let mut c = Cluster::start(3);
    let leader = wait_leader(&c, None).await;
    let follower = (leader + 1) % 3;
    let mut fc = client(&c.members[follower]).await;
    let lease = fc.lease_grant(5, None).await.unwrap().id();
    fc.put("held", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();

    let out = ok(etcdctl(
        &c.members[follower].endpoint(),
        &["lease", "keep-alive", "--once", &format!("{lease:016x}")],
        None,
    ));
    assert_eq!(out, format!("lease {lease:016x} keepalived with TTL(5)\n"));
    let ttl = fc.lease_time_to_live(lease, None).await.unwrap();
    assert!((1..=5).contains(&ttl.ttl()), "ttl {}", ttl.ttl());

    let (mut keeper, mut stream) = fc.lease_keep_alive(lease).await.unwrap();
    assert_eq!(keep_alive_once(&mut keeper, &mut stream).await, 5);
    let old_leader = common::member_id(&c.members[leader]).await;
    c.members[leader].kill();
    // Keep the lease alive on the same stream for longer than its TTL, across the election.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        assert_eq!(keep_alive_once(&mut keeper, &mut stream).await, 5, "keep-alive after the leader died");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_leader(&c, Some(old_leader)).await;
    let held = fc.get("held", None).await.unwrap();
    assert_eq!(held.kvs().len(), 1, "the key of a lease kept alive through a follower survives");
}

/// etcdctl's lock and elect sessions keep their leases through a follower (the lock's session
/// TTL of 2 s is outlived only if its keep-alives succeed; elect has no TTL flag in 3.4).
#[tokio::test]
async fn lock_and_elect_sessions_hold_through_a_follower() {
    let c = Cluster::start(3);
    let leader = wait_leader(&c, None).await;
    let follower = c.members[(leader + 1) % 3].endpoint();
    // A session TTL of 2 s outlives itself only if its keep-alives (every TTL/3) succeed.
    let hold = "sleep 5; echo held";
    let out = ok(etcdctl(&follower, &["lock", "--ttl=2", "mylock", "--", "sh", "-c", hold], None));
    assert!(out.ends_with("held\n"), "{out}");
    let mut elect = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([format!("--endpoints={follower}"), "elect".into(), "el".into(), "p1".into()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut cl = Client::connect([follower.clone()], None).await.unwrap();
    let key_of = |r: &etcd_client::GetResponse| r.kvs().first().map(|kv| kv.lease());
    let start = Instant::now();
    let lease = loop {
        let r = cl.get("el", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
        if let Some(l) = key_of(&r) {
            break l;
        }
        assert!(start.elapsed() < WAIT, "the candidate never campaigned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = cl.get("el", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(key_of(&r), Some(lease), "the leader's key is still held by its session");
    elect.kill().unwrap();
    elect.wait().unwrap();
}

/// Revoking a lease while keep-alives are in flight: every keep-alive after the revoke answers
/// TTL 0 at once, and nothing is left waiting — many times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_while_keep_alives_are_in_flight_answers_ttl_zero() {
    let m = Member::start(&["--storage-engine", "memory"]);
    let mut c = m.client().await;
    for round in 0..30 {
        let lease = c.lease_grant(10, None).await.unwrap().id();
        let (mut keeper, mut stream) = c.lease_keep_alive(lease).await.unwrap();
        let pump = tokio::spawn(async move {
            // Keep-alives back to back until one reports the lease gone.
            loop {
                if keep_alive_once(&mut keeper, &mut stream).await == 0 {
                    return;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(round % 7)).await;
        c.lease_revoke(lease).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), pump)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the keep-alive loop never learned the lease was revoked"))
            .unwrap();
    }
}

/// The first revoke proposals for an expired lease are lost (as raft-rs drops proposals during a
/// leadership transfer); the leader proposes again until the lease and its key are gone.
#[tokio::test]
async fn an_expired_lease_whose_revoke_was_dropped_is_revoked_again() {
    let m = Member::start_with_env(&["--storage-engine", "memory"], &[("METASTORE_FAILPOINTS", "lease-revoke-drop=3")]);
    let mut c = m.client().await;
    let lease = c.lease_grant(1, None).await.unwrap().id();
    c.put("dead-client/lock", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    let start = Instant::now();
    while !c.get("dead-client/lock", None).await.unwrap().kvs().is_empty() {
        assert!(start.elapsed() < WAIT, "the expired lease was never revoked; log:\n{}", m.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(m.log().contains("failpoint fired"), "the failpoint dropped the first revokes");
    assert_eq!(c.lease_time_to_live(lease, None).await.unwrap().ttl(), -1);
}

/// 1,000 leases with TTL 5 s, kept alive through a follower, while the leader is killed: the
/// new leader resumes them (extended by an election timeout) and none expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_expires_none_of_1000_kept_alive_leases() {
    let mut c = Cluster::start(3);
    let leader = wait_leader(&c, None).await;
    let follower = (leader + 1) % 3;
    let mut fc = client(&c.members[follower]).await;
    // Each lease is kept alive from the moment it exists: granting 1,000 through a follower can
    // take longer than their TTL on a loaded machine.
    let keepers = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, pumped) = (stop.clone(), keepers.clone());
    let pump = tokio::spawn(async move {
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let mut keepers = pumped.lock().await;
            for (keeper, stream) in keepers.iter_mut() {
                let keeper: &mut LeaseKeeper = keeper;
                let stream: &mut LeaseKeepAliveStream = stream;
                // A keep-alive may fail while no leader is known; the next round retries.
                if keeper.keep_alive().await.is_ok() {
                    let _ = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
                }
            }
            drop(keepers);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    for i in 0..1000 {
        let id = fc.lease_grant(5, None).await.unwrap().id();
        let keeper = fc.lease_keep_alive(id).await.unwrap();
        keepers.lock().await.push(keeper);
        fc.put(format!("l/{i:04}"), "v", Some(PutOptions::new().with_lease(id))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let old_leader = common::member_id(&c.members[leader]).await;
    c.members[leader].kill();
    wait_leader(&c, Some(old_leader)).await;
    tokio::time::sleep(Duration::from_secs(8)).await; // longer than the TTL
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    pump.await.unwrap();
    let left = fc.get("l/", Some(etcd_client::GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!(left.count(), 1000, "every kept-alive lease survived the leader's death");
}
