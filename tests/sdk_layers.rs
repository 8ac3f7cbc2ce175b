//! The SDK's metadata layers against MetaStore and real etcd 3.4.23: catalog tables and their
//! config (versions, history, rollback, watch), index lookups by id / day / table, drop cascade,
//! concurrent flushers, a dead flusher's buffer recovered, and grants through the Auth API.

mod common;
mod sdk;

use std::collections::BTreeMap;
use std::time::Duration;

use metastore_client::buffer::{Buffers, Segment};
use metastore_client::catalog::{Access, Catalog, ConfigOverrides, Settings};
use metastore_client::concurrency::Session;
use metastore_client::index::{DataFile, Index};
use metastore_client::Error;
use sdk::{both, connect, count, lease_gone, Server};

const ROOT: &str = metastore_client::DEFAULT_ROOT;

fn seg(rows: u64, first: i64) -> Segment {
    Segment { rows, bytes: rows * 100, first_ts: first, last_ts: first + 10, location: format!("wal/{first}") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalog_create_list_describe_drop() {
    both(|_, m| async move {
        let client = connect(&m).await;
        let cat = Catalog::new(&client);
        let mut o = ConfigOverrides::default();
        o.set("retention_days", "7").expect("set");
        assert!(cat.create_table("events", Some(o), false, "alice", "new").await.expect("create"));
        assert!(!cat.create_table("events", None, true, "alice", "again").await.expect("if_not_exists"));
        assert!(matches!(cat.create_table("events", None, false, "a", "").await, Err(Error::AlreadyExists(_))));
        for bad in ["1abc", "a-b", "", &"x".repeat(65)] {
            assert!(
                matches!(cat.create_table(bad, None, false, "a", "").await, Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
        cat.create_table("event_log", None, false, "bob", "").await.expect("create");
        cat.create_table("metrics", None, false, "bob", "").await.expect("create");
        assert_eq!(cat.list_tables(None).await.expect("list"), ["event_log", "events", "metrics"]);
        assert_eq!(cat.list_tables(Some("event*")).await.expect("list"), ["event_log", "events"]);
        assert_eq!(cat.list_tables(Some("?etrics")).await.expect("list"), ["metrics"]);

        // Per-table overrides win over the default; the rest follows the default, even later.
        let info = cat.describe("events").await.expect("describe");
        assert_eq!(info.config.retention_days, 7);
        assert_eq!(info.config.buffer_size, 64 << 20);
        assert_eq!((info.created_by.as_str(), info.config_version), ("alice", 1));
        let mut settings = Settings::default();
        settings.default_config.buffer_size = 1024;
        settings.default_config.retention_days = 90;
        settings.max_tables = 3;
        cat.set_settings(&settings).await.expect("settings");
        let info = cat.describe("events").await.expect("describe");
        assert_eq!((info.config.buffer_size, info.config.retention_days), (1024, 7));
        assert_eq!(cat.describe("metrics").await.expect("describe").config.retention_days, 90);
        assert!(matches!(cat.describe("nope").await, Err(Error::NotFound(_))));

        assert!(matches!(cat.create_table("fourth", None, false, "a", "").await, Err(Error::TableLimit(3))));
        assert!(cat.drop_table("metrics", false, false).await.expect("drop"));
        cat.create_table("fourth", None, false, "a", "").await.expect("room again");
        assert!(!cat.drop_table("metrics", true, false).await.expect("if_exists"));
        assert!(matches!(cat.drop_table("metrics", false, false).await, Err(Error::NotFound(_))));
        assert_eq!(count(&client, &format!("{ROOT}data/metrics/")).await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_changes_are_versioned_watched_and_rolled_back() {
    both(|_, m| async move {
        let client = connect(&m).await;
        let cat = Catalog::new(&client);
        let mut v1 = ConfigOverrides::default();
        v1.set("buffer_size", "1000").expect("set");
        cat.create_table("t", Some(v1.clone()), false, "alice", "create").await.expect("create");
        let mut watch = cat.watch_config("t").await.expect("watch");

        let mut p = ConfigOverrides::default();
        p.set("buffer_size", "2000").expect("set");
        p.set("properties.codec", "zstd").expect("set");
        assert_eq!(cat.set_config("t", &p, "bob", "bigger").await.expect("v2").version, 2);
        let mut p = ConfigOverrides::default();
        p.set("backup_enabled", "true").expect("set");
        assert_eq!(cat.set_config("t", &p, "carol", "backups").await.expect("v3").version, 3);
        assert!(matches!(ConfigOverrides::default().set("nope", "1"), Err(Error::InvalidArgument(_))));
        assert!(matches!(ConfigOverrides::default().set("buffer_size", "x"), Err(Error::InvalidArgument(_))));

        let info = cat.describe("t").await.expect("describe");
        assert_eq!(info.config.buffer_size, 2000);
        assert!(info.config.backup_enabled);
        assert_eq!(info.config.properties.get("codec").map(String::as_str), Some("zstd"));

        let v4 = cat.rollback("t", 1, "dave", "").await.expect("rollback");
        assert_eq!((v4.version, &v4.overrides, v4.reason.as_str()), (4, &v1, "rollback to version 1"));
        let info = cat.describe("t").await.expect("describe");
        assert_eq!((info.config_version, info.config.buffer_size, info.config.backup_enabled), (4, 1000, false));
        assert!(matches!(cat.rollback("t", 9, "d", "").await, Err(Error::NotFound(_))));

        let history = cat.history("t").await.expect("history");
        let trail: Vec<(u64, &str, &str)> =
            history.iter().map(|v| (v.version, v.changed_by.as_str(), v.reason.as_str())).collect();
        assert_eq!(
            trail,
            [
                (1, "alice", "create"),
                (2, "bob", "bigger"),
                (3, "carol", "backups"),
                (4, "dave", "rollback to version 1")
            ]
        );
        let mut watched = Vec::new();
        while watched.len() < 3 {
            let v = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("in time").expect("watch");
            watched.push(v.expect("a version").version);
        }
        assert_eq!(watched, [2, 3, 4], "every change, in order");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_lookups_by_id_day_and_table_with_stats_in_the_same_txn() {
    both(|_, m| async move {
        let client = connect(&m).await;
        Catalog::new(&client).create_table("t", None, false, "a", "").await.expect("create");
        let idx = Index::new(&client);
        for id in ["u1", "u2"] {
            for (n, day) in ["2024-05-01", "2024-05-02"].iter().enumerate() {
                let f = |i: u32| {
                    DataFile::new(format!("s3://b/t/{id}/{day}/{i}.parquet"), 1000, 10)
                        .with_records_between(100 * n as i64, 100 * n as i64 + 50)
                };
                idx.add("t", id, day, &[f(0), f(1)]).await.expect("add");
            }
        }
        let stats = Catalog::new(&client).stats("t").await.expect("stats");
        assert_eq!((stats.file_count, stats.size_bytes, stats.record_count), (8, 8000, 80));
        assert_eq!((stats.oldest_record, stats.newest_record), (Some(0), Some(150)));
        assert!(stats.last_write.is_some());

        let by_id = idx.by_id("t", "u1").await.expect("by id");
        assert_eq!(by_id.len(), 4);
        assert!(by_id.iter().all(|e| e.id == "u1"));
        assert_eq!(
            by_id.iter().map(|e| e.day.as_str()).collect::<Vec<_>>(),
            ["2024-05-01", "2024-05-01", "2024-05-02", "2024-05-02"]
        );
        let by_day = idx.by_day("t", "2024-05-02").await.expect("by day");
        assert_eq!(by_day.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["u1", "u1", "u2", "u2"]);
        assert!(by_day.iter().all(|e| e.day == "2024-05-02" && e.file.path.contains("2024-05-02")));
        assert_eq!(idx.by_table("t").await.expect("by table").len(), 8);
        let set = idx.files("t", "u2", "2024-05-01").await.expect("set");
        assert_eq!(
            set.iter().map(|e| e.file.path.as_str()).collect::<Vec<_>>(),
            ["s3://b/t/u2/2024-05-01/0.parquet", "s3://b/t/u2/2024-05-01/1.parquet"]
        );

        // Re-adding a path replaces it; removing takes it out of both orderings and the stats.
        let again = DataFile::new("s3://b/t/u2/2024-05-01/0.parquet", 5000, 50);
        let stats = idx.add("t", "u2", "2024-05-01", &[again]).await.expect("re-add");
        assert_eq!((stats.file_count, stats.size_bytes, stats.record_count), (8, 12000, 120));
        let stats =
            idx.remove("t", "u2", "2024-05-01", &["s3://b/t/u2/2024-05-01/0.parquet", "absent"]).await.expect("rm");
        assert_eq!((stats.file_count, stats.size_bytes, stats.record_count), (7, 7000, 70));
        assert_eq!(count(&client, &format!("{ROOT}data/t/index/id/")).await, 7);
        assert_eq!(count(&client, &format!("{ROOT}data/t/index/day/")).await, 7);
        assert_eq!(idx.by_day("t", "2024-05-01").await.expect("by day").len(), 3);

        assert!(matches!(idx.add("nope", "u1", "d", &[DataFile::new("p", 1, 1)]).await, Err(Error::NotFound(_))));
        assert!(matches!(idx.add("t", "a/b", "d", &[]).await, Err(Error::InvalidArgument(_))));
        assert!(idx.by_day("t", "1999-01-01").await.expect("empty day").is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drop_cascade_removes_index_sets_and_buffer_state_in_one_txn() {
    both(|_, m| async move {
        let client = connect(&m).await;
        let cat = Catalog::new(&client);
        cat.create_table("t", None, false, "a", "").await.expect("create");
        cat.create_table("t2", None, false, "a", "").await.expect("create");
        Index::new(&client).add("t", "u", "d", &[DataFile::new("f", 1, 1)]).await.expect("add");
        Index::new(&client).add("t2", "u", "d", &[DataFile::new("f", 1, 1)]).await.expect("add");
        let buffers = Buffers::new(&client);
        buffers.append("t", "u", "d2", &seg(5, 1)).await.expect("append");
        let session = Session::new(&client, 10).await.expect("session");
        buffers.claim_one(&session, "t", "u", "d2", "f1").await.expect("claim");

        assert!(matches!(cat.drop_table("t", false, false).await, Err(Error::InvalidArgument(_))));
        assert!(cat.exists("t").await.expect("exists"));
        assert!(cat.drop_table("t", false, true).await.expect("cascade"));
        assert!(!cat.exists("t").await.expect("exists"));
        assert_eq!(count(&client, &format!("{ROOT}data/t/")).await, 0, "config, stats, index, buffers, claims gone");
        assert_eq!(Index::new(&client).by_table("t2").await.expect("t2 untouched").len(), 1);
        assert_eq!(cat.list_tables(None).await.expect("list"), ["t2"]);
        // A table with only config and stats drops without cascade.
        Index::new(&client).remove("t2", "u", "d", &["f"]).await.expect("rm");
        assert!(cat.drop_table("t2", false, false).await.expect("drop empty"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_flushers_flush_every_buffer_exactly_once() {
    both(|_, m| async move {
        let client = connect(&m).await;
        Catalog::new(&client).create_table("t", None, false, "a", "").await.expect("create");
        let buffers = Buffers::new(&client);
        let mut rows = 0;
        for id in 0..4 {
            for day in 0..3 {
                for s in 0..3 {
                    buffers
                        .append("t", &format!("u{id}"), &format!("d{day}"), &seg(1 + s, s as i64))
                        .await
                        .expect("append");
                    rows += 1 + s;
                }
            }
        }
        let mut flushers = Vec::new();
        for f in 0..4 {
            let client = connect(&m).await;
            flushers.push(tokio::spawn(async move {
                let session = Session::new(&client, 10).await.expect("session");
                let buffers = Buffers::new(&client);
                let mut flushed = Vec::new();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                loop {
                    assert!(tokio::time::Instant::now() < deadline, "flushers did not finish");
                    let claims = buffers.claim(&session, "t", &format!("f{f}"), 2).await.expect("claim");
                    if claims.is_empty() {
                        if buffers.list("t").await.expect("list").is_empty() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await; // others hold the rest
                        continue;
                    }
                    for c in claims {
                        let file = DataFile::new(format!("f{f}/{}/{}.parquet", c.id, c.day), c.bytes(), c.rows());
                        buffers.commit(&c, &[file]).await.expect("commit");
                        flushed.push((c.id.clone(), c.day.clone()));
                    }
                }
                session.close().await.expect("close");
                flushed
            }));
        }
        let mut all = Vec::new();
        for f in flushers {
            all.extend(f.await.expect("flusher"));
        }
        all.sort();
        let before = all.len();
        all.dedup();
        assert_eq!(before, all.len(), "a buffer was flushed twice");
        assert_eq!(all.len(), 12, "every buffer flushed");
        let entries = Index::new(&client).by_table("t").await.expect("index");
        let mut per_set: BTreeMap<(String, String), usize> = BTreeMap::new();
        for e in &entries {
            *per_set.entry((e.id.clone(), e.day.clone())).or_default() += 1;
        }
        assert_eq!(per_set.len(), 12);
        assert!(per_set.values().all(|n| *n == 1));
        let stats = Catalog::new(&client).stats("t").await.expect("stats");
        assert_eq!((stats.file_count, stats.record_count), (12, rows));
        assert_eq!(count(&client, &format!("{ROOT}data/t/buffer/")).await, 0);
        assert_eq!(count(&client, &format!("{ROOT}data/t/claim/")).await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_flushers_buffer_is_recovered_and_its_late_commit_refused() {
    both(|_, m| async move {
        let client = connect(&m).await;
        Catalog::new(&client).create_table("t", None, false, "a", "").await.expect("create");
        let buffers = Buffers::new(&client);
        buffers.append("t", "u", "d", &seg(10, 0)).await.expect("append");
        buffers.append("t", "u", "d", &seg(20, 100)).await.expect("append");

        let mut dying = Session::new(&client, 2).await.expect("session");
        let stale = buffers.claim_one(&dying, "t", "u", "d", "dying").await.expect("claim");
        assert_eq!(stale.segments.len(), 2);
        // Appends continue while the flush is in progress.
        buffers.append("t", "u", "d", &seg(5, 200)).await.expect("append");
        let waiting = buffers.list_incomplete(Some("t")).await.expect("incomplete");
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].claim.as_ref().map(|c| c.owner.as_str()), Some("dying"));
        assert_eq!(waiting[0].rows, 35);

        let rescuer = Session::new(&client, 10).await.expect("session");
        assert!(matches!(buffers.claim_one(&rescuer, "t", "u", "d", "rescuer").await, Err(Error::Locked)));
        dying.orphan(); // the flusher dies mid-flush: no more keep-alives
        lease_gone(&client, dying.lease_id(), Duration::from_secs(15)).await;
        // The server deletes the expired lease's keys right after it reports the lease gone.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let claims = loop {
            let claims = buffers.claim(&rescuer, "t", "rescuer", 10).await.expect("reclaim");
            if !claims.is_empty() || tokio::time::Instant::now() > deadline {
                break claims;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(claims.len(), 1, "reclaimable once the lease expired");
        let c = &claims[0];
        assert!(c.token > stale.token);
        assert_eq!(c.rows(), 35, "all segments, including the one appended during the dead flush");
        buffers.commit(c, &[DataFile::new("rescued.parquet", c.bytes(), c.rows())]).await.expect("commit");

        match buffers.commit(&stale, &[DataFile::new("stale.parquet", 1, 30)]).await {
            Err(Error::ClaimLost(_)) => {}
            other => panic!("expected ClaimLost, got {other:?}"),
        }
        let files = Index::new(&client).files("t", "u", "d").await.expect("files");
        assert_eq!(files.iter().map(|e| e.file.path.as_str()).collect::<Vec<_>>(), ["rescued.parquet"]);
        let stats = Catalog::new(&client).stats("t").await.expect("stats");
        assert_eq!((stats.record_count, stats.oldest_record, stats.newest_record), (35, Some(0), Some(210)));
        assert!(buffers.list_incomplete(None).await.expect("incomplete").is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn force_released_claim_fences_out_its_holder() {
    both(|_, m| async move {
        let client = connect(&m).await;
        Catalog::new(&client).create_table("t", None, false, "a", "").await.expect("create");
        let buffers = Buffers::new(&client);
        buffers.append("t", "u", "d", &seg(1, 0)).await.expect("append");
        let hung = Session::new(&client, 30).await.expect("session");
        let claim = buffers.claim_one(&hung, "t", "u", "d", "hung").await.expect("claim");
        assert!(buffers.force_release("t", "u", "d").await.expect("release"));
        assert!(!buffers.force_release("t", "u", "d").await.expect("nothing to release"));
        assert!(matches!(buffers.commit(&claim, &[DataFile::new("x", 1, 1)]).await, Err(Error::ClaimLost(_))));
        let other = Session::new(&client, 30).await.expect("session");
        let c = buffers.claim_one(&other, "t", "u", "d", "other").await.expect("claim");
        buffers.release(&c).await.expect("release");
        assert!(matches!(buffers.append("nope", "u", "d", &seg(1, 0)).await, Err(Error::NotFound(_))));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grant_gives_a_role_key_range_permissions_on_a_table() {
    both(|server, m| async move {
        let client = connect(&m).await;
        let cat = Catalog::new(&client);
        cat.create_table("events", None, false, "a", "").await.expect("create");
        assert!(matches!(cat.grant("r", "nope", Access::Read).await, Err(Error::NotFound(_))));
        match cat.grant("analyst", "events", Access::Read).await {
            Ok(()) => {
                let role = client.auth_client().role_get("analyst").await.expect("role");
                let perms: Vec<(Vec<u8>, Vec<u8>)> =
                    role.permissions().iter().map(|p| (p.key().to_vec(), p.range_end().to_vec())).collect();
                let data = format!("{ROOT}data/events/").into_bytes();
                let mut end = data.clone();
                *end.last_mut().expect("nonempty") += 1;
                assert!(perms.contains(&(data, end)), "{perms:?}");
                assert!(perms.contains(&(format!("{ROOT}tables/events").into_bytes(), Vec::new())), "{perms:?}");
            }
            // MetaStore without its Auth API yet: the error is the server's, passed through.
            Err(Error::Etcd(e)) if server == Server::MetaStore => {
                assert!(e.to_string().contains("not implemented"), "{e}")
            }
            Err(e) => panic!("grant failed against {server:?}: {e}"),
        }
    })
    .await;
}
