//! etcd's Lock and Election gRPC services through the `etcd-client` crate: contended locks,
//! campaigns, proclaim, resign and an observe stream — each scenario run against MetaStore and
//! real etcd 3.4.23, whose transcripts must be equal.

mod common;

use std::time::Duration;

use common::Member;
use etcd_client::{Client, LeaderKey, LockOptions, ProclaimOptions, ResignOptions};

fn err(e: etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        other => format!("{other}"),
    }
}

/// A second lock on the same name waits until the first holder unlocks; a lock whose lease is
/// revoked is released too.
async fn contended_lock(mut c: Client) -> Vec<String> {
    let mut log = Vec::new();
    let l1 = c.lease_grant(30, None).await.unwrap().id();
    let l2 = c.lease_grant(30, None).await.unwrap().id();
    let first = c.lock("job", Some(LockOptions::new().with_lease(l1))).await.unwrap();
    let key1 = String::from_utf8(first.key().to_vec()).unwrap();
    log.push(format!("first key is job/<lease1 hex>: {}", key1 == format!("job/{l1:x}")));
    let mut c2 = c.clone();
    let waiter = tokio::spawn(async move { c2.lock("job", Some(LockOptions::new().with_lease(l2))).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    log.push(format!("second waits: {}", !waiter.is_finished()));
    let again = c.lock("job", Some(LockOptions::new().with_lease(l1))).await.unwrap();
    log.push(format!("relock with the same lease is the same key: {}", again.key() == first.key()));
    let unlock = c.unlock(first.key()).await.unwrap();
    log.push(format!("unlock has a header: {}", unlock.header().is_some()));
    let second = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
    log.push(format!("second acquires after unlock: {}", second.key() == format!("job/{l2:x}").as_bytes()));
    let mut c3 = c.clone();
    let third = tokio::spawn(async move { c3.lock("job", None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.lease_revoke(l2).await.unwrap();
    let third = tokio::time::timeout(Duration::from_secs(5), third).await.unwrap().unwrap().unwrap();
    log.push(format!("revoking the holder's lease hands over: {}", third.key().starts_with(b"job/")));
    log.push(format!(
        "missing lease: {}",
        c.lock("x", Some(LockOptions::new().with_lease(12345))).await.map(|_| ()).map_err(err).unwrap_err()
    ));
    log
}

/// Campaign, leader, proclaim, a queued candidate, resign and errors, with an observer watching.
async fn election(mut c: Client) -> Vec<String> {
    let mut log = Vec::new();
    log.push(format!("leader of nobody: {}", c.leader("e").await.map(|_| ()).map_err(err).unwrap_err()));
    // etcd sends the stream's headers with its first message: observe from a task of its own.
    let mut oc = c.clone();
    let observer = tokio::spawn(async move {
        let mut stream = oc.observe("e").await.unwrap();
        let mut values = Vec::new();
        while values.len() < 3 {
            let msg = stream.message().await.unwrap().unwrap();
            values.push(msg.kv().unwrap().value_str().unwrap().to_string());
        }
        values
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let l1 = c.lease_grant(30, None).await.unwrap().id();
    let l2 = c.lease_grant(30, None).await.unwrap().id();
    let won = c.campaign("e", "one", l1).await.unwrap();
    let leader: LeaderKey = won.leader().unwrap().clone();
    log.push(format!("leader key is e/<lease hex>: {}", leader.key() == format!("e/{l1:x}").as_bytes()));
    log.push(format!("leader rev is the header revision: {}", leader.rev() == won.header().unwrap().revision()));
    let seen = c.leader("e").await.unwrap();
    log.push(format!("leader value: {}", seen.kv().unwrap().value_str().unwrap()));
    c.proclaim("two", Some(ProclaimOptions::new().with_leader(leader.clone()))).await.unwrap();
    let mut c2 = c.clone();
    let queued = tokio::spawn(async move { c2.campaign("e", "three", l2).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    log.push(format!("second candidate waits: {}", !queued.is_finished()));
    c.resign(Some(ResignOptions::new().with_leader(leader.clone()))).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), queued).await.unwrap().unwrap().unwrap();
    log.push(format!("second leads after resign: {}", second.leader().unwrap().lease() == l2));
    let stale = c.proclaim("x", Some(ProclaimOptions::new().with_leader(leader))).await;
    log.push(format!("proclaim by the old leader: {}", stale.map(|_| ()).map_err(err).unwrap_err()));
    let observed = tokio::time::timeout(Duration::from_secs(5), observer).await.unwrap().unwrap();
    log.push(format!("observed: {observed:?}"));
    log
}

async fn both<F, Fut>(scenario: F)
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let ms = Member::start(&["--storage-engine", "memory"]);
    let ours = scenario(ms.client().await).await;
    let etcd = Member::start_etcd(&[]);
    let theirs = scenario(etcd.client().await).await;
    assert_eq!(ours, theirs, "MetaStore (left) and etcd (right) differ");
}

#[tokio::test(flavor = "multi_thread")]
async fn contended_lock_matches_etcd() {
    both(contended_lock).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn election_with_observer_matches_etcd() {
    both(election).await;
}

/// A lock waiter whose client gives up leaves no key behind, so the next locker is not blocked.
#[tokio::test(flavor = "multi_thread")]
async fn abandoned_lock_waiter_leaves_the_queue() {
    let m = Member::start(&["--storage-engine", "memory"]);
    let mut c = m.client().await;
    let holder = c.lock("q", None).await.unwrap();
    let mut c2 = c.clone();
    let waiter = tokio::spawn(async move { c2.lock("q", None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    waiter.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = c.get("q/", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(queued.kvs().len(), 1, "only the holder's key is left");
    c.unlock(holder.key()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), c.lock("q", None)).await.unwrap().unwrap();
}
