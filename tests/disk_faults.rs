//! Disk faults (cargo feature `fault-injection`, `make test-disk-faults`; compiled to nothing
//! otherwise): a member whose disk fails a write or an fsync must stop with a non-zero status —
//! never go on with state it did not persist — and, restarted on a healthy disk, must still hold
//! every write it acknowledged. The faults come from `src/storage/faulty.rs`, armed by the
//! failpoints `disk-fail-write-after=N` / `disk-fail-sync-after=N`, which the raft WAL
//! (`src/raft/wal.rs`) checks too.
#![cfg(feature = "fault-injection")]

mod common;

use std::time::{Duration, Instant};

use common::Member;

/// Writes that pass before the disk breaks: enough for start-up and some acknowledged puts.
const HEALTHY_WRITES: &str = "200";

/// Puts until the member stops answering; returns the acknowledged (key, value) pairs.
async fn write_until_the_member_fails(m: &Member) -> Vec<(String, String)> {
    let mut c = m.client().await;
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0.. {
        assert!(Instant::now() < deadline, "the disk fault never stopped the member ({i} puts)");
        let (k, v) = (format!("k{i:05}"), format!("v{i}"));
        match tokio::time::timeout(Duration::from_secs(3), c.put(k.clone(), v.clone(), None)).await {
            Ok(Ok(_)) => acked.push((k, v)),
            _ => break,
        }
    }
    acked
}

/// Waits (bounded) for the member's process to end and returns its exit code.
fn exit_code(m: &mut Member) -> Option<i32> {
    let child = m.child.as_mut().expect("member was running");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            m.child = None;
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the member still runs after its disk failed; log:\n{}", m.log());
}

fn check_fault(failpoint: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let spec = format!("{failpoint}={HEALTHY_WRITES}");
    let mut m = Member::start_with_env(&[], &[("METASTORE_FAILPOINTS", &spec)]);
    let acked = rt.block_on(write_until_the_member_fails(&m));
    assert!(!acked.is_empty(), "some puts were acknowledged before the fault");
    let code = exit_code(&mut m);
    assert!(code.is_some_and(|c| c != 0), "the member must exit non-zero, got {code:?}; log:\n{}", m.log());
    assert!(m.log().contains("injected disk fault"), "the log names the fault:\n{}", m.log());
    if failpoint == "disk-fail-sync-after" {
        // Past start-up, the synced writes are the raft WAL's appends: its fdatasync failed.
        assert!(m.log().contains("raft WAL fsync failed"), "the raft WAL stopped the member:\n{}", m.log());
    }
    // Restart on a healthy disk: every acknowledged put is there.
    m.env.clear();
    m.spawn();
    rt.block_on(async {
        let mut c = m.client().await;
        for (k, v) in &acked {
            let r = c.get(k.as_str(), None).await.expect("get after restart");
            let got = r.kvs().first().map(|kv| kv.value_str().unwrap().to_string());
            assert_eq!(got.as_deref(), Some(v.as_str()), "acknowledged {k} lost after {failpoint}");
        }
        // And the member takes writes again.
        c.put("after", "restart", None).await.expect("put after restart");
    });
}

#[test]
fn a_failed_write_stops_the_member_and_keeps_every_acknowledged_write() {
    check_fault("disk-fail-write-after");
}

#[test]
fn a_failed_fsync_stops_the_member_and_keeps_every_acknowledged_write() {
    check_fault("disk-fail-sync-after");
}
