//! Watch hub guarantees on an in-memory store: direct delivery, slow consumers falling behind and
//! catching up without gaps or duplicates, compaction, and progress only after delivery.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::mvcc::KvStore;
use crate::storage::MemoryEngine;

fn store() -> Arc<KvStore> {
    Arc::new(KvStore::open(Arc::new(MemoryEngine::new())).unwrap())
}

fn put(kv: &KvStore, hub: &WatchHub, key: &str, value: &str) {
    let mut apply = kv.apply();
    apply.txn().put(key.as_bytes(), value.as_bytes().to_vec(), 0);
    let events = apply.commit().unwrap();
    hub.notify(&events);
}

fn spec(watch_id: i64, range: KeyRange, start_rev: i64) -> WatchSpec {
    WatchSpec { stream: 1, watch_id, range, start_rev, no_put: false, no_delete: false, progress_notify: false }
}

fn revisions(d: &Delivery) -> Vec<i64> {
    match d {
        Delivery::Events { events, .. } => events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision).collect(),
        other => panic!("expected events, got {other:?}"),
    }
}

async fn drain(rx: &mut mpsc::Receiver<Delivery>, until_rev: i64) -> Vec<i64> {
    let mut seen = Vec::new();
    while seen.last().copied().unwrap_or(0) < until_rev {
        let d = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("delivery in time").unwrap();
        seen.extend(revisions(&d));
    }
    seen
}

#[tokio::test]
async fn synced_watchers_get_matching_events_directly() {
    let kv = store();
    let hub = WatchHub::new(kv.clone(), Duration::from_secs(600));
    let (tx, mut rx) = mpsc::channel(16);
    assert!(hub.watch(spec(0, KeyRange::new(b"a", b"b"), 0), tx.clone()));
    assert!(!hub.watch(spec(0, KeyRange::Single(b"x".to_vec()), 0), tx), "duplicate watch id");
    put(&kv, &hub, "a1", "v"); // 2
    put(&kv, &hub, "zz", "v"); // 3: not watched
    put(&kv, &hub, "a2", "v"); // 4
    assert_eq!(revisions(&rx.recv().await.unwrap()), vec![2]);
    assert_eq!(revisions(&rx.recv().await.unwrap()), vec![4]);
}

#[tokio::test]
async fn slow_consumer_falls_behind_and_catches_up_in_order() {
    let kv = store();
    let hub = WatchHub::new(kv.clone(), Duration::from_secs(600));
    tokio::spawn(hub.clone().run());
    let (tx, mut rx) = mpsc::channel(2);
    hub.watch(spec(7, KeyRange::From(vec![0]), 0), tx);
    for i in 0..500 {
        put(&kv, &hub, &format!("k{i}"), "v"); // revisions 2..=501, far more than the channel holds
    }
    let seen = drain(&mut rx, 501).await;
    assert_eq!(seen, (2..=501).collect::<Vec<i64>>(), "ordered, no gaps, no duplicates");
    put(&kv, &hub, "after", "v");
    assert_eq!(drain(&mut rx, 502).await, vec![502], "synced again");
}

#[tokio::test]
async fn watch_from_the_past_replays_history_then_goes_live() {
    let kv = store();
    let hub = WatchHub::new(kv.clone(), Duration::from_secs(600));
    tokio::spawn(hub.clone().run());
    for i in 0..5 {
        put(&kv, &hub, "k", &i.to_string()); // 2..=6
    }
    let (tx, mut rx) = mpsc::channel(16);
    hub.watch(spec(1, KeyRange::Single(b"k".to_vec()), 3), tx);
    assert_eq!(drain(&mut rx, 6).await, vec![3, 4, 5, 6]);
    put(&kv, &hub, "k", "x");
    assert_eq!(drain(&mut rx, 7).await, vec![7]);
}

#[tokio::test]
async fn compacted_start_revision_cancels_the_watch() {
    let kv = store();
    let hub = WatchHub::new(kv.clone(), Duration::from_secs(600));
    tokio::spawn(hub.clone().run());
    for i in 0..5 {
        put(&kv, &hub, "k", &i.to_string());
    }
    let mut apply = kv.apply();
    apply.compact(4).unwrap();
    apply.commit().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    hub.watch(spec(3, KeyRange::Single(b"k".to_vec()), 2), tx);
    let d = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert_eq!(d, Delivery::Compacted { watch_id: 3, compact_revision: 4 });
    assert!(hub.is_empty());
}

#[tokio::test]
async fn progress_waits_for_delivery() {
    let kv = store();
    let hub = WatchHub::new(kv.clone(), Duration::from_secs(600));
    tokio::spawn(hub.clone().run());
    for i in 0..3 {
        put(&kv, &hub, "k", &i.to_string()); // 2..=4
    }
    let (tx, mut rx) = mpsc::channel(16);
    hub.watch(spec(1, KeyRange::Single(b"k".to_vec()), 2), tx.clone());
    hub.request_progress(1, tx);
    let mut got = Vec::new();
    loop {
        let d = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        got.push(d.clone());
        if matches!(d, Delivery::Progress { .. }) {
            break;
        }
    }
    let events: Vec<i64> = got.iter().filter(|d| matches!(d, Delivery::Events { .. })).flat_map(revisions).collect();
    assert_eq!(events, vec![2, 3, 4], "every event before the progress response");
    assert_eq!(got.last(), Some(&Delivery::Progress { watch_id: -1, revision: 4 }));
}
