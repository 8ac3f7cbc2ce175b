//! Prometheus metrics with etcd 3.4's names, types, help strings, labels and buckets
//! (etcdserver/metrics.go, mvcc/metrics.go, wal/metrics.go, mvcc/backend/metrics.go,
//! v3rpc/metrics.go, go-grpc-prometheus), plus the `process_*` collector.
//!
//! A leaf every layer may use, like `failpoint`: the layer where a thing happens bumps a counter
//! or observes a histogram here (raft: fsync and leader changes; server: apply batch commit and
//! proposals; api: gRPC calls and bytes). Figures that already live in the server (leader, indexes,
//! revisions, sizes, watchers) are not mirrored on every change: [`Gauges`] are set from the
//! server's state when `/metrics` is scraped.
//!
//! ```text
//!  raft ─ fsync, leader changes ─┐
//!  server ─ commit, proposals ───┼─► METRICS (one registry per process) ─► render() ─► /metrics
//!  api ─ gRPC calls, bytes ──────┘                ▲ gauges set at scrape by the server
//! ```
//!
//! Invariants: the registry is built once per process ([`init`] picks basic or extensive before
//! first use; later calls change nothing). Counters are atomics; per-label series are resolved
//! once and kept, so a request never allocates for a label lookup.
//!
//! Not done: the registry is per process, so several servers in one process (in-process tests)
//! share counters; etcd's debugging histograms (range/put latency,
//! index compaction pauses) are not exported; `go_*` metrics have no Rust counterpart.

use std::sync::OnceLock;

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// `--metrics`: `extensive` adds per-RPC latency histograms (`grpc_server_handling_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    #[default]
    Basic,
    Extensive,
}

impl Level {
    /// etcd's reading of `--metrics`: `extensive`, and anything else is basic.
    pub fn from_flag(s: &str) -> Self {
        if s == "extensive" {
            Level::Extensive
        } else {
            Level::Basic
        }
    }
}

/// Every metric MetaStore exports.
pub struct Metrics {
    registry: Registry,
    pub level: Level,
    /// Set at scrape from the server's state.
    pub gauges: Gauges,
    pub leader_changes: IntCounter,
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
    /// Applies slower than `--experimental-warning-apply-duration` (each also logged).
    pub slow_applies: IntCounter,
    /// Around the synced raft-log write (etcd: WAL fsync).
    pub wal_fsync: Histogram,
    /// Around the applier's batch write (etcd: bbolt commit).
    pub backend_commit: Histogram,
    pub grpc_sent_bytes: IntCounter,
    pub grpc_received_bytes: IntCounter,
    pub grpc_started: IntCounterVec,
    pub grpc_handled: IntCounterVec,
    pub grpc_msg_received: IntCounterVec,
    pub grpc_msg_sent: IntCounterVec,
    /// Only with `--metrics extensive`, as etcd registers it.
    pub grpc_handling: Option<HistogramVec>,
    pub lease_granted: IntCounter,
    pub lease_revoked: IntCounter,
    pub lease_renewed: IntCounter,
    /// Raft traffic to and from other members (etcd's rafthttp), labelled `To`/`From` with the
    /// other member's hex id: bytes of raft messages handed to a peer's stream, messages that
    /// could not be (queue full, stream broken), and bytes received.
    pub peer_sent_bytes: IntCounterVec,
    pub peer_received_bytes: IntCounterVec,
    pub peer_sent_failures: IntCounterVec,
    /// Round trips of the transport's probe call to each peer.
    pub peer_round_trip: HistogramVec,
}

/// Figures read from the server's state when `/metrics` is scraped.
pub struct Gauges {
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub is_learner: IntGauge,
    /// etcd's are gauges despite the `_total`: the committed and applied raft indexes.
    pub proposals_committed: IntGauge,
    pub proposals_applied: IntGauge,
    pub quota_backend_bytes: IntGauge,
    pub version: IntGaugeVec,
    pub id: IntGaugeVec,
    pub fd_used: IntGauge,
    pub fd_limit: IntGauge,
    pub db_total_size: IntGauge,
    pub debugging_db_total_size: IntGauge,
    pub db_in_use: IntGauge,
    pub keys_total: IntGauge,
    pub current_revision: IntGauge,
    pub compact_revision: IntGauge,
    pub watchers: IntGauge,
    pub watch_streams: IntGauge,
    /// MetaStore's own: what the storage engine holds in memory, by `kind` (see `Engine::memory`).
    pub storage_memory: IntGaugeVec,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Chooses the level before first use (the binary, from `--metrics`); returns the metrics.
pub fn init(level: Level) -> &'static Metrics {
    METRICS.get_or_init(|| Metrics::new(level))
}

/// The process's metrics (basic unless [`init`] chose otherwise first).
pub fn get() -> &'static Metrics {
    init(Level::Basic)
}

/// The Prometheus text exposition of every registered metric.
pub fn render() -> String {
    let families = get().registry.gather();
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::warn!("encoding metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// etcd's disk histograms: 1 ms to 8 s, doubling (`ExponentialBuckets(0.001, 2, 14)`).
fn disk_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 14).expect("valid buckets")
}

fn opts(namespace: &str, subsystem: &str, name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(namespace).subsystem(subsystem)
}

impl Metrics {
    fn new(level: Level) -> Self {
        let r = Registry::new();
        fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            r.register(Box::new(c.clone())).expect("metric registered once");
            c
        }
        let gauge = |ns: &str, sub: &str, name: &str, help: &str| {
            reg(&r, IntGauge::with_opts(opts(ns, sub, name, help)).expect("gauge"))
        };
        let counter = |ns: &str, sub: &str, name: &str, help: &str| {
            reg(&r, IntCounter::with_opts(opts(ns, sub, name, help)).expect("counter"))
        };
        let gauges = Gauges {
            has_leader: gauge(
                "etcd",
                "server",
                "has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: gauge(
                "etcd",
                "server",
                "is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            is_learner: gauge(
                "etcd",
                "server",
                "is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            ),
            proposals_committed: gauge(
                "etcd",
                "server",
                "proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_applied: gauge(
                "etcd",
                "server",
                "proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            quota_backend_bytes: gauge(
                "etcd",
                "server",
                "quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            ),
            version: reg(
                &r,
                IntGaugeVec::new(
                    opts(
                        "etcd",
                        "server",
                        "version",
                        "Which version is running. 1 for 'server_version' label with current version.",
                    ),
                    &["server_version"],
                )
                .expect("gauge vec"),
            ),
            id: reg(
                &r,
                IntGaugeVec::new(
                    opts(
                        "etcd",
                        "server",
                        "id",
                        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
                    ),
                    &["server_id"],
                )
                .expect("gauge vec"),
            ),
            fd_used: gauge("os", "fd", "used", "The number of used file descriptors."),
            fd_limit: gauge("os", "fd", "limit", "The file descriptor limit."),
            db_total_size: gauge(
                "etcd",
                "mvcc",
                "db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            debugging_db_total_size: gauge(
                "etcd_debugging",
                "mvcc",
                "db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_in_use: gauge(
                "etcd",
                "mvcc",
                "db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            keys_total: gauge("etcd_debugging", "mvcc", "keys_total", "Total number of keys."),
            current_revision: gauge("etcd_debugging", "mvcc", "current_revision", "The current revision of store."),
            compact_revision: gauge(
                "etcd_debugging",
                "mvcc",
                "compact_revision",
                "The revision of the last compaction in store.",
            ),
            watchers: gauge("etcd_debugging", "mvcc", "watcher_total", "Total number of watchers."),
            watch_streams: gauge("etcd_debugging", "mvcc", "watch_stream_total", "Total number of watch streams."),
            storage_memory: reg(
                &r,
                IntGaugeVec::new(
                    opts("metastore", "storage", "memory_bytes", "Bytes the storage engine holds in memory, by kind."),
                    &["kind"],
                )
                .expect("gauge vec"),
            ),
        };
        let histogram = |sub: &str, name: &str, help: &str| {
            let o = HistogramOpts::new(name, help).namespace("etcd").subsystem(sub).buckets(disk_buckets());
            reg(&r, Histogram::with_opts(o).expect("histogram"))
        };
        let grpc_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(&r, IntCounterVec::new(Opts::new(name, help), labels).expect("counter vec"))
        };
        let peer_vec = |name: &str, help: &str, label: &str| {
            reg(&r, IntCounterVec::new(opts("etcd", "network", name, help), &[label]).expect("counter vec"))
        };
        const METHOD: [&str; 3] = ["grpc_type", "grpc_service", "grpc_method"];
        const METHOD_CODE: [&str; 4] = ["grpc_type", "grpc_service", "grpc_method", "grpc_code"];
        let grpc_handling = (level == Level::Extensive).then(|| {
            let o = HistogramOpts::new(
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            );
            reg(&r, HistogramVec::new(o, &METHOD).expect("histogram vec"))
        });
        let m = Metrics {
            level,
            gauges,
            leader_changes: counter(
                "etcd",
                "server",
                "leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            proposals_pending: gauge(
                "etcd",
                "server",
                "proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            proposals_failed: counter(
                "etcd",
                "server",
                "proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            slow_applies: counter(
                "etcd",
                "server",
                "slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
            wal_fsync: histogram(
                "disk",
                "wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            ),
            backend_commit: histogram(
                "disk",
                "backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            ),
            grpc_sent_bytes: counter(
                "etcd",
                "network",
                "client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            ),
            grpc_received_bytes: counter(
                "etcd",
                "network",
                "client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            ),
            grpc_started: grpc_vec("grpc_server_started_total", "Total number of RPCs started on the server.", &METHOD),
            grpc_handled: grpc_vec(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &METHOD_CODE,
            ),
            grpc_msg_received: grpc_vec(
                "grpc_server_msg_received_total",
                "Total number of RPC stream messages received on the server.",
                &METHOD,
            ),
            grpc_msg_sent: grpc_vec(
                "grpc_server_msg_sent_total",
                "Total number of gRPC stream messages sent by the server.",
                &METHOD,
            ),
            grpc_handling,
            lease_granted: counter("etcd_debugging", "lease", "granted_total", "The total number of granted leases."),
            lease_revoked: counter("etcd_debugging", "lease", "revoked_total", "The total number of revoked leases."),
            lease_renewed: counter(
                "etcd_debugging",
                "lease",
                "renewed_total",
                "The number of renewed leases seen by the leader.",
            ),
            peer_sent_bytes: peer_vec("peer_sent_bytes_total", "The total number of bytes sent to peers.", "To"),
            peer_received_bytes: peer_vec(
                "peer_received_bytes_total",
                "The total number of bytes received from peers.",
                "From",
            ),
            peer_sent_failures: peer_vec(
                "peer_sent_failures_total",
                "The total number of send failures from peers.",
                "To",
            ),
            peer_round_trip: {
                let o = HistogramOpts::new("peer_round_trip_time_seconds", "Round-Trip-Time histogram between peers")
                    .namespace("etcd")
                    .subsystem("network")
                    .buckets(exponential_buckets(0.0001, 2.0, 16).expect("valid buckets"));
                reg(&r, HistogramVec::new(o, &["To"]).expect("histogram vec"))
            },
            registry: r,
        };
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process collector registered once");
        m
    }
}

/// Used and maximum file descriptors of this process (`/proc/self/fd`, `RLIMIT_NOFILE`), as
/// etcd's `os_fd_*` report them.
pub fn fd_usage() -> (i64, i64) {
    let used = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as i64).unwrap_or(0);
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    (used, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_buckets_are_etcds() {
        let b = disk_buckets();
        assert_eq!(b.len(), 14);
        assert_eq!(b[0], 0.001);
        assert_eq!(b[13], 8.192);
    }

    #[test]
    fn rendering_keeps_etcds_names_and_types() {
        get().leader_changes.inc();
        let text = render();
        assert!(text.contains("# TYPE etcd_server_leader_changes_seen_total counter"), "{text}");
        assert!(text.contains("# TYPE etcd_server_proposals_committed_total gauge"), "{text}");
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"}"), "{text}");
    }
}
