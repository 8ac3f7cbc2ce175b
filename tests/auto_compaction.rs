//! Auto-compaction (`--auto-compaction-mode`, `--auto-compaction-retention`) as etcd 3.4 does
//! it: the leader alone compacts, through raft; periodic mode to the revision seen a retention
//! ago, revision mode to `current - retention`.

mod common;

use std::time::{Duration, Instant};

use common::{wait_leader, Cluster, Member};
use etcd_client::{Client, GetOptions};

/// Polls HashKV until the compacted revision is `want` (or panics after `within`).
async fn wait_compacted(c: &mut Client, want: i64, within: Duration) {
    let start = Instant::now();
    loop {
        let compacted = c.hash_kv(0).await.unwrap().compact_version();
        if compacted == want {
            return;
        }
        assert!(start.elapsed() < within, "compacted revision {compacted}, want {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn put_keys(c: &mut Client, n: usize) {
    for i in 0..n {
        c.put(format!("k{i}"), "v", None).await.unwrap();
    }
}

/// Revision mode on a three-member cluster: revision 6, retention 2 → compacted at 4 by the
/// leader only. etcd checks every 5 minutes; the test failpoint shortens the check to 200 ms.
#[tokio::test(flavor = "multi_thread")]
async fn revision_mode_keeps_the_last_n_revisions_compacted_by_the_leader() {
    let cluster = Cluster::start_with_env(
        3,
        &["--auto-compaction-mode", "revision", "--auto-compaction-retention", "2"],
        &[("METASTORE_FAILPOINTS", "auto-compaction-revision-fast=1000000")],
    );
    let leader = wait_leader(&cluster, None).await;
    let mut c = cluster.members[leader].client().await;
    put_keys(&mut c, 5).await;
    wait_compacted(&mut c, 4, Duration::from_secs(20)).await;
    let err = c.get("k0", Some(GetOptions::new().with_revision(3))).await.unwrap_err();
    assert!(err.to_string().contains("required revision has been compacted"), "{err}");
    for (i, m) in cluster.members.iter().enumerate() {
        let mut mc = m.client().await;
        wait_compacted(&mut mc, 4, Duration::from_secs(10)).await;
        let started = m.log().contains("Starting auto-compaction at revision 4 (retention: 2 revisions)");
        assert_eq!(started, i == leader, "member {i} (leader {leader}) log:\n{}", m.log());
    }
    assert!(cluster.members[leader].log().contains("Finished auto-compaction at revision 4"));
}

/// Periodic mode with a one-second retention: every second the revision seen a second ago is
/// compacted. The same steps on etcd 3.4.23 reach the same compacted revision.
#[tokio::test(flavor = "multi_thread")]
async fn periodic_mode_compacts_to_the_revision_seen_a_retention_ago() {
    for member in
        [Member::start(&["--auto-compaction-retention=1s"]), Member::start_etcd(&["--auto-compaction-retention=1s"])]
    {
        let mut c = member.client().await;
        put_keys(&mut c, 3).await;
        // Revision 4 is the newest; once it is a second old it is what gets compacted.
        wait_compacted(&mut c, 4, Duration::from_secs(15)).await;
        if member.bin == common::BIN {
            assert!(member.log().contains("(retention: 1s)"), "{}", member.log());
        }
    }
}

#[test]
fn an_unknown_mode_is_refused_at_start() {
    let out = std::process::Command::new(common::BIN)
        .args(["--auto-compaction-mode", "daily", "--auto-compaction-retention", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown auto-compaction-mode \"daily\""));
}
