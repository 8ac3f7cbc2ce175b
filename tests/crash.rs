//! Crash safety with the default RocksDB engine: SIGKILL the member while clients write, restart it on
//! the same data dir, and check that nothing acknowledged was lost and that revisions never go back.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Member;
use etcd_client::{Client, CompactionOptions, GetOptions};

const WRITERS: usize = 8;
/// Kill once this many puts (per cycle) have been acknowledged...
const ACKS_BEFORE_KILL: usize = 500;
/// ...or after this long, whichever comes first.
const MAX_WRITE_TIME: Duration = Duration::from_secs(20);
/// Bound on any single client call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// A put the server acknowledged.
#[derive(Clone, Debug)]
struct Ack {
    key: String,
    value: String,
    revision: i64,
}

/// Bounds a client call in time and unwraps it.
async fn bounded<T>(what: &str, call: impl std::future::Future<Output = Result<T, etcd_client::Error>>) -> T {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: no answer within {CALL_TIMEOUT:?}"),
    }
}

async fn connect(m: &Member) -> Client {
    tokio::time::timeout(CALL_TIMEOUT, m.client()).await.expect("connect within the call timeout")
}

/// SIGKILL and restart with the same flags on the same data dir; `spawn` polls `/health` (bounded).
/// Blocking, so it runs off the async workers.
async fn crash_and_restart(m: Member) -> Member {
    tokio::task::spawn_blocking(move || {
        let mut m = m;
        m.kill();
        m.spawn();
        m
    })
    .await
    .expect("restart task")
}

/// What the writers of one cycle share.
#[derive(Default)]
struct Progress {
    acks: Mutex<Vec<Ack>>,
    stop: AtomicBool,
}

/// One writer: puts `w<cycle>/<writer>/<seq>` = `v<cycle>-<writer>-<seq>` for seq = 0, 1, ... until told
/// to stop or a put fails (the member was killed), recording every acknowledged put.
async fn writer(mut c: Client, cycle: usize, id: usize, progress: Arc<Progress>) {
    for seq in 0.. {
        if progress.stop.load(Ordering::Relaxed) {
            return;
        }
        let key = format!("w{cycle}/{id}/{seq:06}");
        let value = format!("v{cycle}-{id}-{seq}");
        match tokio::time::timeout(CALL_TIMEOUT, c.put(key.clone(), value.clone(), None)).await {
            Ok(Ok(resp)) => {
                let revision = resp.header().expect("put header").revision();
                progress.acks.lock().unwrap().push(Ack { key, value, revision });
            }
            Ok(Err(_)) | Err(_) => return, // the member is gone: this put may or may not have been applied
        }
    }
}

/// Runs `WRITERS` concurrent writers, SIGKILLs the member once `ACKS_BEFORE_KILL` puts were acknowledged
/// (or `MAX_WRITE_TIME` passed) while they are still writing, and returns the acknowledged puts.
async fn write_until_killed(m: &mut Member, cycle: usize) -> Vec<Ack> {
    let progress = Arc::new(Progress::default());
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..WRITERS {
        let c = connect(m).await;
        tasks.spawn(writer(c, cycle, id, progress.clone()));
    }
    let deadline = Instant::now() + MAX_WRITE_TIME;
    while progress.acks.lock().unwrap().len() < ACKS_BEFORE_KILL && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    m.kill(); // while the writers are mid-flight
    progress.stop.store(true, Ordering::Relaxed);
    let joined = tokio::time::timeout(2 * CALL_TIMEOUT, async {
        while let Some(res) = tasks.join_next().await {
            res.expect("writer task");
        }
    })
    .await;
    assert!(joined.is_ok(), "writers did not stop after the kill");
    let acks = progress.acks.lock().unwrap().clone();
    assert!(!acks.is_empty(), "cycle {cycle}: no put was acknowledged within {MAX_WRITE_TIME:?}");
    acks
}

/// Every acknowledged put is there with its value and revision; no writer's key is there beyond the one
/// it had in flight when the member died; returns the revision the member reports.
async fn check_acked_writes(c: &mut Client, acks: &[Ack]) -> i64 {
    let all = bounded("range over w", c.get("w", Some(GetOptions::new().with_prefix()))).await;
    let current = all.header().expect("range header").revision();
    let stored: HashMap<String, (String, i64, i64)> = all
        .kvs()
        .iter()
        .map(|kv| {
            let key = kv.key_str().unwrap().to_string();
            (key, (kv.value_str().unwrap().to_string(), kv.mod_revision(), kv.create_revision()))
        })
        .collect();
    for ack in acks {
        match stored.get(&ack.key) {
            None => panic!("acknowledged put {ack:?} is lost"),
            Some((value, mod_rev, create_rev)) => {
                assert_eq!(value, &ack.value, "value of acknowledged {ack:?}");
                assert_eq!((*mod_rev, *create_rev), (ack.revision, ack.revision), "revisions of acknowledged {ack:?}");
            }
        }
    }
    // A writer's puts are acknowledged in order, so per writer (and cycle) what is stored is its
    // acknowledged keys plus at most the put it had in flight: the one numbered by its count of acks.
    let mut acks_per_writer: HashMap<&str, usize> = HashMap::new();
    for ack in acks {
        *acks_per_writer.entry(ack.key.rsplit_once('/').unwrap().0).or_default() += 1;
    }
    let acked_keys: HashSet<&str> = acks.iter().map(|a| a.key.as_str()).collect();
    for key in stored.keys().filter(|k| !acked_keys.contains(k.as_str())) {
        let (writer, seq) = key.rsplit_once('/').unwrap();
        let in_flight = acks_per_writer.get(writer).copied().unwrap_or(0);
        assert_eq!(seq.parse::<usize>().unwrap(), in_flight, "{key} is stored but was never written");
    }
    current
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill_three_times() {
    let mut m = Member::start(&[]); // default engine: RocksDB
    let mut acks: Vec<Ack> = Vec::new();
    for cycle in 0..3 {
        let new_acks = write_until_killed(&mut m, cycle).await;
        let mut revisions: Vec<i64> = new_acks.iter().map(|a| a.revision).collect();
        revisions.sort_unstable();
        revisions.dedup();
        assert_eq!(revisions.len(), new_acks.len(), "every acknowledged put has a revision of its own");
        acks.extend(new_acks);

        m = crash_and_restart(m).await;
        let mut c = connect(&m).await;
        let highest = acks.iter().map(|a| a.revision).max().unwrap();
        let current = check_acked_writes(&mut c, &acks).await;
        assert!(current >= highest, "cycle {cycle}: revision {current} after restart < acknowledged {highest}");
        let next = bounded("put after restart", c.put("after", format!("{cycle}"), None)).await;
        let next = next.header().unwrap().revision();
        eprintln!(
            "cycle {cycle}: {} acknowledged puts in all, highest revision {highest}, {current} after restart",
            acks.len()
        );
        assert!(next > highest, "cycle {cycle}: a new put got revision {next}, not above acknowledged {highest}");
        assert_eq!(next, current + 1, "the first put after the restart is the next revision");
    }
}

/// Reads `key` at `rev`: its value, or the error message.
async fn value_at(c: &mut Client, key: &str, rev: i64) -> Result<String, String> {
    let call = c.get(key, Some(GetOptions::new().with_revision(rev)));
    match tokio::time::timeout(CALL_TIMEOUT, call).await.expect("get within the call timeout") {
        Ok(r) => Ok(r.kvs().first().map(|kv| kv.value_str().unwrap().to_string()).unwrap_or_default()),
        Err(etcd_client::Error::GRpcStatus(s)) => Err(s.message().to_string()),
        Err(e) => panic!("get {key}@{rev}: {e}"),
    }
}

async fn compact_error(c: &mut Client, rev: i64) -> String {
    match tokio::time::timeout(CALL_TIMEOUT, c.compact(rev, None)).await.expect("compact within the call timeout") {
        Ok(_) => panic!("compaction at {rev} unexpectedly succeeded"),
        Err(etcd_client::Error::GRpcStatus(s)) => s.message().to_string(),
        Err(e) => panic!("compact {rev}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_survives_sigkill_three_times() {
    let mut m = Member::start(&[]); // default engine: RocksDB
                                    // Each cycle writes ten versions of "c", compacts in the middle of them (physically every other
                                    // cycle), crashes and restarts, and checks every compaction so far still holds.
    let mut compacted_at = Vec::new();
    let mut history: Vec<(i64, String)> = Vec::new(); // (revision, value of "c" at it)
    for cycle in 0..3 {
        let mut c = connect(&m).await;
        for i in 0..10 {
            let value = format!("{cycle}-{i}");
            let r = bounded("put c", c.put("c", value.clone(), None)).await;
            history.push((r.header().unwrap().revision(), value));
        }
        let (rev, _) = history[history.len() - 5].clone();
        let options = (cycle % 2 == 1).then(|| CompactionOptions::new().with_physical());
        bounded("compact", c.compact(rev, options)).await;
        compacted_at.push(rev);
        drop(c);

        m = crash_and_restart(m).await;
        let mut c = connect(&m).await;
        let compacted = *compacted_at.last().unwrap();
        let below = compacted_at[..compacted_at.len() - 1].iter().copied().chain([1, compacted - 1]);
        for rev in below {
            assert_eq!(value_at(&mut c, "c", rev).await, Err(COMPACTED.into()), "cycle {cycle}: get @{rev}");
        }
        for (rev, value) in history.iter().filter(|(rev, _)| *rev >= compacted) {
            assert_eq!(value_at(&mut c, "c", *rev).await, Ok(value.clone()), "cycle {cycle}: get @{rev}");
        }
        assert_eq!(compact_error(&mut c, compacted).await, COMPACTED, "cycle {cycle}: compacting again");
        assert_eq!(compact_error(&mut c, compacted - 1).await, COMPACTED, "cycle {cycle}: compacting lower");
        let now = bounded("get c", c.get("c", None)).await;
        let kv = &now.kvs()[0];
        let (last_rev, last_value) = history.last().unwrap();
        assert_eq!((kv.value_str().unwrap(), kv.mod_revision()), (last_value.as_str(), *last_rev));
        assert_eq!((kv.create_revision(), kv.version()), (history[0].0, history.len() as i64), "key metadata");
        assert_eq!(now.header().unwrap().revision(), *last_rev, "revision after the restart");
    }
}

/// The keys each lease carries after a restart (rebuilt in the same pass over history as the key
/// index): only the newest version of a live key counts, so a key re-put without its lease, re-put
/// with another lease, or deleted is not attached; history compacted below the versions must not
/// matter either. Revoking then deletes exactly the attached keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_attachments_survive_sigkill() {
    use etcd_client::{LeaseTimeToLiveOptions, PutOptions};
    let m = Member::start(&[]);
    let mut c = connect(&m).await;
    let a = bounded("grant a", c.lease_grant(600, None)).await.id();
    let b = bounded("grant b", c.lease_grant(600, None)).await.id();
    let on = |id| Some(PutOptions::new().with_lease(id));
    for key in ["kept", "unleased", "moved", "deleted", "again"] {
        bounded("put", c.put(key, "1", on(a))).await;
    }
    bounded("re-put without lease", c.put("unleased", "2", None)).await;
    bounded("re-put with b", c.put("moved", "2", on(b))).await;
    bounded("delete", c.delete("deleted", None)).await;
    bounded("delete again", c.delete("again", None)).await;
    let last = bounded("put again", c.put("again", "2", on(a))).await.header().unwrap().revision();
    bounded("compact", c.compact(last, None)).await;
    drop(c);

    let m = crash_and_restart(m).await;
    let mut c = connect(&m).await;
    let attached = |r: etcd_client::LeaseTimeToLiveResponse| {
        let mut keys: Vec<String> = r.keys().iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
        keys.sort();
        keys
    };
    let keys = || Some(LeaseTimeToLiveOptions::new().with_keys());
    let ttl_a = bounded("ttl a", c.lease_time_to_live(a, keys())).await;
    assert_eq!(attached(ttl_a), ["again", "kept"]);
    let ttl_b = bounded("ttl b", c.lease_time_to_live(b, keys())).await;
    assert_eq!(attached(ttl_b), ["moved"]);
    bounded("revoke a", c.lease_revoke(a)).await;
    let left = bounded("get all", c.get("", Some(GetOptions::new().with_from_key()))).await;
    let left: Vec<&str> = left.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
    assert_eq!(left, ["moved", "unleased"]);
}

/// A SIGTERM stops the member cleanly (exit status 0, storage closed before exit) after the
/// compaction's background deletion ran, and a restart finds every key. Failed before the purge
/// thread was joined at shutdown: RocksDB, still open in that thread, aborted the process.
#[test]
fn a_member_stopped_with_sigterm_exits_cleanly_and_keeps_its_data() {
    let mut m = Member::start(&[]);
    for i in 0..20 {
        common::ok(m.etcdctl(&["put", &format!("k{i:02}"), "v"]));
    }
    common::ok(m.etcdctl(&["compaction", "10"]));
    let status = m.stop();
    assert!(status.success(), "exit status {status} after SIGTERM; log:\n{}", m.log());
    m.spawn();
    let keys = common::ok(m.etcdctl(&["get", "k", "--prefix", "--keys-only"]));
    assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 20, "keys after restart:\n{keys}");
}
