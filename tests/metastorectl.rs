//! `metastorectl` against MetaStore and real etcd 3.4.23: tables and config, index sets, buffer
//! claims from a process that exits without releasing them (and their recovery), `lock -- CMD`,
//! `elect -l`, JSON output and exit codes.

mod common;
mod sdk;

use std::process::Output;
use std::time::Duration;

use metastore_client::buffer::{Buffers, Segment};
use metastore_client::concurrency::{Election, Mutex, Session};
use metastore_client::Error;
use sdk::{both, connect, count, eventually, metastorectl, Proc};
use serde_json::Value;

async fn ctl(endpoint: &str, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(metastorectl())
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .env("USER", "tester")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), run).await.expect("metastorectl within 30 s").expect("run")
}

/// stdout of a call that must succeed.
async fn ok(endpoint: &str, args: &[&str]) -> String {
    let out = ctl(endpoint, args).await;
    assert!(out.status.success(), "{args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8")
}

async fn json(endpoint: &str, args: &[&str]) -> Value {
    let mut all = vec!["-w", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(endpoint, &all).await).expect("json output")
}

/// Exit code and stderr of a call that must fail.
async fn fails(endpoint: &str, args: &[&str]) -> (i32, String) {
    let out = ctl(endpoint, args).await;
    assert!(!out.status.success(), "{args:?} unexpectedly succeeded");
    (out.status.code().expect("exit code"), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tables_and_config_from_the_command_line() {
    both(|_, m| async move {
        let ep = m.endpoint();
        let ep = ep.as_str();
        assert_eq!(
            ok(ep, &["table", "create", "events", "--set", "retention_days=7"]).await.trim(),
            "table events created"
        );
        assert_eq!(ok(ep, &["table", "create", "events", "--if-not-exists"]).await.trim(), "table events exists");
        assert_eq!(fails(ep, &["table", "create", "events"]).await.0, 4);
        let (code, err) = fails(ep, &["table", "create", "9lives"]).await;
        assert_eq!(code, 2);
        assert!(err.starts_with("Error: invalid argument"), "{err}");
        ok(ep, &["table", "create", "metrics"]).await;
        assert_eq!(json(ep, &["table", "list", "ev*"]).await, serde_json::json!(["events"]));
        assert_eq!(ok(ep, &["table", "list"]).await, "NAME\nevents\nmetrics\n");

        let d = json(ep, &["table", "describe", "events"]).await;
        assert_eq!(d["config"]["retention_days"], 7);
        assert_eq!(d["created_by"], "tester");
        let text = ok(ep, &["table", "describe", "events"]).await;
        assert!(text.lines().any(|l| l.starts_with("config.retention_days") && l.ends_with(" 7")), "{text}");
        assert_eq!(fails(ep, &["table", "describe", "nope"]).await.0, 3);

        let mut watcher =
            Proc::spawn(&metastorectl(), &["--endpoints", ep, "-w", "json", "table", "config", "watch", "events"]);
        assert_eq!(watcher.line().await, r#"{"watching":"events"}"#);
        let v = json(
            ep,
            &["table", "config", "set", "events", "buffer_size=4096", "properties.codec=zstd", "--reason", "tune"],
        )
        .await;
        assert_eq!(v["version"], 2);
        let seen: Value = serde_json::from_str(&watcher.line().await).expect("json");
        assert_eq!((seen["version"].as_u64(), seen["reason"].as_str()), (Some(2), Some("tune")));
        watcher.signal("INT");
        assert!(watcher.wait().await.success());
        assert_eq!(fails(ep, &["table", "config", "set", "events", "bogus=1"]).await.0, 2);
        let c = json(ep, &["table", "config", "get", "events"]).await;
        assert_eq!((c["version"].as_u64(), c["config"]["buffer_size"].as_u64()), (Some(2), Some(4096)));
        let v = json(ep, &["table", "config", "rollback", "events", "1", "--by", "ops"]).await;
        assert_eq!((v["version"].as_u64(), v["changed_by"].as_str()), (Some(3), Some("ops")));
        let h = json(ep, &["table", "config", "history", "events"]).await;
        let reasons: Vec<&str> =
            h.as_array().expect("array").iter().map(|v| v["reason"].as_str().expect("reason")).collect();
        assert_eq!(reasons, ["", "tune", "rollback to version 1"]);
        let text = ok(ep, &["table", "config", "history", "events"]).await;
        assert!(text.starts_with("VERSION  AT_MS"), "{text}");
        assert_eq!(json(ep, &["table", "config", "get", "events"]).await["config"]["buffer_size"], 64 << 20);
        assert_eq!(fails(ep, &["table", "config", "rollback", "events", "42"]).await.0, 3);

        ok(ep, &["index", "add", "events", "u1", "2024-05-01", "s3://b/1.parquet:100:10"]).await;
        let (code, err) = fails(ep, &["table", "drop", "events"]).await;
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("cascade"), "{err}");
        assert_eq!(ok(ep, &["table", "drop", "events", "--cascade"]).await.trim(), "table events dropped");
        assert_eq!(fails(ep, &["table", "drop", "events"]).await.0, 3);
        assert_eq!(ok(ep, &["table", "drop", "events", "--if-exists"]).await.trim(), "table events does not exist");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_sets_from_the_command_line() {
    both(|_, m| async move {
        let ep = m.endpoint();
        let ep = ep.as_str();
        ok(ep, &["table", "create", "t"]).await;
        ok(ep, &["index", "add", "t", "u1", "d1", "a.parquet:100:10", "b.parquet:200:20"]).await;
        ok(ep, &["index", "add", "t", "u2", "d1", "c.parquet:300:30"]).await;
        let added = json(ep, &["index", "add", "t", "u1", "d2", "dir/with:colon/d.parquet"]).await;
        assert_eq!(added["stats"]["file_count"], 4);
        let by_day = json(ep, &["index", "ls", "t", "--day", "d1"]).await;
        let paths: Vec<&str> =
            by_day.as_array().expect("array").iter().map(|e| e["file"]["path"].as_str().expect("path")).collect();
        assert_eq!(paths, ["a.parquet", "b.parquet", "c.parquet"]);
        assert_eq!(json(ep, &["index", "ls", "t", "--id", "u1"]).await.as_array().expect("array").len(), 3);
        assert_eq!(
            json(ep, &["index", "ls", "t", "--id", "u1", "--day", "d2"]).await[0]["file"]["path"],
            "dir/with:colon/d.parquet"
        );
        let table = ok(ep, &["index", "ls", "t"]).await;
        assert_eq!(table.lines().count(), 5, "{table}");
        assert!(table.starts_with("ID  DAY  PATH"), "{table}");
        ok(ep, &["index", "rm", "t", "u1", "d1", "a.parquet"]).await;
        assert_eq!(json(ep, &["index", "ls", "t", "--day", "d1"]).await.as_array().expect("array").len(), 2);
        assert_eq!(json(ep, &["table", "describe", "t"]).await["stats"]["size_bytes"], 500);
        assert_eq!(fails(ep, &["index", "add", "nope", "u", "d", "x"]).await.0, 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buffer_claim_of_an_exited_process_holds_until_its_lease_expires_then_recovers() {
    both(|_, m| async move {
        let ep = m.endpoint();
        let ep = ep.as_str();
        let client = connect(&m).await;
        ok(ep, &["table", "create", "t"]).await;
        let buffers = Buffers::new(&client);
        let seg = Segment { rows: 3, bytes: 30, first_ts: 1, last_ts: 2, location: "wal/1".into() };
        buffers.append("t", "u", "d", &seg).await.expect("append");
        buffers.append("t", "u", "d2", &seg).await.expect("append");

        let ls = ok(ep, &["buffer", "ls"]).await;
        assert!(ls.starts_with("TABLE  ID  DAY  SEGMENTS  ROWS  BYTES  CLAIMED_BY"), "{ls}");
        // A flusher process claims and goes away without releasing: like a crash mid-flush.
        let claimed = json(ep, &["buffer", "claim", "t", "--owner", "crashy", "--ttl", "2", "--max", "1"]).await;
        assert_eq!(claimed.as_array().expect("array").len(), 1);
        let (id, day) = (claimed[0]["id"].as_str().expect("id"), claimed[0]["day"].as_str().expect("day"));
        let session = Session::new(&client, 10).await.expect("session");
        assert!(matches!(buffers.claim_one(&session, "t", id, day, "sdk").await, Err(Error::Locked)));
        let waiting = json(ep, &["buffer", "recover", "t"]).await;
        assert_eq!(waiting.as_array().expect("array").len(), 2, "both buffers wait");
        assert_eq!(waiting.as_array().expect("array").iter().filter(|b| b["claim"]["owner"] == "crashy").count(), 1);

        eventually(Duration::from_secs(15), "claim expires with its lease", || async {
            json(ep, &["buffer", "ls", "t"]).await.as_array().expect("array").iter().all(|b| b["claim"].is_null())
        })
        .await;
        let c = buffers.claim_one(&session, "t", id, day, "sdk").await.expect("recovered");
        buffers.commit(&c, &[]).await.expect("commit");

        // A hung flusher (live lease): an operator releases its claims by force.
        json(ep, &["buffer", "claim", "t", "--owner", "hung", "--ttl", "60", "--max", "5"]).await;
        assert_eq!(count(&client, &format!("{}data/t/claim/", metastore_client::DEFAULT_ROOT)).await, 1);
        let after = json(ep, &["buffer", "recover", "t", "--release"]).await;
        assert!(after.as_array().expect("array").iter().all(|b| b["claim"].is_null()), "{after}");
        buffers.claim(&session, "t", "sdk", 5).await.expect("claim").len().eq(&1).then_some(()).expect("one claim");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_runs_a_command_under_the_lock_and_elect_observes() {
    both(|_, m| async move {
        let ep = m.endpoint();
        let ep = ep.as_str();
        let client = connect(&m).await;
        let out = ok(ep, &["lock", "L", "--", "sh", "-c", "echo $METASTORE_LOCK_KEY $METASTORE_LOCK_TOKEN"]).await;
        let mut words = out.split_whitespace();
        assert!(words.next().expect("key").starts_with("L/"), "{out}");
        assert!(words.next().expect("token").parse::<i64>().expect("token") > 0);
        assert_eq!(ctl(ep, &["lock", "L", "--", "sh", "-c", "exit 7"]).await.status.code(), Some(7));
        assert_eq!(count(&client, "L/").await, 0, "released after the command");

        // Held by the SDK: the command waits, then runs once we unlock.
        let session = Session::new(&client, 10).await.expect("session");
        let mut held = Mutex::new(&session, "L");
        held.lock().await.expect("lock");
        let mut waiter = Proc::spawn(&metastorectl(), &["--endpoints", ep, "lock", "L", "--", "echo", "ran"]);
        eventually(Duration::from_secs(10), "metastorectl queued", || async { count(&client, "L/").await == 2 }).await;
        assert!(waiter.child.try_wait().expect("try_wait").is_none(), "must wait for the lock");
        held.unlock().await.expect("unlock");
        assert_eq!(waiter.line().await, "ran");
        assert!(waiter.wait().await.success());

        let mut observer = Proc::spawn(&metastorectl(), &["--endpoints", ep, "elect", "-l", "E"]);
        let mut e = Election::new(&session, "E");
        e.campaign("v1").await.expect("campaign");
        assert!(observer.line().await.starts_with("E/"));
        assert_eq!(observer.line().await, "v1");
        e.proclaim("v2").await.expect("proclaim");
        assert!(observer.line().await.starts_with("E/"));
        assert_eq!(observer.line().await, "v2");
        observer.signal("INT");
        assert!(observer.wait().await.success());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopped_lock_holder_loses_the_lock_and_exits_6_when_resumed() {
    both(|_, m| async move {
        let ep = m.endpoint();
        let client = connect(&m).await;
        let mut holder = Proc::spawn(&metastorectl(), &["--endpoints", &ep, "lock", "--ttl", "2", "P"]);
        let key = holder.line().await;
        assert!(key.starts_with("P/"), "{key}");
        let lease = i64::from_str_radix(&key["P/".len()..], 16).expect("lease id in the key");
        holder.signal("STOP");
        sdk::lease_gone(&client, lease, Duration::from_secs(15)).await;
        let session = Session::new(&client, 10).await.expect("session");
        let mut next = Mutex::new(&session, "P");
        tokio::time::timeout(Duration::from_secs(10), next.lock()).await.expect("lock in time").expect("lock");
        holder.signal("CONT");
        assert_eq!(holder.wait().await.code(), Some(6), "the resumed holder learns its session is gone");
        assert!(next.fence().expect("fence").token() > 0);
        next.unlock().await.expect("unlock");
    })
    .await;
}
