//! `/metrics` with etcd's names: every metric etcd's official Grafana dashboard and alert rules
//! query (Debian's etcd 3.4 `Documentation/op-guide`, kept in `tests/fixtures/etcd-op-guide`) is
//! exported; a put moves the revision and proposal figures; `--listen-metrics-urls` serves
//! `/metrics` and `/health`; a three-member cluster exports etcd's peer network metrics.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{free_port, http_get, ok, Member};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/etcd-op-guide");

/// Queried names MetaStore does not export, each with the reason. Names etcd 3.4.23 does not
/// export either are checked to be absent from etcd's own `/metrics` too, when etcd is installed.
const NOT_EXPORTED: [(&str, &str, bool); 5] = [
    ("etcd_grpc_requests_failed_total", "etcd 3.0's name; etcd 3.4 exports grpc_server_handled_total", true),
    ("etcd_grpc_total", "etcd 3.0's name; etcd 3.4 exports grpc_server_started_total", true),
    ("etcd_http_failed_total", "the v2 HTTP API, which MetaStore does not serve", true),
    ("etcd_http_received_total", "the v2 HTTP API, which MetaStore does not serve", true),
    ("etcd_http_successful_duration_seconds_bucket", "the v2 HTTP API, which MetaStore does not serve", true),
];

/// Queried names that only a member with peers has (etcd exports no series of them on a single
/// member either): checked by `peer_network_metrics_on_a_three_member_cluster`.
const PEER_ONLY: [&str; 3] = [
    "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
    "etcd_network_peer_round_trip_time_seconds_bucket",
];

/// Metric names in PromQL text: identifiers of the exporters' prefixes (`grpc_server_` keeps
/// label names such as `grpc_method` out).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_ident = (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_')
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':'));
        if !starts_ident {
            i += 1;
            continue;
        }
        let end =
            (i..bytes.len()).find(|&j| !(bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_')).unwrap_or(bytes.len());
        let ident = &text[i..end];
        if ["etcd_", "grpc_server_", "process_"].iter().any(|p| ident.starts_with(p)) {
            names.insert(ident.to_string());
        }
        i = end;
    }
    names
}

/// Every metric the dashboard and both alert-rule files query.
fn queried_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in ["grafana.json", "etcd3_alert.rules.yml", "etcd3_alert.rules"] {
        let text = std::fs::read_to_string(Path::new(FIXTURES).join(file)).expect("fixture");
        let found = metric_names(&text);
        assert!(!found.is_empty(), "no metric names found in {file}");
        names.extend(found);
    }
    names
}

/// The sample names of a Prometheus text exposition (histograms as `_bucket`, `_sum`, `_count`).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// One sample's value: `name` with no labels, or with exactly `labels` (`a="b",c="d"`).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn host_port(url: &str) -> String {
    url.split("://").nth(1).expect("scheme").trim_end_matches('/').to_string()
}

/// `GET /metrics` as HTTP/1.0, so that no server answers in chunks.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").expect("request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("response");
    assert!(resp.starts_with("HTTP/1.") && resp[..12].ends_with("200"), "{resp}");
    resp.split_once("\r\n\r\n").expect("body").1.to_string()
}

fn put(m: &Member, key: &str) {
    ok(m.etcdctl(&["put", key, "v"]));
}

#[test]
fn the_names_etcds_dashboard_and_alerts_query_are_exported() {
    let queried = queried_names();
    assert!(queried.contains("etcd_server_has_leader") && queried.contains("grpc_server_handled_total"));
    let m = Member::start(&["--metrics", "extensive"]);
    for i in 0..3 {
        put(&m, &format!("k{i}"));
    }
    ok(m.etcdctl(&["get", "k0"]));
    let text = scrape(&host_port(&m.endpoint()));
    let names = exported(&text);
    let missing: Vec<&String> =
        queried.iter().filter(|q| !names.contains(*q) && !NOT_EXPORTED.iter().any(|(n, _, _)| n == q)).collect();
    let missing: Vec<&String> = missing.into_iter().filter(|q| !PEER_ONLY.contains(&q.as_str())).collect();
    assert!(missing.is_empty(), "queried by etcd's dashboard or alerts but not exported: {missing:?}");

    if Path::new(common::ETCD_BIN).exists() {
        let etcd = Member::start_etcd(&["--metrics", "extensive"]);
        put(&etcd, "k");
        let etcd_names = exported(&scrape(&host_port(&etcd.endpoint())));
        for (name, why, etcd_lacks) in NOT_EXPORTED {
            if etcd_lacks {
                assert!(!etcd_names.contains(name), "{name} ({why}) is exported by etcd 3.4.23 after all");
            }
        }
        // Everything MetaStore exports, etcd exports under the same name, except MetaStore's own
        // gauges, which carry the `metastore_` prefix (listed in docs/compatibility.md).
        let ours_only: Vec<&String> = names
            .iter()
            .filter(|n| !etcd_names.contains(*n) && !n.starts_with("process_") && !n.starts_with("metastore_"))
            .collect();
        assert!(ours_only.is_empty(), "exported by MetaStore under names etcd does not use: {ours_only:?}");
    }
}

#[test]
fn a_put_moves_the_revision_and_proposal_figures() {
    let m = Member::start(&[]);
    let addr = host_port(&m.endpoint());
    let before = scrape(&addr);
    put(&m, "a");
    let after = scrape(&addr);
    for series in [
        "etcd_debugging_mvcc_current_revision",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total",
    ] {
        let (b, a) = (value(&before, series).expect(series), value(&after, series).expect(series));
        assert!(a > b, "{series}: {b} before the put, {a} after");
    }
    assert_eq!(value(&after, "etcd_server_has_leader"), Some(1.0));
    assert_eq!(value(&after, "etcd_server_is_leader"), Some(1.0));
    assert_eq!(value(&after, "etcd_server_proposals_pending"), Some(0.0));
    assert_eq!(value(&after, "etcd_server_version{server_version=\"3.4.23\"}"), Some(1.0));
    let put_ok = "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}";
    assert_eq!(value(&after, put_ok), Some(1.0), "{after}");
    let put_sent =
        "grpc_server_msg_sent_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}";
    assert_eq!(value(&after, put_sent), Some(1.0));
    assert!(value(&after, "etcd_disk_wal_fsync_duration_seconds_count").expect("fsync count") > 0.0);
    assert!(value(&after, "etcd_disk_backend_commit_duration_seconds_count").expect("commit count") > 0.0);
    assert!(value(&after, "etcd_network_client_grpc_received_bytes_total").expect("received") > 0.0);
    // Basic metrics: no latency histograms per RPC.
    assert!(!after.contains("grpc_server_handling_seconds"));
}

#[test]
fn listen_metrics_urls_serve_metrics_and_health() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let m = Member::start(&["--listen-metrics-urls", &url]);
    put(&m, "a");
    let addr = host_port(&url);
    let text = scrape(&addr);
    assert!(value(&text, "etcd_debugging_mvcc_current_revision").expect("revision") >= 2.0, "{text}");
    let health = http_get(&addr, "/health").expect("health answer");
    assert!(health.contains("{\"health\":\"true\"}"), "{health}");
}

/// The hex id a member's `/metrics` gives in `etcd_server_id{server_id="…"}`.
fn server_id(text: &str) -> String {
    let rest = text.split("etcd_server_id{server_id=\"").nth(1).expect("etcd_server_id");
    rest.split('"').next().expect("closing quote").to_string()
}

/// Scrapes `addr` until `done` holds for the text (bounded: 30 s); the last text either way.
fn scrape_until(addr: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = scrape(addr);
        if done(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn peer_network_metrics_on_a_three_member_cluster() {
    let mut c = common::Cluster::start(3);
    put(&c.members[0], "a");
    let addrs: Vec<String> = c.members.iter().map(|m| host_port(&m.endpoint())).collect();
    let ids: Vec<String> = addrs.iter().map(|a| server_id(&scrape(a))).collect();
    let positive = |text: &str, series: &str| value(text, series).is_some_and(|v| v > 0.0);
    let leader = (0..3).find(|&i| value(&scrape(&addrs[i]), "etcd_server_is_leader") == Some(1.0)).expect("a leader");
    // Raft traffic flows between the leader and each follower (followers do not talk to each other).
    let pairs = (0..3).filter(|&f| f != leader).flat_map(|f| [(leader, f), (f, leader)]);
    for (i, j) in pairs {
        let other = &ids[j];
        let sent = format!("etcd_network_peer_sent_bytes_total{{To=\"{other}\"}}");
        let received = format!("etcd_network_peer_received_bytes_total{{From=\"{other}\"}}");
        let rtt = format!("etcd_network_peer_round_trip_time_seconds_count{{To=\"{other}\"}}");
        let text = scrape_until(&addrs[i], |t| positive(t, &sent) && positive(t, &received) && positive(t, &rtt));
        for series in [&sent, &received, &rtt] {
            assert!(positive(&text, series), "member {i}, peer {j}: {series} missing or zero in\n{text}");
        }
        let bucket = format!("etcd_network_peer_round_trip_time_seconds_bucket{{To=\"{other}\",le=\"0.0001\"}}");
        assert!(value(&text, &bucket).is_some(), "etcd's buckets: {bucket}");
    }
    // A member that is gone: what the leader sends it fails.
    let gone = (0..3).find(|&i| i != leader).expect("a follower");
    c.members[gone].kill();
    let failures = format!("etcd_network_peer_sent_failures_total{{To=\"{}\"}}", ids[gone]);
    let text = scrape_until(&addrs[leader], |t| positive(t, &failures));
    assert!(positive(&text, &failures), "no send failures counted towards the stopped member:\n{text}");
}
#[test]
fn names_are_found_in_promql() {
    let names = metric_names(
        "sum(rate(grpc_server_handled_total{grpc_type=\"unary\",grpc_code!=\"OK\"}[5m])) by (grpc_method) \
         instance:fd_utilization = process_open_fds / process_max_fds",
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(names, ["grpc_server_handled_total", "process_max_fds", "process_open_fds"]);
}
