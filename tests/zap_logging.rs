//! `--logger zap --log-outputs`: JSON lines with zap's keys and etcd's messages and field names
//! for the lines operators grep (ready to serve, leader elected, member added/updated/removed,
//! slow applies under `--experimental-warning-apply-duration`), written to every output given.

mod common;

use std::time::{Duration, Instant};

use common::{ok, Member};
use serde_json::Value;

/// The JSON lines of a log, each checked to start with zap's keys in zap's order.
fn zap_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            let keys: Vec<&String> = v.as_object().expect("an object").keys().collect();
            assert!(l.starts_with(r#"{"level":""#), "level first: {l}");
            for key in ["ts", "caller", "msg"] {
                assert!(keys.iter().any(|k| *k == key), "no {key}: {l}");
            }
            v
        })
        .collect()
}

fn find<'a>(lines: &'a [Value], msg: &str) -> Option<&'a Value> {
    lines.iter().find(|l| l["msg"].as_str().is_some_and(|m| m.starts_with(msg)))
}

/// Polls the log file until a line with `msg` appears (bounded: 20 s).
fn wait_for(path: &std::path::Path, msg: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = zap_lines(&std::fs::read_to_string(path).unwrap_or_default());
        if find(&lines, msg).is_some() || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn zap_lines_go_to_every_output_with_etcds_messages_and_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("etcd.log");
    let outputs = format!("stderr,{}", file.display());
    let m =
        Member::start(&["--logger", "zap", "--log-outputs", &outputs, "--experimental-warning-apply-duration", "1ns"]);
    assert_eq!(ok(m.etcdctl(&["put", "slow", "v"])), "OK\n");

    let lines = wait_for(&file, "apply request took too long");
    let ready = find(&lines, "ready to serve client requests").expect("ready line");
    assert_eq!(ready["level"], "info");
    let elected = find(&lines, "raft.node: ").expect("leader line");
    assert!(elected["msg"].as_str().is_some_and(|m| m.contains(" elected leader ") && m.contains(" at term ")));
    let added = find(&lines, "added member").expect("added member line");
    assert_eq!(added["added-peer-peer-urls"], serde_json::json!([m.peer_url]));
    for field in ["cluster-id", "local-member-id", "added-peer-id"] {
        assert!(added[field].as_str().is_some_and(|v| !v.is_empty()), "{field} in {added}");
    }
    let slow = lines
        .iter()
        .find(|l| l["msg"] == "apply request took too long" && l["request"].as_str().is_some_and(|r| r.contains("put")))
        .expect("a slow put");
    assert_eq!((slow["level"].as_str(), slow["expected-duration"].as_str()), (Some("warn"), Some("1ns")));
    assert!(slow["took"].as_str().is_some_and(|t| t.ends_with('s')), "{slow}");

    // Each slow apply is counted too.
    let metrics = common::http_get(m.endpoint().trim_start_matches("http://"), "/metrics").expect("metrics");
    let slow = metrics.lines().find_map(|l| l.strip_prefix("etcd_server_slow_apply_total ")).expect("slow applies");
    assert!(slow.trim().parse::<f64>().is_ok_and(|n| n >= 1.0), "etcd_server_slow_apply_total {slow}");

    // The same lines on stderr (the harness's log file).
    assert!(find(&zap_lines(&m.log()), "ready to serve client requests").is_some(), "{}", m.log());

    // Member changes: a learner added, its peer URLs updated, then removed.
    let add = ok(m.etcdctl(&["member", "add", "learner", "--learner", "--peer-urls=http://127.0.0.1:1"]));
    let id = add.split_whitespace().nth(1).expect("member id").to_string();
    ok(m.etcdctl(&["member", "update", &id, "--peer-urls=http://127.0.0.1:2"]));
    ok(m.etcdctl(&["member", "remove", &id]));
    let lines = wait_for(&file, "removed member");
    let updated = find(&lines, "updated member").expect("updated member line");
    assert_eq!(updated["updated-remote-peer-id"], id.as_str());
    assert_eq!(updated["updated-remote-peer-urls"], serde_json::json!(["http://127.0.0.1:2"]));
    let removed = find(&lines, "removed member").expect("removed member line");
    assert_eq!(removed["removed-remote-peer-id"], id.as_str());
    assert_eq!(removed["removed-remote-peer-urls"], serde_json::json!(["http://127.0.0.1:2"]));
}

#[test]
fn the_default_logger_writes_text_lines() {
    let m = Member::start(&[]);
    let log = m.log();
    assert!(log.contains("ready to serve client requests"), "{log}");
    assert!(zap_lines(&log).is_empty(), "JSON lines without --logger zap:\n{log}");
}
