//! The SDK's concurrency recipes against MetaStore and real etcd 3.4.23: mutual exclusion under
//! contention, fencing of a paused holder, session loss, elections (with a leader process killed),
//! STM transfers, reader-writer lock and semaphore, and interop with `etcdctl lock` / `elect`.

mod common;
mod sdk;

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Txn, TxnOp};
use metastore_client::concurrency::{Election, Isolation, Mutex, RwLock, Semaphore, Session, Stm};
use metastore_client::Error;
use sdk::{both, connect, count, eventually, lease_gone, metastorectl, Proc};

async fn get_str(c: &Client, key: &str) -> Option<String> {
    let r = c.kv_client().get(key, None).await.expect("get");
    r.kvs().first().map(|kv| kv.value_str().expect("utf8").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutex_contenders_hold_one_at_a_time() {
    both(|_, m| async move {
        const N: usize = 5;
        const ROUNDS: usize = 4;
        let holders = Arc::new(AtomicI32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..N {
            let client = connect(&m).await;
            let holders = holders.clone();
            tasks.push(tokio::spawn(async move {
                let session = Session::new(&client, 10).await.expect("session");
                let mut lock = Mutex::new(&session, "locks/counter");
                for _ in 0..ROUNDS {
                    lock.lock().await.expect("lock");
                    assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                    // An unguarded read-modify-write: loses updates unless the lock excludes.
                    let n: i64 = get_str(&client, "counter").await.map_or(0, |v| v.parse().expect("number"));
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    client.kv_client().put("counter", (n + 1).to_string(), None).await.expect("put");
                    holders.fetch_sub(1, Ordering::SeqCst);
                    lock.unlock().await.expect("unlock");
                }
                session.close().await.expect("close");
            }));
        }
        for t in tasks {
            t.await.expect("contender");
        }
        let client = connect(&m).await;
        assert_eq!(get_str(&client, "counter").await.as_deref(), Some((N * ROUNDS).to_string().as_str()));
        assert_eq!(count(&client, "locks/counter/").await, 0, "no lock keys left");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_holder_loses_lock_and_its_guarded_write_is_refused() {
    both(|_, m| async move {
        let client = connect(&m).await;
        let mut paused = Session::new(&client, 2).await.expect("session");
        let mut a = Mutex::new(&paused, "locks/data");
        a.lock().await.expect("lock a");
        let stale = a.fence().expect("fence");
        let put = |v: &str| Txn::new().and_then([TxnOp::put("data", v, None)]);
        stale.txn(put("a1")).await.expect("write while holding");

        // The holder stops (as if SIGSTOPped) past its TTL; another process takes the lock.
        paused.orphan();
        lease_gone(&client, paused.lease_id(), Duration::from_secs(15)).await;
        let other = Session::new(&client, 10).await.expect("session");
        let mut b = Mutex::new(&other, "locks/data");
        tokio::time::timeout(Duration::from_secs(10), b.lock()).await.expect("b locks in time").expect("lock b");
        let fresh = b.fence().expect("fence");
        assert!(fresh.token() > stale.token(), "fencing tokens increase");
        fresh.txn(put("b1")).await.expect("write by the new holder");

        // The paused holder wakes up and writes through its old fence: refused, nothing applied.
        match stale.txn(put("a2")).await {
            Err(Error::LockLost { token }) => assert_eq!(token, stale.token()),
            other => panic!("expected LockLost, got {other:?}"),
        }
        assert_eq!(get_str(&client, "data").await.as_deref(), Some("b1"));
        b.unlock().await.expect("unlock");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_session_is_reported_and_its_locks_refused() {
    both(|_, m| async move {
        let client = connect(&m).await;
        let session = Session::new(&client, 5).await.expect("session");
        let mut lock = Mutex::new(&session, "locks/s");
        lock.lock().await.expect("lock");
        assert!(session.is_alive());
        client.lease_client().revoke(session.lease_id()).await.expect("revoke");
        tokio::time::timeout(Duration::from_secs(15), session.lost()).await.expect("loss reported within the TTL");
        assert!(!session.is_alive());
        assert!(matches!(lock.lock().await, Err(Error::SessionExpired)));
        assert_eq!(count(&client, "locks/s/").await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn try_lock_and_etcdctl_lock_exclude_each_other() {
    both(|_, m| async move {
        let client = connect(&m).await;
        let s1 = Session::new(&client, 10).await.expect("session");
        let s2 = Session::new(&client, 10).await.expect("session");
        let mut ours = Mutex::new(&s1, "shared");
        let mut second = Mutex::new(&s2, "shared");
        ours.lock().await.expect("lock");
        assert!(matches!(second.try_lock().await, Err(Error::Locked)));
        assert_eq!(count(&client, "shared/").await, 1, "a failed try_lock leaves no key");

        // etcdctl queues behind us with the same key layout, then takes the lock when we unlock.
        let ep = format!("--endpoints={}", m.endpoint());
        let mut ctl = Proc::spawn("etcdctl".as_ref(), &[&ep, "lock", "shared"]);
        eventually(Duration::from_secs(10), "etcdctl queued", || async { count(&client, "shared/").await == 2 }).await;
        ours.unlock().await.expect("unlock");
        let held = ctl.line().await;
        assert!(held.starts_with("shared/"), "etcdctl prints its lock key: {held}");
        assert!(matches!(second.try_lock().await, Err(Error::Locked)), "etcdctl's hold excludes us");

        // Interrupted, etcdctl releases; we get it.
        ctl.signal("INT");
        ctl.wait().await;
        tokio::time::timeout(Duration::from_secs(10), second.lock()).await.expect("in time").expect("lock");
        assert_eq!(second.key(), format!("shared/{:x}", s2.lease_id()));
        second.unlock().await.expect("unlock");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn election_campaign_proclaim_observe_resign() {
    both(|_, m| async move {
        let client = connect(&m).await;
        assert!(matches!(Election::leader(&client, "el").await, Err(Error::NoLeader)));
        let mut observer = Election::observe(&client, "el");
        let s1 = Session::new(&client, 10).await.expect("session");
        let s2 = Session::new(&client, 10).await.expect("session");
        let mut e1 = Election::new(&s1, "el");
        e1.campaign("a").await.expect("campaign a");
        assert_eq!(observer.next().await.expect("item").expect("leader").value, b"a");

        let second = tokio::spawn(async move {
            let mut e2 = Election::new(&s2, "el");
            e2.campaign("b").await.expect("campaign b");
            e2.proclaim("b2").await.expect("proclaim b2");
            (e2, s2)
        });
        eventually(Duration::from_secs(10), "second candidate queued", || async { count(&client, "el/").await == 2 })
            .await;
        assert!(!second.is_finished(), "b must wait while a leads");
        e1.proclaim("a2").await.expect("proclaim");
        assert_eq!(Election::leader(&client, "el").await.expect("leader").value, b"a2");
        assert_eq!(observer.next().await.expect("item").expect("leader").value, b"a2");

        e1.resign().await.expect("resign");
        let (e2, _s2) = tokio::time::timeout(Duration::from_secs(10), second).await.expect("b leads").expect("task");
        assert!(matches!(e1.proclaim("x").await, Err(Error::NotLeader)));
        let leader = Election::leader(&client, "el").await.expect("leader");
        assert_eq!(leader.value, b"b2");
        assert_eq!(leader.key, e2.key().as_bytes());
        let mut seen = Vec::new();
        while seen.last().map(Vec::as_slice) != Some(b"b2".as_slice()) {
            seen.push(observer.next().await.expect("item").expect("leader").value);
        }
        assert!(seen.iter().all(|v| v == b"b" || v == b"b2"), "{seen:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn election_interoperates_with_etcdctl_elect() {
    both(|_, m| async move {
        let client = connect(&m).await;
        let s = Session::new(&client, 10).await.expect("session");
        let mut ours = Election::new(&s, "mixed");
        ours.campaign("ours").await.expect("campaign");
        let ep = format!("--endpoints={}", m.endpoint());
        let mut ctl = Proc::spawn("etcdctl".as_ref(), &[&ep, "elect", "mixed", "theirs"]);
        eventually(Duration::from_secs(10), "etcdctl candidate queued", || async {
            count(&client, "mixed/").await == 2
        })
        .await;
        assert_eq!(Election::leader(&client, "mixed").await.expect("leader").value, b"ours");
        ours.resign().await.expect("resign");
        assert!(ctl.line().await.starts_with("mixed/"));
        assert_eq!(ctl.line().await, "theirs");
        assert_eq!(Election::leader(&client, "mixed").await.expect("leader").value, b"theirs");
        ctl.signal("INT");
        ctl.wait().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn election_fails_over_when_the_leader_process_is_killed() {
    both(|_, m| async move {
        let client = connect(&m).await;
        let ep = format!("--endpoints={}", m.endpoint());
        let mut leader = Proc::spawn(&metastorectl(), &[&ep, "elect", "--ttl", "2", "fo", "process-a"]);
        assert!(leader.line().await.starts_with("fo/"), "metastorectl prints its key once it leads");
        assert_eq!(leader.line().await, "process-a");
        let s = Session::new(&client, 10).await.expect("session");
        let standby = tokio::spawn(async move {
            let mut e = Election::new(&s, "fo");
            e.campaign("standby").await.expect("campaign");
            (e, s)
        });
        eventually(Duration::from_secs(10), "standby queued", || async { count(&client, "fo/").await == 2 }).await;
        leader.signal("KILL");
        leader.wait().await;
        let (_e, _s) = tokio::time::timeout(Duration::from_secs(20), standby).await.expect("failover").expect("task");
        assert_eq!(Election::leader(&client, "fo").await.expect("leader").value, b"standby");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stm_transfers_keep_the_total_under_contention() {
    both(|_, m| async move {
        for isolation in [Isolation::Serializable, Isolation::RepeatableRead] {
            let client = connect(&m).await;
            const ACCOUNTS: u64 = 4;
            let key = move |i: u64| format!("stm/{isolation:?}/acct{i}");
            for i in 0..ACCOUNTS {
                client.kv_client().put(key(i), "100", None).await.expect("seed");
            }
            let mut tasks = Vec::new();
            for worker in 0..4u64 {
                let stm = Stm::new(&connect(&m).await, isolation);
                tasks.push(tokio::spawn(async move {
                    let mut seed = worker * 7919 + 17;
                    for _ in 0..10 {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let from = (seed >> 33) % ACCOUNTS;
                        let to = (from + 1 + (seed >> 40) % (ACCOUNTS - 1)) % ACCOUNTS;
                        let amount = 1 + (seed >> 50) as i64 % 10;
                        let (kf, kt) = (key(from), key(to));
                        stm.run(|tx| {
                            let (kf, kt) = (kf.clone(), kt.clone());
                            Box::pin(async move {
                                let a: i64 = tx.get_str(kf.clone()).await?.expect("account").parse().expect("number");
                                let b: i64 = tx.get_str(kt.clone()).await?.expect("account").parse().expect("number");
                                tx.put(kf, (a - amount).to_string());
                                tx.put(kt, (b + amount).to_string());
                                Ok::<_, Error>(())
                            })
                        })
                        .await
                        .expect("transfer");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("worker");
            }
            let mut total = 0;
            for i in 0..ACCOUNTS {
                total += get_str(&client, &key(i)).await.expect("account").parse::<i64>().expect("number");
            }
            assert_eq!(total, 100 * ACCOUNTS as i64, "{isolation:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rwlock_shares_readers_and_semaphore_counts_permits() {
    both(|_, m| async move {
        let client = connect(&m).await;
        let sessions: Vec<Session> = {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(Session::new(&client, 10).await.expect("session"));
            }
            v
        };
        let mut r1 = RwLock::new(&sessions[0], "rw");
        let mut r2 = RwLock::new(&sessions[1], "rw");
        r1.read().await.expect("r1");
        tokio::time::timeout(Duration::from_secs(10), r2.read()).await.expect("readers share").expect("r2");
        let mut w = RwLock::new(&sessions[2], "rw");
        let writer = tokio::spawn(async move {
            w.write().await.expect("write");
            w
        });
        eventually(Duration::from_secs(10), "writer queued", || async { count(&client, "rw/write/").await == 1 }).await;
        assert!(!writer.is_finished(), "writer waits for readers");
        r1.unlock().await.expect("unlock");
        r2.unlock().await.expect("unlock");
        let mut w = tokio::time::timeout(Duration::from_secs(10), writer).await.expect("writer in").expect("task");
        let mut r3 = RwLock::new(&sessions[0], "rw");
        let reader = tokio::spawn(async move { r3.read().await.map(|_| r3) });
        eventually(Duration::from_secs(10), "reader queued", || async { count(&client, "rw/read/").await == 1 }).await;
        assert!(!reader.is_finished(), "reader waits for the writer");
        w.unlock().await.expect("unlock");
        let mut r3 =
            tokio::time::timeout(Duration::from_secs(10), reader).await.expect("in").expect("task").expect("read");
        r3.unlock().await.expect("unlock");

        let mut p1 = Semaphore::new(&sessions[0], "sem", 2);
        let mut p2 = Semaphore::new(&sessions[1], "sem", 2);
        let mut p3 = Semaphore::new(&sessions[2], "sem", 2);
        p1.acquire().await.expect("p1");
        p2.try_acquire().await.expect("p2");
        assert!(matches!(p3.try_acquire().await, Err(Error::Locked)));
        let third = tokio::spawn(async move { p3.acquire().await.map(|_| p3) });
        eventually(Duration::from_secs(10), "third queued", || async { count(&client, "sem/").await == 3 }).await;
        assert!(!third.is_finished());
        p2.release().await.expect("release");
        let p3 = tokio::time::timeout(Duration::from_secs(10), third).await.expect("in").expect("task").expect("p3");
        assert!(p3.fence().expect("fence").token() > 0);
        p1.release().await.expect("release");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_is_lost_when_keep_alives_fail_for_a_whole_ttl() {
    both(|_, m| async move {
        let client = connect(&m).await;
        let session = Session::new(&client, 2).await.expect("session");
        m.signal("STOP"); // the server stops answering; the lease cannot be refreshed
        let lost = tokio::time::timeout(Duration::from_secs(10), session.lost()).await;
        m.signal("CONT");
        lost.expect("loss reported about one TTL after the last keep-alive");
        assert!(!session.is_alive());
    })
    .await;
}
