//! Multi-member clusters as processes on loopback: leader failure under writes, a paused leader,
//! membership changes with stock etcdctl, leadership transfer, and catching up after downtime.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{client, etcdctl, fails, member_id, ok, wait_leader, Cluster, Member};
use etcd_client::{Client, GetOptions};

const DEADLINE: Duration = Duration::from_secs(30);

/// Every key and value on member `m`, read locally.
async fn state(m: &Member) -> BTreeMap<String, String> {
    let mut c = client(m).await;
    let opts = GetOptions::new().with_all_keys().with_serializable();
    let resp = c.get("", Some(opts)).await.unwrap();
    resp.kvs().iter().map(|kv| (kv.key_str().unwrap().to_string(), kv.value_str().unwrap().to_string())).collect()
}

/// Waits until every running member holds exactly `want`.
async fn wait_state(c: &Cluster, want: &BTreeMap<String, String>) {
    let start = Instant::now();
    for m in c.members.iter().filter(|m| m.child.is_some()) {
        loop {
            let got = state(m).await;
            if &got == want {
                break;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{} did not converge: {} keys, want {}",
                m.endpoint(),
                got.len(),
                want.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Puts `n` keys through any member that answers, retrying failures; returns what was acknowledged.
async fn write_through(c: &Cluster, prefix: &str, n: usize) -> BTreeMap<String, String> {
    let mut acked = BTreeMap::new();
    let mut client = Client::connect(c.endpoints(), None).await.unwrap();
    let start = Instant::now();
    let mut i = 0;
    while acked.len() < n {
        let (k, v) = (format!("{prefix}{i:05}"), format!("v{i}"));
        if client.put(k.clone(), v.clone(), None).await.is_ok() {
            acked.insert(k, v);
            i += 1;
        }
        assert!(start.elapsed() < DEADLINE * 2, "writes stalled at {} acknowledged", acked.len());
    }
    acked
}

#[tokio::test]
async fn killing_the_leader_under_writes_loses_nothing_and_it_catches_up() {
    let mut c = Cluster::start(3);
    let leader = wait_leader(&c, None).await;
    let old_leader_id = member_id(&c.members[leader]).await;
    let endpoints = c.endpoints();
    let writer = tokio::spawn(async move {
        let mut acked = BTreeMap::new();
        let mut client = Client::connect(endpoints, None).await.unwrap();
        let start = Instant::now();
        let mut i = 0;
        while acked.len() < 600 && start.elapsed() < Duration::from_secs(60) {
            let (k, v) = (format!("w/{i:05}"), format!("v{i}"));
            i += 1;
            if client.put(k.clone(), v.clone(), None).await.is_ok() {
                acked.insert(k, v);
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.members[leader].kill();
    let new_leader = wait_leader(&c, Some(old_leader_id)).await;
    assert_ne!(new_leader, leader);
    let acked = writer.await.unwrap();
    assert!(acked.len() >= 600, "writes continued after the new leader: {}", acked.len());
    let survivors_state = state(&c.members[new_leader]).await;
    for (k, v) in &acked {
        assert_eq!(survivors_state.get(k), Some(v), "acknowledged write {k} lost");
    }
    wait_state(&c, &survivors_state).await;
    c.members[leader].spawn();
    let more = write_through(&c, "after/", 50).await;
    let mut want = survivors_state;
    want.extend(more);
    wait_state(&c, &want).await;
}

#[tokio::test]
async fn a_paused_leader_steps_down_and_nothing_is_lost_or_duplicated() {
    let c = Cluster::start(3);
    let leader = wait_leader(&c, None).await;
    let old_id = member_id(&c.members[leader]).await;
    let before = write_through(&c, "pre/", 20).await;
    c.members[leader].signal("STOP");
    let others: Vec<String> =
        c.members.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, m)| m.endpoint()).collect();
    let start = Instant::now();
    let mut cl = Client::connect(others.clone(), None).await.unwrap();
    let mut during = BTreeMap::new();
    while during.len() < 20 {
        let k = format!("mid/{:03}", during.len());
        if cl.put(k.clone(), "x", None).await.is_ok() {
            during.insert(k, "x".to_string());
        }
        assert!(start.elapsed() < DEADLINE, "the others never elected a leader");
    }
    c.members[leader].signal("CONT");
    let new_leader = wait_leader(&c, Some(old_id)).await;
    assert_ne!(new_leader, leader, "the old leader stepped down");
    let mut want = before;
    want.extend(during);
    wait_state(&c, &want).await;
    let revs = client(&c.members[0]).await.get("mid/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(revs.count(), 20, "each write applied once");
}

#[tokio::test]
async fn five_members_survive_two_failures() {
    let mut c = Cluster::start(5);
    let leader = wait_leader(&c, None).await;
    let old_id = member_id(&c.members[leader]).await;
    c.members[leader].kill();
    c.members[(leader + 1) % 5].kill();
    wait_leader(&c, Some(old_id)).await;
    let acked = write_through(&c, "five/", 30).await;
    wait_state(&c, &acked).await;
}

fn table_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

#[tokio::test]
async fn membership_with_etcdctl_learner_promote_update_remove() {
    let c = Cluster::start(3);
    let ep = c.endpoints().join(",");
    wait_leader(&c, None).await;
    // A learner that never starts is refused promotion with etcd's message.
    let added = ok(etcdctl(&ep, &["member", "add", "ghost", "--peer-urls=http://127.0.0.1:1", "--learner"], None));
    let ghost = added.split_whitespace().nth(1).unwrap().to_string();
    let refused = fails(etcdctl(&ep, &["member", "promote", &ghost], None));
    assert!(refused.contains("can only promote a learner member which is in sync with leader"), "{refused}");
    let too_many = fails(etcdctl(&ep, &["member", "add", "l2", "--peer-urls=http://127.0.0.1:2", "--learner"], None));
    assert!(too_many.contains("too many learner members in cluster"), "{too_many}");
    ok(etcdctl(&ep, &["member", "remove", &ghost], None));
    // A real learner joins, catches up and is promoted.
    let mut learner = c.prepare_joiner("learner");
    let out = ok(etcdctl(
        &ep,
        &["member", "add", "learner", &format!("--peer-urls={}", learner.peer_url), "--learner"],
        None,
    ));
    assert!(out.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{out}");
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    learner.spawn();
    let start = Instant::now();
    loop {
        let out = etcdctl(&ep, &["member", "promote", &id], None);
        if out.status.success() {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "learner never caught up: {}", String::from_utf8_lossy(&out.stderr));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = table_rows(&ok(etcdctl(&ep, &["member", "list", "-w", "table"], None)));
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r[1] == "started" && r[5] == "false"), "{rows:?}");
    // Update a member's peer URLs (to the same value: the member keeps working), then remove one.
    let m0 = format!("{:x}", member_id(&c.members[0]).await);
    let peer0 = c.members[0].peer_url.clone();
    let out = ok(etcdctl(&ep, &["member", "update", &m0, &format!("--peer-urls={peer0}")], None));
    assert!(out.contains("updated in cluster"), "{out}");
    let m2 = format!("{:x}", member_id(&c.members[2]).await);
    let out = ok(etcdctl(&ep, &["member", "remove", &m2], None));
    // etcdctl prints ids as `%16x`: padded with spaces.
    assert!(out.contains(&format!("Member {m2:>16} removed from cluster")), "{out}");
    let left = c.members[0].endpoint();
    let rows = table_rows(&ok(etcdctl(&left, &["member", "list", "-w", "table"], None)));
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r[0] != m2));
    // The promoted member serves writes (a removed leader may cost one election first).
    let mut cl = Client::connect([learner.endpoint()], None).await.unwrap();
    let start = Instant::now();
    while cl.put("from-promoted", "yes", None).await.is_err() {
        assert!(start.elapsed() < DEADLINE, "the promoted member never served a write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn move_leader_and_endpoint_status() {
    let c = Cluster::start(3);
    let leader = wait_leader(&c, None).await;
    let target = (leader + 1) % 3;
    let target_id = format!("{:x}", member_id(&c.members[target]).await);
    let out = ok(etcdctl(&c.members[leader].endpoint(), &["move-leader", &target_id], None));
    assert!(out.contains(&format!("to {target_id}")), "{out}");
    let now = wait_leader(&c, None).await;
    assert_eq!(now, target);
    let table = ok(etcdctl(&c.endpoints().join(","), &["endpoint", "status", "--cluster", "-w", "table"], None));
    let rows = table_rows(&table);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.iter().filter(|r| r[4] == "true").count(), 1, "{table}");
    let follower = c.members[(target + 1) % 3].endpoint();
    // etcdctl itself refuses when the endpoint it is given is not the leader, as against etcd.
    let refused = fails(etcdctl(&follower, &["move-leader", &target_id], None));
    assert!(refused.contains("no leader endpoint given"), "{refused}");
}

#[tokio::test]
async fn a_member_behind_the_compacted_log_catches_up_from_a_snapshot() {
    let mut c = Cluster::start_with(3, &["--snapshot-count", "50"]);
    let leader = wait_leader(&c, None).await;
    let lagging = (leader + 1) % 3;
    let early = write_through(&c, "early/", 20).await;
    c.members[lagging].kill();
    let mut want = early;
    want.extend(write_through(&c, "while-down/", 400).await);
    let mut cl = Client::connect(c.endpoints(), None).await.unwrap();
    cl.delete("early/00003", None).await.unwrap();
    want.remove("early/00003");
    c.members[lagging].spawn();
    wait_state(&c, &want).await;
    let leader_log = c.members[leader].log();
    assert!(leader_log.contains("compacting the raft log"), "the leader compacted its log");
    let log = c.members[lagging].log();
    assert!(log.contains("installing a snapshot"), "caught up through a snapshot:\n{log}");
    want.extend(write_through(&c, "after/", 20).await);
    wait_state(&c, &want).await;
}

/// A watcher on a follower that falls behind the compacted log and installs a snapshot receives
/// every event the snapshot carried, in order, none twice (it used to receive only the last).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_on_a_follower_gets_every_event_across_a_snapshot_install() {
    const PUTS: usize = 1500;
    let c = Cluster::start_with(3, &["--snapshot-count", "100"]);
    let leader = wait_leader(&c, None).await;
    let follower = (leader + 1) % 3;
    let mut wc = client(&c.members[follower]).await;
    let mut stream = wc.watch("k", Some(etcd_client::WatchOptions::new().with_prefix())).await.unwrap();
    let created = stream.message().await.unwrap().unwrap();
    assert!(created.created());
    c.members[follower].signal("STOP");
    let mut lc = client(&c.members[leader]).await;
    for i in 0..PUTS {
        lc.put(format!("k{i:05}"), "v", None).await.unwrap();
    }
    c.members[follower].signal("CONT");
    let mut revs = Vec::new();
    while revs.len() < PUTS {
        let msg = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .unwrap_or_else(|_| panic!("only {} of {PUTS} events arrived", revs.len()))
            .unwrap()
            .expect("watch stream open");
        revs.extend(msg.events().iter().map(|ev| ev.kv().unwrap().mod_revision()));
    }
    assert_eq!(revs.len(), PUTS);
    assert!(revs.windows(2).all(|w| w[1] == w[0] + 1), "ordered, no gaps, no duplicates");
    let log = c.members[follower].log();
    assert!(log.contains("installing a snapshot"), "the follower caught up through a snapshot:\n{log}");
}

/// The leader removes itself while its outgoing messages are slowed down (so followers learn of
/// the commit late): it must keep serving raft until they do, and the others carry on — in a
/// 2-member cluster the survivor would otherwise wait for the departed leader's vote for ever.
async fn a_leader_removing_itself_leaves_a_working_cluster(n: usize) {
    let mut c = Cluster::start_with_env(n, &[], &[("METASTORE_FAILPOINTS", "peer-send-slow=1000000")]);
    let leader = wait_leader(&c, None).await;
    let id = member_id(&c.members[leader]).await;
    let mut lc = client(&c.members[leader]).await;
    lc.put("before", "v", None).await.unwrap();
    lc.member_remove(id).await.unwrap();
    let start = Instant::now();
    while c.members[leader].child.as_mut().is_some_and(|p| p.try_wait().unwrap().is_none()) {
        assert!(start.elapsed() < DEADLINE, "the removed leader never stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.members[leader].child = None;
    let survivor = c.members.iter().position(|m| m.child.is_some()).unwrap();
    let mut sc = client(&c.members[survivor]).await;
    let start = Instant::now();
    while sc.put("after", "v", None).await.is_err() {
        assert!(start.elapsed() < DEADLINE, "the remaining members never served a write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let members = sc.member_list().await.unwrap();
    assert_eq!(members.members().len(), n - 1);
    assert!(members.members().iter().all(|m| m.id() != id));
}

#[tokio::test]
async fn a_leader_removing_itself_from_two_members_leaves_one_that_serves() {
    a_leader_removing_itself_leaves_a_working_cluster(2).await;
}

#[tokio::test]
async fn a_leader_removing_itself_from_three_members_leaves_two_that_serve() {
    a_leader_removing_itself_leaves_a_working_cluster(3).await;
}

/// Raft streams from a member of another cluster are refused (etcd's `X-Etcd-Cluster-ID`), and
/// the raft stream and the gRPC peer API share the peer port.
#[tokio::test]
async fn raft_streams_from_another_cluster_are_refused() {
    use metastore::peer::RaftStream;
    let m = Member::start(&["--storage-engine", "memory"]);
    let err = RaftStream::open(&m.peer_url, None, 0xdeadbeef, 7).await.err().expect("another cluster is refused");
    assert!(err.to_string().contains("cluster ID mismatch"), "{err}");
    let cluster_id = client(&m).await.status().await.unwrap().header().unwrap().cluster_id();
    let mut stream =
        RaftStream::open(&m.peer_url, None, cluster_id, 7).await.expect("its own cluster's stream is served");
    stream.keepalive().await.expect("the stream takes frames");
    let info = metastore::peer::cluster(&m.peer_url, None).await.expect("gRPC on the same port");
    assert_eq!(info.cluster_id, cluster_id);
}

/// Peer URLs over TLS (`--peer-auto-tls`): the raft streams and the gRPC peer calls run over
/// TLS on one port (a plain stream is not taken there); the cluster elects a leader and
/// replicates.
#[tokio::test]
async fn a_cluster_with_tls_peer_urls_replicates() {
    use metastore::peer::RaftStream;
    let c = Cluster::start_https_peers(3, &["--peer-auto-tls"]);
    wait_leader(&c, None).await;
    let want = write_through(&c, "tls/", 20).await;
    wait_state(&c, &want).await;
    let m = &c.members[0];
    assert!(m.peer_url.starts_with("https://"), "{}", m.peer_url);
    let tls = metastore::tls::PeerTls::auto(vec!["localhost".into()]).unwrap();
    let cluster_id = client(m).await.status().await.unwrap().header().unwrap().cluster_id();
    let err = RaftStream::open(&m.peer_url, Some(&tls), cluster_id ^ 1, 7).await.err().expect("refused over TLS");
    assert!(err.to_string().contains("cluster ID mismatch"), "{err}");
    RaftStream::open(&m.peer_url, Some(&tls), cluster_id, 7).await.expect("accepted over TLS");
    let plain = m.peer_url.replace("https://", "http://");
    assert!(RaftStream::open(&plain, None, cluster_id, 7).await.is_err(), "a plain stream on a TLS port fails");
    let info = metastore::peer::cluster(&m.peer_url, Some(&tls)).await.expect("gRPC over TLS on the same port");
    assert_eq!(info.cluster_id, cluster_id);
}
