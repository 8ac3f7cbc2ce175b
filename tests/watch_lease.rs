//! Watch and Lease through the `etcd-client` crate against the real binary: watch guarantees
//! (order, no gaps, history replay, compaction, progress, filters, prev_kv), slow watchers, and
//! leases (grant, attach, keep-alive, time-to-live, revoke, expiry, surviving a crash).

mod common;

use std::time::{Duration, Instant};

use common::Member;
use etcd_client::{
    Client, EventType, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, WatchFilterType,
    WatchOptions, WatchStream,
};

const WAIT: Duration = Duration::from_secs(10);

async fn member() -> (Member, Client) {
    let m = Member::start(&["--storage-engine", "memory"]);
    let c = m.client().await;
    (m, c)
}

async fn next(stream: &mut WatchStream) -> etcd_client::WatchResponse {
    tokio::time::timeout(WAIT, stream.message()).await.expect("watch response in time").unwrap().expect("open stream")
}

/// Collects `(type, key, mod_revision)` of events until `n` arrived, skipping non-event responses.
async fn events(stream: &mut WatchStream, n: usize) -> Vec<(EventType, String, i64)> {
    let mut out = Vec::new();
    while out.len() < n {
        let resp = next(stream).await;
        for ev in resp.events() {
            let kv = ev.kv().unwrap();
            out.push((ev.event_type(), kv.key_str().unwrap().to_string(), kv.mod_revision()));
        }
    }
    out
}

#[tokio::test]
async fn watch_key_prefix_and_range_from_now() {
    let (_m, mut c) = member().await;
    let mut stream = c.watch("p/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    let created = next(&mut stream).await;
    assert!(created.created());
    c.put("p/a", "1", None).await.unwrap(); // 2
    c.put("q", "x", None).await.unwrap(); // 3, not watched
    c.delete("p/a", None).await.unwrap(); // 4
    let got = events(&mut stream, 2).await;
    assert_eq!(got, vec![(EventType::Put, "p/a".into(), 2), (EventType::Delete, "p/a".into(), 4)]);
    let mut range = c.watch("b", Some(WatchOptions::new().with_range("d"))).await.unwrap();
    next(&mut range).await;
    for k in ["a", "b", "c", "d"] {
        c.put(k, "v", None).await.unwrap(); // 5..=8
    }
    assert_eq!(events(&mut range, 2).await, vec![(EventType::Put, "b".into(), 6), (EventType::Put, "c".into(), 7)]);
}

#[tokio::test]
async fn watch_replays_history_with_prev_kv_and_filters() {
    let (_m, mut c) = member().await;
    c.put("k", "1", None).await.unwrap(); // 2
    c.put("k", "2", None).await.unwrap(); // 3
    c.delete("k", None).await.unwrap(); // 4
    let opts = WatchOptions::new().with_start_revision(2).with_prev_key();
    let mut stream = c.watch("k", Some(opts)).await.unwrap();
    assert!(next(&mut stream).await.created());
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let resp = next(&mut stream).await;
        for ev in resp.events() {
            let prev = ev.prev_kv().map(|p| p.value_str().unwrap().to_string());
            seen.push((ev.event_type(), ev.kv().unwrap().mod_revision(), prev));
        }
    }
    assert_eq!(
        seen,
        vec![
            (EventType::Put, 2, None),
            (EventType::Put, 3, Some("1".into())),
            (EventType::Delete, 4, Some("2".into()))
        ]
    );
    let no_put = WatchOptions::new().with_start_revision(1).with_filters([WatchFilterType::NoPut]);
    let mut deletes = c.watch("k", Some(no_put)).await.unwrap();
    next(&mut deletes).await;
    assert_eq!(events(&mut deletes, 1).await, vec![(EventType::Delete, "k".into(), 4)]);
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_cancelled_with_the_compact_revision() {
    let (_m, mut c) = member().await;
    for i in 0..5 {
        c.put("k", i.to_string(), None).await.unwrap(); // 2..=6
    }
    c.compact(5, None).await.unwrap();
    let mut stream = c.watch("k", Some(WatchOptions::new().with_start_revision(3))).await.unwrap();
    let mut resp = next(&mut stream).await;
    if resp.created() && resp.compact_revision() == 0 {
        resp = next(&mut stream).await;
    }
    assert_eq!(resp.compact_revision(), 5);
    assert!(resp.canceled());
    // From the compacted revision itself the history is still there.
    let mut ok = c.watch("k", Some(WatchOptions::new().with_start_revision(5))).await.unwrap();
    next(&mut ok).await;
    assert_eq!(events(&mut ok, 2).await, vec![(EventType::Put, "k".into(), 5), (EventType::Put, "k".into(), 6)]);
}

#[tokio::test]
async fn many_watches_on_one_stream_cancel_and_progress() {
    let (_m, mut c) = member().await;
    let mut stream = c.watch("a", Some(WatchOptions::new().with_watch_id(10))).await.unwrap();
    assert_eq!(next(&mut stream).await.watch_id(), 10);
    stream.watch("b", Some(WatchOptions::new().with_watch_id(11))).await.unwrap();
    assert_eq!(next(&mut stream).await.watch_id(), 11);
    stream.watch("c", Some(WatchOptions::new().with_watch_id(11))).await.unwrap();
    let dup = next(&mut stream).await;
    assert!(dup.canceled() && dup.cancel_reason().contains("duplicate watch ID"), "{dup:?}");
    c.put("a", "1", None).await.unwrap();
    c.put("b", "1", None).await.unwrap();
    let r1 = next(&mut stream).await;
    let r2 = next(&mut stream).await;
    assert_eq!((r1.watch_id(), r2.watch_id()), (10, 11));
    stream.cancel(10).await.unwrap();
    let cancelled = next(&mut stream).await;
    assert!(cancelled.canceled() && cancelled.watch_id() == 10);
    stream.request_progress().await.unwrap();
    let progress = next(&mut stream).await;
    assert!(progress.events().is_empty());
    assert_eq!(progress.header().unwrap().revision(), 3);
    c.put("a", "2", None).await.unwrap();
    c.put("b", "2", None).await.unwrap();
    let only_b = next(&mut stream).await;
    assert_eq!((only_b.watch_id(), only_b.events()[0].kv().unwrap().key()), (11, &b"b"[..]));
}

#[tokio::test]
async fn periodic_progress_notifications() {
    let m = Member::start(&["--storage-engine", "memory", "--experimental-watch-progress-notify-interval", "200ms"]);
    let mut c = m.client().await;
    let mut stream = c.watch("quiet", Some(WatchOptions::new().with_progress_notify())).await.unwrap();
    assert!(next(&mut stream).await.created());
    let progress = next(&mut stream).await;
    assert!(progress.events().is_empty() && !progress.canceled());
}

#[tokio::test]
async fn slow_watcher_does_not_block_writes_and_catches_up() {
    let (_m, mut c) = member().await;
    let mut slow = c.watch("s/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    assert!(next(&mut slow).await.created());
    let writers: Vec<_> = (0..10)
        .map(|w| {
            let mut c = c.clone();
            tokio::spawn(async move {
                for i in 0..1000 {
                    c.put(format!("s/{w}/{i}"), "v", None).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        tokio::time::timeout(Duration::from_secs(120), w).await.expect("writes proceed").unwrap();
    }
    // Only now does the watcher start reading: all 10,000 events arrive, in order, once each.
    let mut revs = Vec::new();
    while revs.len() < 10_000 {
        let resp = next(&mut slow).await;
        revs.extend(resp.events().iter().map(|e| e.kv().unwrap().mod_revision()));
    }
    assert_eq!(revs, (2..=10_001).collect::<Vec<i64>>());
}

#[tokio::test]
async fn lease_grant_attach_keepalive_ttl_and_revoke() {
    let (_m, mut c) = member().await;
    let g = c.lease_grant(60, None).await.unwrap();
    assert_eq!(g.ttl(), 60);
    let chosen = c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(777))).await.unwrap();
    assert_eq!(chosen.id(), 777);
    let dup = c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(777))).await.unwrap_err();
    assert!(dup.to_string().contains("etcdserver: lease already exists"), "{dup}");
    let min = c.lease_grant(1, None).await.unwrap();
    assert_eq!(min.ttl(), 2, "raised to etcd's minimum TTL");
    c.put("l1", "v", Some(PutOptions::new().with_lease(g.id()))).await.unwrap();
    c.put("l2", "v", Some(PutOptions::new().with_lease(g.id()))).await.unwrap();
    c.put("l2", "v2", Some(PutOptions::new().with_ignore_lease())).await.unwrap();
    assert_eq!(c.get("l2", None).await.unwrap().kvs()[0].lease(), g.id(), "ignore_lease keeps the lease");
    c.put("l3", "v", Some(PutOptions::new().with_lease(777))).await.unwrap();
    c.put("l3", "v", None).await.unwrap(); // detaches
    let ttl = c.lease_time_to_live(g.id(), Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!((ttl.granted_ttl(), ttl.keys().len()), (60, 2));
    assert!(ttl.ttl() > 55);
    let leases = c.leases().await.unwrap();
    assert_eq!(leases.leases().len(), 3);
    let (mut keeper, mut responses) = c.lease_keep_alive(g.id()).await.unwrap();
    keeper.keep_alive().await.unwrap();
    assert_eq!(responses.message().await.unwrap().unwrap().ttl(), 60);
    let mut watch = c.watch("l", Some(WatchOptions::new().with_prefix())).await.unwrap();
    next(&mut watch).await;
    let rev = c.lease_revoke(g.id()).await.unwrap().header().unwrap().revision();
    let deletes = events(&mut watch, 2).await;
    assert_eq!(deletes, vec![(EventType::Delete, "l1".into(), rev), (EventType::Delete, "l2".into(), rev)]);
    assert_eq!(c.get("l", Some(GetOptions::new().with_prefix())).await.unwrap().count(), 1);
    let gone = c.lease_time_to_live(g.id(), None).await.unwrap();
    assert_eq!(gone.ttl(), -1);
    keeper.keep_alive().await.unwrap();
    assert_eq!(responses.message().await.unwrap().unwrap().ttl(), 0, "keep-alive of a revoked lease");
    let err = c.lease_revoke(g.id()).await.unwrap_err();
    assert!(err.to_string().contains("etcdserver: requested lease not found"), "{err}");
}

#[tokio::test]
async fn lease_expiry_deletes_keys_with_watch_events() {
    let (_m, mut c) = member().await;
    let g = c.lease_grant(2, None).await.unwrap();
    c.put("e/1", "v", Some(PutOptions::new().with_lease(g.id()))).await.unwrap();
    c.put("e/2", "v", Some(PutOptions::new().with_lease(g.id()))).await.unwrap();
    let mut watch = c.watch("e/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    next(&mut watch).await;
    let start = Instant::now();
    let deletes = events(&mut watch, 2).await;
    assert!(deletes.iter().all(|(t, _, rev)| *t == EventType::Delete && *rev == deletes[0].2), "{deletes:?}");
    assert!(start.elapsed() >= Duration::from_millis(1500), "not expired early");
    assert_eq!(c.get("e/", Some(GetOptions::new().with_prefix())).await.unwrap().count(), 0);
}

#[tokio::test]
async fn remaining_ttl_survives_a_crash_and_counts_downtime() {
    let mut m = Member::start(&[]);
    let mut c = m.client().await;
    let g = c.lease_grant(30, None).await.unwrap();
    c.put("durable", "v", Some(PutOptions::new().with_lease(g.id()))).await.unwrap();
    // Let at least one checkpoint of the deadline reach the log, then crash.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    m.kill();
    tokio::time::sleep(Duration::from_secs(10)).await;
    m.spawn();
    let mut c = m.client().await;
    let ttl = c.lease_time_to_live(g.id(), None).await.unwrap().ttl();
    assert!((15..=21).contains(&ttl), "remaining TTL after 12.5 s of a 30 s lease: {ttl}");
    assert_eq!(c.get("durable", None).await.unwrap().kvs()[0].lease(), g.id());
}
