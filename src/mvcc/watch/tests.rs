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

/// Registers a watch as a stream does: its `Created` answer goes first on the channel.
fn watch(hub: &WatchHub, spec: WatchSpec, tx: &mpsc::Sender<Delivery>) -> bool {
    let permit = tx.clone().try_reserve_owned().expect("room for the created answer");
    hub.watch(spec, tx.clone(), permit)
}

fn commit_unnotified(kv: &KvStore, key: &str, value: &str) {
    let mut apply = kv.apply();
    apply.txn().put(key.as_bytes(), value.as_bytes().to_vec(), 0);
    apply.commit().unwrap();
}

fn revisions(d: &Delivery) -> Vec<i64> {
    match d {
        Delivery::Events { events, .. } => events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision).collect(),
        Delivery::Created { .. } => Vec::new(),
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
    assert!(watch(&hub, spec(0, KeyRange::new(b"a", b"b"), 0), &tx));
    assert!(!watch(&hub, spec(0, KeyRange::Single(b"x".to_vec()), 0), &tx), "duplicate watch id");
    assert_eq!(rx.recv().await.unwrap(), Delivery::Created { watch_id: 0, revision: 1 });
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
    watch(&hub, spec(7, KeyRange::From(vec![0]), 0), &tx);
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
    watch(&hub, spec(1, KeyRange::Single(b"k".to_vec()), 3), &tx);
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
    watch(&hub, spec(3, KeyRange::Single(b"k".to_vec()), 2), &tx);
    assert!(matches!(rx.recv().await.unwrap(), Delivery::Created { .. }));
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
    watch(&hub, spec(1, KeyRange::Single(b"k".to_vec()), 2), &tx);
    hub.request_progress(1, tx);
    let mut got = Vec::new();
    loop {
        let d = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        got.push(d.clone());
        if matches!(d, Delivery::Progress { .. }) {
            break;
        }
    }
    assert!(matches!(got[0], Delivery::Created { .. }));
    let events: Vec<i64> = got.iter().filter(|d| matches!(d, Delivery::Events { .. })).flat_map(revisions).collect();
    assert_eq!(events, vec![2, 3, 4], "every event before the progress response");
    assert_eq!(got.last(), Some(&Delivery::Progress { watch_id: -1, revision: 4 }));
}

/// A revision committed before a watch is created but handed to the hub after it: the created
/// answer names the revision before it, and the watch delivers it (the created revision and the
/// start revision are one and the same reading).
#[tokio::test]
async fn created_revision_and_start_are_one_reading() {
    let kv = store();
    let hub = WatchHub::new(kv.clone(), Duration::from_secs(600));
    put(&kv, &hub, "k", "1"); // 2, notified
    let mut apply = kv.apply();
    apply.txn().put(b"k", b"2".to_vec(), 0); // 3, committed but not yet notified
    let pending = apply.commit().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    watch(&hub, spec(1, KeyRange::Single(b"k".to_vec()), 0), &tx);
    assert_eq!(rx.recv().await.unwrap(), Delivery::Created { watch_id: 1, revision: 2 });
    hub.notify(&pending);
    assert_eq!(revisions(&rx.recv().await.unwrap()), vec![3]);
}

/// After the store is replaced by a snapshot, synced watchers catch up from history over every
/// revision the snapshot brought, instead of skipping them.
#[tokio::test]
async fn restore_replays_every_revision_the_snapshot_brought() {
    let kv = store();
    let hub = WatchHub::new(kv.clone(), Duration::from_secs(600));
    tokio::spawn(hub.clone().run());
    let (tx, mut rx) = mpsc::channel(4);
    watch(&hub, spec(1, KeyRange::From(b"k".to_vec()), 0), &tx);
    put(&kv, &hub, "k0", "v"); // 2
    for i in 1..=300 {
        commit_unnotified(&kv, &format!("k{i}"), "v"); // 3..=302 arrive with the snapshot
    }
    hub.restored();
    let seen = drain(&mut rx, 302).await;
    assert_eq!(seen, (2..=302).collect::<Vec<i64>>());
    put(&kv, &hub, "k-live", "v");
    assert_eq!(drain(&mut rx, 303).await, vec![303], "synced again after the catch-up");
}

/// A watcher whose next revision was compacted away by the snapshot is canceled with the
/// compact revision, never silently resumed past the gap.
#[tokio::test]
async fn restore_past_compacted_history_cancels_with_compact_revision() {
    let kv = store();
    let hub = WatchHub::new(kv.clone(), Duration::from_secs(600));
    tokio::spawn(hub.clone().run());
    let (tx, mut rx) = mpsc::channel(16);
    watch(&hub, spec(5, KeyRange::From(b"k".to_vec()), 0), &tx);
    assert!(matches!(rx.recv().await.unwrap(), Delivery::Created { .. }));
    for i in 0..10 {
        commit_unnotified(&kv, &format!("k{i}"), "v"); // 2..=11
    }
    let mut apply = kv.apply();
    apply.compact(8).unwrap();
    apply.commit().unwrap();
    hub.restored();
    let d = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert_eq!(d, Delivery::Compacted { watch_id: 5, compact_revision: 8 });
}
