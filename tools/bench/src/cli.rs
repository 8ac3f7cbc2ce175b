//! Command line: global options shared by every workload plus one subcommand per workload.
//!
//! Names and defaults follow etcd's `tools/benchmark` (`put --key-size 8 --val-size 8
//! --key-space-size 1`, `range KEY --consistency l`, `txn-put --txn-ops 1`, `txn-mixed
//! --rw-ratio 1`, `watch --streams 10 --watch-per-stream 100`, ...) so that a command written for
//! one tool reads the same for the other. Global options may be given before or after the
//! subcommand. When neither `--total` nor `--duration` is given a run stops after 10,000
//! requests, as etcd's tool does; when both are given it stops at whichever comes first.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod parse;
pub use parse::{parse_duration, parse_mix, parse_user, K8sOp, Mix, User};

/// The run length used when neither `--total` nor `--duration` is given (etcd's default).
pub const DEFAULT_TOTAL: u64 = 10_000;

#[derive(Parser, Debug)]
#[command(name = "metastore-bench", version, about = "Load generator for etcd-v3-compatible servers")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// gRPC endpoints, comma separated; connection i goes to endpoint i % N.
    #[arg(long, global = true, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// Number of gRPC connections (HTTP/2 channels).
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Number of concurrent requests in flight (client i uses connection i % conns).
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Stop after this many requests.
    #[arg(long, global = true)]
    pub total: Option<u64>,
    /// Stop after this long (e.g. 30s, 500ms, 2m).
    #[arg(long, global = true, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Limit to this many requests per second over all clients (default: unlimited).
    #[arg(long, global = true)]
    pub rate: Option<f64>,
    /// Send everything to the current leader (found with Maintenance.Status).
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// Print one JSON object on stdout instead of the text report.
    #[arg(long, global = true)]
    pub json: bool,
    /// Never draw the progress bar (it is only drawn when stderr is a terminal anyway).
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Give up on a single request after this long (counted as DeadlineExceeded).
    #[arg(long, global = true, value_parser = parse_duration, default_value = "10s")]
    pub request_timeout: Duration,
    /// Authenticate every connection as this user (`NAME:PASSWORD`, as etcdctl's `--user`);
    /// an expired token is renewed with the same credentials.
    #[arg(long, global = true, value_parser = parse_user)]
    pub user: Option<User>,
}

/// When a run stops: after `total` requests, after `duration`, or whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub total: Option<u64>,
    pub duration: Option<Duration>,
}

impl Global {
    pub fn limits(&self) -> Limits {
        match (self.total, self.duration) {
            (None, None) => Limits { total: Some(DEFAULT_TOTAL), duration: None },
            (total, duration) => Limits { total, duration },
        }
    }

    /// Checks what clap cannot express; the error is printed as a usage error.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err("--endpoints: at least one endpoint is required".into());
        }
        if self.conns == 0 || self.clients == 0 {
            return Err("--conns and --clients must be at least 1".into());
        }
        if self.total == Some(0) {
            return Err("--total must be at least 1".into());
        }
        if self.duration == Some(Duration::ZERO) {
            return Err("--duration must be positive".into());
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err("--rate must be a positive number of requests per second".into());
            }
        }
        Ok(())
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Put keys (sequential or random over --key-space-size).
    Put(PutArgs),
    /// Write N keys, then time puts without and then with full-keyspace scans looping
    /// (`get --prefix ""`); reports both latencies, the scans done and any raft term change.
    PutUnderScan(PutUnderScanArgs),
    /// Write N keys, then time puts without and then with a Defragment of the first endpoint
    /// in the middle; reports the puts that overlapped the defragment against the baseline.
    PutUnderDefrag(PutUnderDefragArgs),
    /// Range requests: one key, [key, end) or a prefix; optionally writes the keys first.
    Range(RangeArgs),
    /// Transactions of --txn-ops puts each.
    TxnPut(TxnPutArgs),
    /// Single-op transactions, reads and writes mixed by --rw-ratio.
    TxnMixed(TxnMixedArgs),
    /// Create watchers over streams, then count and time the events delivered while puts run.
    Watch(WatchArgs),
    /// Time from a put's acknowledgement to the event's delivery on every watcher.
    WatchLatency(WatchLatencyArgs),
    /// LeaseKeepAlive round trips, one lease and one keep-alive stream per client.
    LeaseKeepalive,
    /// Authenticate calls with the `--user` credentials (a bcrypt check and a new token each).
    Authenticate,
    /// A Kubernetes-like control-plane mix: gets, limited prefix lists, puts with leases,
    /// compare-and-swap on mod_revision, a few long-lived prefix watches.
    K8s(K8sArgs),
    /// This machine's physical floor: fsync latency of a directory's disk, loopback round trip.
    Floor(FloorArgs),
    /// Wait until the endpoints serve a linearizable read; print how long that took.
    Ready(ReadyArgs),
}

#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// Key length in bytes (the prefix plus a zero-padded decimal index).
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value length in bytes.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Number of distinct keys written.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Write keys in order (index = request number modulo the key space) instead of at random.
    #[arg(long)]
    pub sequential_keys: bool,
    /// Prefix of every key.
    #[arg(long, default_value = "")]
    pub key_prefix: String,
}

impl KeyArgs {
    pub fn validate(&self) -> Result<(), String> {
        if self.key_space_size == 0 {
            return Err("--key-space-size must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Args, Debug, Clone)]
pub struct PutArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// Keys written before a workload's timed phases, in transactions of 100 puts.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Number of keys written.
    #[arg(long, default_value_t = 1_000_000)]
    pub load_keys: u64,
    /// Prefix of the loaded keys.
    #[arg(long, default_value = "load/")]
    pub load_prefix: String,
    /// Length of the loaded keys in bytes (prefix plus zero-padded index).
    #[arg(long, default_value_t = 16)]
    pub load_key_size: usize,
    /// Value length of the loaded keys.
    #[arg(long, default_value_t = 256)]
    pub load_val_size: usize,
    /// Loading transactions (of 100 puts each) in flight at once.
    #[arg(long, default_value_t = 16)]
    pub load_parallel: usize,
}

#[derive(Args, Debug, Clone)]
pub struct PutUnderScanArgs {
    /// The puts timed (as for `put`).
    #[command(flatten)]
    pub keys: KeyArgs,
    /// The keys written before timing (the scans read them all).
    #[command(flatten)]
    pub load: LoadArgs,
    /// Tasks each looping a full-keyspace Range while the puts run.
    #[arg(long, default_value_t = 1)]
    pub scanners: usize,
    /// Ask the scans for keys only (no values).
    #[arg(long)]
    pub scan_keys_only: bool,
    /// Consistency of the scans.
    #[arg(long, value_enum, default_value = "l")]
    pub scan_consistency: Consistency,
    /// Give up on one scan after this long (counted as a failed scan).
    #[arg(long, value_parser = parse_duration, default_value = "120s")]
    pub scan_timeout: Duration,
    /// Skip the baseline phase (puts without scans).
    #[arg(long)]
    pub no_baseline: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PutUnderDefragArgs {
    /// The puts timed (as for `put`).
    #[command(flatten)]
    pub keys: KeyArgs,
    /// The keys written before timing (what the defragment rewrites).
    #[command(flatten)]
    pub load: LoadArgs,
    /// When the defragment is sent, from the start of the second put phase.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub defrag_after: Duration,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable (goes through the leader's read index).
    L,
    /// Serializable (served from the local member).
    S,
}

#[derive(Args, Debug, Clone)]
pub struct RangeArgs {
    /// The key (or prefix) to read.
    #[arg(long, default_value = "range/key")]
    pub key: String,
    /// Read [key, end) instead of one key.
    #[arg(long, conflicts_with = "prefix")]
    pub end: Option<String>,
    /// Read every key that starts with --key.
    #[arg(long)]
    pub prefix: bool,
    /// Before timing, write N keys under --key (key + zero-padded index) with --prefix,
    /// or the single --key without it. 0 reads whatever is there.
    #[arg(long, default_value_t = 0)]
    pub load: u64,
    /// Value length of the keys written by --load.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Maximum number of keys returned per request (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
}

#[derive(Args, Debug, Clone)]
pub struct TxnPutArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Puts per transaction (etcd's default --max-txn-ops is 128).
    #[arg(long, default_value_t = 1)]
    pub txn_ops: usize,
}

#[derive(Args, Debug, Clone)]
pub struct TxnMixedArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Reads per write (1 = half reads, 4 = 80% reads).
    #[arg(long, default_value_t = 1.0)]
    pub rw_ratio: f64,
    /// Consistency of the reads.
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
}

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Watch streams (spread over the connections).
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Watchers created on each stream.
    #[arg(long, default_value_t = 100)]
    pub watch_per_stream: usize,
    /// Distinct keys watched; watcher i watches key i % N and the puts cycle over the N keys.
    #[arg(long, default_value_t = 1)]
    pub watched_key_total: usize,
    #[arg(long, default_value_t = 32)]
    pub key_size: usize,
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// After the puts, wait at most this long for the remaining events.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub drain_timeout: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct WatchLatencyArgs {
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    #[arg(long, default_value_t = 10)]
    pub watchers_per_stream: usize,
    #[arg(long, default_value_t = 32)]
    pub val_size: usize,
    /// After the puts, wait at most this long for the remaining events.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub drain_timeout: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct K8sArgs {
    /// Objects written before the run (/registry/pods/ns-N/pod-I).
    #[arg(long, default_value_t = 2000)]
    pub objects: u64,
    /// Namespaces the objects are spread over (a list reads one namespace).
    #[arg(long, default_value_t = 10)]
    pub namespaces: u64,
    /// Object size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub val_size: usize,
    /// Limit of each prefix list (a page; 200 objects per namespace by default).
    #[arg(long, default_value_t = 100)]
    pub list_limit: i64,
    /// Long-lived prefix watches on /registry/pods/ (informers).
    #[arg(long, default_value_t = 4)]
    pub watchers: usize,
    /// Leases shared by the puts with a lease (the apiserver reuses one per minute).
    #[arg(long, default_value_t = 8)]
    pub leases: usize,
    /// Request mix as weights.
    #[arg(long, value_parser = parse_mix, default_value = "get=20,list=10,put-lease=20,cas=50")]
    pub mix: Mix,
}

#[derive(Args, Debug, Clone)]
pub struct FloorArgs {
    /// Directory on the disk to measure (the data disk); a temporary file is created there.
    #[arg(long, default_value = ".")]
    pub dir: std::path::PathBuf,
    /// fdatasync samples per mode.
    #[arg(long, default_value_t = 500)]
    pub fsync_count: u64,
    /// Loopback TCP round trips.
    #[arg(long, default_value_t = 20_000)]
    pub rtt_count: u64,
}

#[derive(Args, Debug, Clone)]
pub struct ReadyArgs {
    /// Give up after this long (exit status 1).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub wait: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("metastore-bench").chain(args.iter().copied()))
    }

    #[test]
    fn globals_before_or_after_the_subcommand() {
        let a = parse(&["--clients", "8", "put", "--key-size", "16", "--total", "50"]).unwrap();
        assert_eq!(a.global.clients, 8);
        assert_eq!(a.global.total, Some(50));
        let Command::Put(p) = a.command else { panic!("not put") };
        assert_eq!(p.keys.key_size, 16);
        assert_eq!(p.keys.val_size, 8, "etcd's default value size");
        assert_eq!(p.keys.key_space_size, 1, "etcd's default key space");
    }

    #[test]
    fn endpoints_are_comma_separated() {
        let a = parse(&["--endpoints", "http://a:1,http://b:2", "put"]).unwrap();
        assert_eq!(a.global.endpoints, vec!["http://a:1", "http://b:2"]);
        assert_eq!(parse(&["put"]).unwrap().global.endpoints, vec!["http://127.0.0.1:2379"]);
    }

    #[test]
    fn limits_default_to_etcds_total() {
        let a = parse(&["put"]).unwrap();
        assert_eq!(a.global.limits(), Limits { total: Some(DEFAULT_TOTAL), duration: None });
        let a = parse(&["--duration", "5s", "put"]).unwrap();
        assert_eq!(a.global.limits(), Limits { total: None, duration: Some(Duration::from_secs(5)) });
        let a = parse(&["--duration", "5s", "--total", "9", "put"]).unwrap();
        assert_eq!(a.global.limits(), Limits { total: Some(9), duration: Some(Duration::from_secs(5)) });
    }

    #[test]
    fn validation_rejects_nonsense() {
        for bad in [
            &["--conns", "0", "put"][..],
            &["--clients", "0", "put"],
            &["--total", "0", "put"],
            &["--rate", "0", "put"],
            &["--rate=-3", "put"],
            &["--duration", "0s", "put"],
        ] {
            let cli = parse(bad).unwrap();
            assert!(cli.global.validate().is_err(), "{bad:?} accepted");
        }
        assert!(parse(&["--rate", "100", "put"]).unwrap().global.validate().is_ok());
        assert!(parse(&["--bogus", "put"]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
    }

    #[test]
    fn user_is_global() {
        let a = parse(&["put", "--user", "bench:secret"]).unwrap();
        let u = a.global.user.expect("user");
        assert_eq!((u.name.as_str(), u.password.as_str()), ("bench", "secret"));
        assert!(parse(&["put"]).unwrap().global.user.is_none());
        assert!(parse(&["--user", "bench", "put"]).is_err(), "a password is required");
    }

    #[test]
    fn range_options() {
        let a = parse(&["range", "--key", "p/", "--prefix", "--load", "100", "--consistency", "s"]).unwrap();
        let Command::Range(r) = a.command else { panic!("not range") };
        assert!(r.prefix);
        assert_eq!(r.load, 100);
        assert_eq!(r.consistency, Consistency::S);
        assert!(parse(&["range", "--prefix", "--end", "z"]).is_err(), "--end and --prefix conflict");
        assert!(parse(&["range", "--consistency", "x"]).is_err());
    }

    #[test]
    fn put_under_scan_options() {
        let Command::PutUnderScan(s) = parse(&["put-under-scan"]).unwrap().command else { panic!() };
        assert_eq!((s.load.load_keys, s.scanners, s.load.load_val_size), (1_000_000, 1, 256));
        assert_eq!(s.scan_consistency, Consistency::L);
        assert!(!s.scan_keys_only && !s.no_baseline);
        let a = parse(&[
            "put-under-scan",
            "--load-keys",
            "100000",
            "--scanners",
            "2",
            "--scan-keys-only",
            "--key-prefix",
            "w/",
            "--duration",
            "10s",
            "--scan-timeout",
            "30s",
        ])
        .unwrap();
        let Command::PutUnderScan(s) = a.command else { panic!() };
        assert_eq!((s.load.load_keys, s.scanners, s.keys.key_prefix.as_str()), (100_000, 2, "w/"));
        assert!(s.scan_keys_only);
        assert_eq!(s.scan_timeout, Duration::from_secs(30));
        assert_eq!(a.global.duration, Some(Duration::from_secs(10)));
    }

    #[test]
    fn txn_and_watch_defaults() {
        let Command::TxnPut(t) = parse(&["txn-put", "--txn-ops", "10"]).unwrap().command else { panic!() };
        assert_eq!(t.txn_ops, 10);
        let Command::TxnMixed(m) = parse(&["txn-mixed"]).unwrap().command else { panic!() };
        assert_eq!(m.rw_ratio, 1.0);
        let Command::Watch(w) = parse(&["watch"]).unwrap().command else { panic!() };
        assert_eq!((w.streams, w.watch_per_stream), (10, 100));
        assert!(matches!(parse(&["lease-keepalive"]).unwrap().command, Command::LeaseKeepalive));
        assert!(matches!(parse(&["authenticate"]).unwrap().command, Command::Authenticate));
        let Command::K8s(k) = parse(&["k8s"]).unwrap().command else { panic!() };
        assert_eq!(k.mix.total_weight(), 100);
    }
}
