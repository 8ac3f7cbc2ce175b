//! etcd's command line, accepted as etcd accepts it: `--flag value`, `--flag=value`, `-flag`,
//! boolean flags bare or `=true|false`, and every flag also from its `ETCD_*` environment
//! variable. The flag table lists every etcd 3.4 flag with etcd's default and whether MetaStore
//! honours it yet; flags that are accepted but not honoured are reported in one log line.
//!
//! `--config-file` (or `ETCD_CONFIG_FILE`) replaces all of that, as in etcd: the YAML file is
//! turned into flags ([`file`]) and parsed by the same table, and every other flag and `ETCD_*`
//! variable is ignored (the binary says so in its log).

mod file;

use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::server::membership::{cluster_id, member_id};
use crate::server::{AutoCompaction, Member};
pub use crate::tls::ClientTlsFlags;

/// How a flag takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Value,
    Bool,
}

/// Whether MetaStore acts on a flag yet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Support {
    Honoured,
    Ignored,
}

use Kind::{Bool, Value};
use Support::{Honoured, Ignored};

/// Every etcd 3.4 flag (plus MetaStore's own `--storage-engine` and RocksDB memory budgets):
/// name, kind, default, support.
const FLAGS: &[(&str, Kind, &str, Support)] = &[
    ("name", Value, "default", Honoured),
    ("data-dir", Value, "", Honoured),
    ("wal-dir", Value, "", Honoured),
    ("snapshot-count", Value, "100000", Honoured),
    ("heartbeat-interval", Value, "100", Honoured),
    ("election-timeout", Value, "1000", Honoured),
    ("initial-election-tick-advance", Bool, "true", Ignored),
    ("listen-peer-urls", Value, "http://localhost:2380", Honoured),
    ("listen-client-urls", Value, "http://localhost:2379", Honoured),
    ("max-snapshots", Value, "5", Ignored),
    ("max-wals", Value, "5", Ignored),
    ("quota-backend-bytes", Value, "0", Honoured),
    ("backend-batch-interval", Value, "0", Ignored),
    ("backend-batch-limit", Value, "0", Ignored),
    ("max-txn-ops", Value, "128", Honoured),
    ("max-request-bytes", Value, "1572864", Honoured),
    ("max-concurrent-streams", Value, "4294967295", Honoured),
    ("grpc-keepalive-min-time", Value, "5s", Honoured),
    ("grpc-keepalive-interval", Value, "2h", Honoured),
    ("grpc-keepalive-timeout", Value, "20s", Honoured),
    ("initial-advertise-peer-urls", Value, "http://localhost:2380", Honoured),
    ("initial-cluster", Value, "", Honoured),
    ("initial-cluster-state", Value, "new", Honoured),
    ("initial-cluster-token", Value, "etcd-cluster", Honoured),
    ("advertise-client-urls", Value, "http://localhost:2379", Honoured),
    ("discovery", Value, "", Ignored),
    ("discovery-fallback", Value, "proxy", Ignored),
    ("discovery-proxy", Value, "", Ignored),
    ("discovery-srv", Value, "", Ignored),
    ("discovery-srv-name", Value, "", Ignored),
    ("strict-reconfig-check", Bool, "true", Honoured),
    ("pre-vote", Bool, "false", Ignored),
    ("auto-compaction-retention", Value, "0", Honoured),
    ("auto-compaction-mode", Value, "periodic", Honoured),
    ("enable-v2", Bool, "false", Ignored),
    ("cert-file", Value, "", Honoured),
    ("key-file", Value, "", Honoured),
    ("client-cert-auth", Bool, "false", Honoured),
    ("client-crl-file", Value, "", Honoured),
    ("client-cert-allowed-hostname", Value, "", Honoured),
    ("trusted-ca-file", Value, "", Honoured),
    ("auto-tls", Bool, "false", Honoured),
    ("peer-cert-file", Value, "", Honoured),
    ("peer-key-file", Value, "", Honoured),
    ("peer-client-cert-auth", Bool, "false", Honoured),
    ("peer-trusted-ca-file", Value, "", Honoured),
    ("peer-cert-allowed-cn", Value, "", Ignored),
    ("peer-cert-allowed-hostname", Value, "", Ignored),
    ("peer-auto-tls", Bool, "false", Honoured),
    ("peer-crl-file", Value, "", Ignored),
    ("cipher-suites", Value, "", Honoured),
    ("cors", Value, "", Ignored),
    ("host-whitelist", Value, "*", Ignored),
    ("auth-token", Value, "simple", Honoured),
    ("bcrypt-cost", Value, "10", Honoured),
    ("auth-token-ttl", Value, "300", Honoured),
    ("enable-pprof", Bool, "false", Ignored),
    ("metrics", Value, "basic", Honoured),
    ("listen-metrics-urls", Value, "", Honoured),
    ("logger", Value, "capnslog", Honoured),
    ("log-outputs", Value, "default", Honoured),
    ("log-level", Value, "info", Honoured),
    ("proxy", Value, "off", Ignored),
    ("proxy-failure-wait", Value, "5000", Ignored),
    ("proxy-refresh-interval", Value, "30000", Ignored),
    ("proxy-dial-timeout", Value, "1000", Ignored),
    ("proxy-write-timeout", Value, "5000", Ignored),
    ("proxy-read-timeout", Value, "0", Ignored),
    ("experimental-initial-corrupt-check", Bool, "false", Honoured),
    ("experimental-corrupt-check-time", Value, "0s", Honoured),
    ("experimental-enable-v2v3", Value, "", Ignored),
    ("experimental-backend-bbolt-freelist-type", Value, "array", Ignored),
    ("experimental-enable-lease-checkpoint", Bool, "false", Ignored),
    ("experimental-compaction-batch-limit", Value, "1000", Honoured),
    ("experimental-peer-skip-client-san-verification", Bool, "false", Ignored),
    ("experimental-watch-progress-notify-interval", Value, "10m", Honoured),
    ("experimental-warning-apply-duration", Value, "100ms", Honoured),
    ("force-new-cluster", Bool, "false", Honoured),
    ("debug", Bool, "false", Ignored),
    ("log-package-levels", Value, "", Ignored),
    ("config-file", Value, "", Honoured),
    ("storage-engine", Value, "rocksdb", Honoured),
    ("rocksdb-block-cache-bytes", Value, "33554432", Honoured),
    ("rocksdb-memtable-bytes", Value, "33554432", Honoured),
];

/// Below this a RocksDB budget flag is refused: RocksDB would flush or evict on every write.
const MIN_ROCKSDB_BUDGET: u64 = 1 << 20;

/// Which engine holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageEngine {
    RocksDb,
    Memory,
}

/// etcd's `--peer-*` TLS flags.
#[derive(Debug, Clone, Default)]
pub struct PeerTlsFlags {
    pub cert_file: String,
    pub key_file: String,
    pub trusted_ca_file: String,
    pub client_cert_auth: bool,
    pub auto_tls: bool,
}

/// The settings MetaStore acts on.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: String,
    /// `--wal-dir`: RocksDB's write-ahead log directory (empty: inside the data dir).
    pub wal_dir: String,
    pub listen_client_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    pub initial_cluster: Vec<(String, String)>,
    pub initial_cluster_state: String,
    pub initial_cluster_token: String,
    pub heartbeat: Duration,
    pub election_ticks: usize,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub snapshot_count: u64,
    pub strict_reconfig_check: bool,
    pub watch_progress_interval: Duration,
    pub quota_backend_bytes: i64,
    pub auto_compaction: Option<AutoCompaction>,
    /// `--experimental-initial-corrupt-check`: compare HashKV with peers before serving (restart only).
    pub initial_corrupt_check: bool,
    /// `--experimental-corrupt-check-time` (0: off).
    pub corrupt_check_time: Duration,
    /// `--force-new-cluster`: restart as a one-member cluster from this member's data.
    pub force_new_cluster: bool,
    /// `--experimental-compaction-batch-limit`: compacted revisions deleted per engine write
    /// (0 or less: etcd's 1000).
    pub compaction_batch_limit: usize,
    pub log_level: String,
    pub storage_engine: StorageEngine,
    /// `--rocksdb-block-cache-bytes` and `--rocksdb-memtable-bytes`.
    pub rocksdb: crate::storage::RocksOptions,
    pub peer_tls: PeerTlsFlags,
    pub client_tls: ClientTlsFlags,
    /// `--cipher-suites`: Go's names, in order of preference (TLS 1.2; empty means the defaults).
    pub cipher_suites: Vec<String>,
    /// `--auth-token`, `--auth-token-ttl` (seconds), `--bcrypt-cost`.
    pub auth_token: String,
    pub auth_token_ttl: Duration,
    pub bcrypt_cost: u32,
    /// `--metrics`: `extensive` adds gRPC latency histograms.
    pub metrics: crate::metrics::Level,
    /// `--listen-metrics-urls`: extra plain-HTTP listeners serving `/metrics` and `/health`.
    pub listen_metrics_urls: Vec<String>,
    /// `--logger`: etcd's zap JSON lines instead of the default text lines.
    pub logger: crate::log::Logger,
    /// `--log-outputs`: `default`, `stderr`, `stdout` or file paths.
    pub log_outputs: Vec<String>,
    /// `--experimental-warning-apply-duration`: applies slower than this are logged.
    pub warning_apply_duration: Duration,
    /// `--max-concurrent-streams` and the `--grpc-keepalive-*` flags, for the client listeners.
    pub grpc: crate::api::GrpcSettings,
    /// `--config-file`, when the settings came from it.
    pub config_file: Option<String>,
    /// Flags given on the command line or environment that are accepted but not acted on.
    pub ignored: Vec<String>,
}

fn command(with_env: bool) -> Command {
    let mut cmd = Command::new("metastore")
        .about("An etcd v3 compatible metadata store")
        .disable_version_flag(true)
        // Go's flag package takes a flag given twice; the last value wins.
        .args_override_self(true)
        .arg(Arg::new("version").long("version").action(ArgAction::SetTrue).help("Print the version and exit"));
    for (name, kind, default, _) in FLAGS {
        let mut arg = Arg::new(*name).long(*name).default_value(*default);
        if with_env {
            arg = arg.env(format!("ETCD_{}", name.to_uppercase().replace('-', "_")));
        }
        if *kind == Bool {
            arg = arg.num_args(0..=1).require_equals(true).default_missing_value("true");
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// Go's flag package also accepts `-flag`; clap wants `--flag`.
fn normalise_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let single_dash_long = a.starts_with('-') && !a.starts_with("--") && a.len() > 2;
            if i > 0 && single_dash_long && a.as_bytes()[1].is_ascii_alphabetic() {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// What parsing the command line asks for.
pub enum Parsed {
    Run(Box<Config>),
    PrintVersion,
}

/// Why the settings could not be read: a bad command line (exit 2) or a bad config file (etcd's
/// `error verifying flags`, exit 1).
#[derive(Debug)]
pub enum ParseError {
    Flags(String),
    Invalid(String),
}

impl ParseError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ParseError::Flags(_) => 2,
            ParseError::Invalid(_) => 1,
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Flags(e) | ParseError::Invalid(e) => f.write_str(e),
        }
    }
}

impl From<ParseError> for String {
    fn from(e: ParseError) -> String {
        e.to_string()
    }
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, ParseError> {
    let m = command(true).try_get_matches_from(normalise_args(args)).map_err(|e| ParseError::Flags(e.to_string()))?;
    if m.get_flag("version") {
        return Ok(Parsed::PrintVersion);
    }
    let path = m.get_one::<String>("config-file").cloned().unwrap_or_default();
    if path.is_empty() {
        return from_matches(&m).map(|c| Parsed::Run(Box::new(c))).map_err(ParseError::Flags);
    }
    let invalid = |e: String| ParseError::Invalid(format!("error verifying flags, {e}. See 'etcd --help'."));
    let yaml = std::fs::read_to_string(&path).map_err(|e| invalid(format!("open {path}: {}", io_reason(&e))))?;
    let args = std::iter::once("metastore".to_string()).chain(file::to_args(&yaml).map_err(invalid)?);
    let m = command(false).try_get_matches_from(args).map_err(|e| invalid(e.to_string()))?;
    let mut cfg = from_matches(&m).map_err(invalid)?;
    cfg.config_file = Some(path);
    Ok(Parsed::Run(Box::new(cfg)))
}

/// Go's wording of a failed open: `no such file or directory`, not Rust's `(os error 2)` suffix.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.split_once(" (os error") {
        Some((reason, _)) => reason.to_lowercase(),
        None => text,
    }
}

fn from_matches(m: &ArgMatches) -> Result<Config, String> {
    let get = |name: &str| m.get_one::<String>(name).cloned().unwrap_or_default();
    let num = |name: &str| -> Result<u64, String> {
        get(name).parse::<u64>().map_err(|_| format!("invalid value {:?} for flag --{name}", get(name)))
    };
    let ignored = FLAGS
        .iter()
        .filter(|(name, _, _, support)| *support == Ignored && is_explicit(m, name))
        .map(|(name, _, _, _)| format!("--{name}"))
        .collect();
    let name = get("name");
    let data_dir = match get("data-dir") {
        d if d.is_empty() => format!("{name}.etcd"),
        d => d,
    };
    let advertise_peer = list(&get("initial-advertise-peer-urls"));
    let initial_cluster = match get("initial-cluster") {
        s if s.is_empty() => advertise_peer.iter().map(|u| (name.clone(), u.clone())).collect(),
        s => parse_initial_cluster(&s)?,
    };
    let heartbeat_ms = num("heartbeat-interval")?.max(1);
    let election_ms = num("election-timeout")?;
    if election_ms < 5 * heartbeat_ms {
        return Err(format!(
            "--election-timeout[{election_ms}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat_ms}ms]"
        ));
    }
    let storage_engine = match get("storage-engine").as_str() {
        "rocksdb" => StorageEngine::RocksDb,
        "memory" => StorageEngine::Memory,
        other => return Err(format!("unknown --storage-engine {other:?} (rocksdb or memory)")),
    };
    let budget = |name: &str| -> Result<usize, String> {
        match num(name)? {
            n if n < MIN_ROCKSDB_BUDGET => Err(format!("--{name} must be at least {MIN_ROCKSDB_BUDGET} bytes")),
            n => Ok(n as usize),
        }
    };
    let rocksdb = crate::storage::RocksOptions {
        block_cache_bytes: budget("rocksdb-block-cache-bytes")?,
        memtable_bytes: budget("rocksdb-memtable-bytes")?,
    };
    let state = get("initial-cluster-state");
    if state != "new" && state != "existing" {
        return Err(format!("unexpected --initial-cluster-state {state:?} (new or existing)"));
    }
    Ok(Config {
        name,
        data_dir,
        wal_dir: get("wal-dir"),
        listen_client_urls: list(&get("listen-client-urls")),
        advertise_client_urls: list(&get("advertise-client-urls")),
        listen_peer_urls: list(&get("listen-peer-urls")),
        initial_advertise_peer_urls: advertise_peer,
        initial_cluster,
        initial_cluster_state: state,
        initial_cluster_token: get("initial-cluster-token"),
        heartbeat: Duration::from_millis(heartbeat_ms),
        election_ticks: (election_ms / heartbeat_ms) as usize,
        max_request_bytes: num("max-request-bytes")? as usize,
        max_txn_ops: num("max-txn-ops")? as usize,
        snapshot_count: num("snapshot-count")?,
        strict_reconfig_check: get("strict-reconfig-check") == "true",
        watch_progress_interval: parse_duration(&get("experimental-watch-progress-notify-interval"))?,
        initial_corrupt_check: get("experimental-initial-corrupt-check") == "true",
        corrupt_check_time: parse_duration(&get("experimental-corrupt-check-time"))?,
        force_new_cluster: get("force-new-cluster") == "true",
        compaction_batch_limit: match get("experimental-compaction-batch-limit").parse::<i64>() {
            Ok(n) if n > 0 => n as usize,
            Ok(_) => 1000,
            Err(_) => {
                return Err(format!(
                    "invalid value {:?} for flag --experimental-compaction-batch-limit",
                    get("experimental-compaction-batch-limit")
                ))
            }
        },
        auto_compaction: AutoCompaction::from_flags(&get("auto-compaction-mode"), &get("auto-compaction-retention"))?,
        quota_backend_bytes: get("quota-backend-bytes")
            .parse()
            .map_err(|_| format!("invalid value {:?} for flag --quota-backend-bytes", get("quota-backend-bytes")))?,
        log_level: get("log-level"),
        storage_engine,
        rocksdb,
        peer_tls: PeerTlsFlags {
            cert_file: get("peer-cert-file"),
            key_file: get("peer-key-file"),
            trusted_ca_file: get("peer-trusted-ca-file"),
            client_cert_auth: get("peer-client-cert-auth") == "true",
            auto_tls: get("peer-auto-tls") == "true",
        },
        client_tls: ClientTlsFlags {
            cert_file: get("cert-file"),
            key_file: get("key-file"),
            trusted_ca_file: get("trusted-ca-file"),
            client_cert_auth: get("client-cert-auth") == "true",
            auto_tls: get("auto-tls") == "true",
            crl_file: get("client-crl-file"),
            allowed_hostname: get("client-cert-allowed-hostname"),
        },
        cipher_suites: list(&get("cipher-suites")),
        auth_token: get("auth-token"),
        auth_token_ttl: Duration::from_secs(num("auth-token-ttl")?),
        bcrypt_cost: num("bcrypt-cost")?.min(u32::MAX as u64) as u32,
        metrics: crate::metrics::Level::from_flag(&get("metrics")),
        listen_metrics_urls: list(&get("listen-metrics-urls")),
        logger: crate::log::Logger::from_flag(&get("logger"))?,
        log_outputs: list(&get("log-outputs")),
        warning_apply_duration: parse_duration(&get("experimental-warning-apply-duration"))?,
        grpc: crate::api::GrpcSettings {
            max_concurrent_streams: get("max-concurrent-streams").parse().map_err(|_| {
                format!("invalid value {:?} for flag --max-concurrent-streams", get("max-concurrent-streams"))
            })?,
            keepalive_min_time: parse_duration(&get("grpc-keepalive-min-time"))?,
            keepalive_interval: parse_duration(&get("grpc-keepalive-interval"))?,
            keepalive_timeout: parse_duration(&get("grpc-keepalive-timeout"))?,
        },
        config_file: None,
        ignored,
    })
}

/// Parses Go's duration syntax as etcd's flags use it: `500ms`, `10s`, `10m`, `1h`, `1m30s`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::go_duration::parse(s).ok_or_else(|| format!("invalid duration {s:?}"))
}

fn is_explicit(m: &ArgMatches, name: &str) -> bool {
    matches!(
        m.value_source(name),
        Some(clap::parser::ValueSource::CommandLine) | Some(clap::parser::ValueSource::EnvVariable)
    )
}

fn parse_initial_cluster(s: &str) -> Result<Vec<(String, String)>, String> {
    list(s)
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((n, u)) if !n.is_empty() && !u.is_empty() => Ok((n.to_string(), u.to_string())),
            _ => Err(format!("invalid --initial-cluster entry {pair:?} (want name=peer-url)")),
        })
        .collect()
}

impl Config {
    /// The initial members, with etcd's ids; a name listed twice has several peer URLs.
    pub fn initial_members(&self) -> Vec<Member> {
        let mut names: Vec<&str> = Vec::new();
        for (n, _) in &self.initial_cluster {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
        names
            .into_iter()
            .map(|n| {
                let peer_urls: Vec<String> =
                    self.initial_cluster.iter().filter(|(m, _)| m == n).map(|(_, u)| u.clone()).collect();
                let client_urls = if n == self.name { self.advertise_client_urls.clone() } else { Vec::new() };
                Member {
                    id: member_id(&peer_urls, &self.initial_cluster_token),
                    name: n.to_string(),
                    peer_urls,
                    client_urls,
                    is_learner: false,
                }
            })
            .collect()
    }

    pub fn member_id(&self) -> u64 {
        member_id(&self.initial_advertise_peer_urls, &self.initial_cluster_token)
    }

    pub fn cluster_id(&self) -> u64 {
        let ids: Vec<u64> = self.initial_members().iter().map(|m| m.id).collect();
        cluster_id(&ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Config {
        let args = std::iter::once("metastore").chain(args.iter().copied()).map(String::from);
        match parse(args).expect("flags parse") {
            Parsed::Run(c) => *c,
            Parsed::PrintVersion => panic!("unexpected --version"),
        }
    }

    #[test]
    fn defaults_match_etcd() {
        let c = run(&[]);
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, "default.etcd");
        assert_eq!(c.listen_client_urls, ["http://localhost:2379"]);
        assert_eq!(c.initial_cluster, [("default".to_string(), "http://localhost:2380".to_string())]);
        assert_eq!((c.heartbeat, c.election_ticks), (Duration::from_millis(100), 10));
        assert_eq!((c.max_request_bytes, c.max_txn_ops), (1572864, 128));
        assert_eq!(format!("{:x}", c.member_id()), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", c.cluster_id()), "cdf818194e3a8c32");
    }

    #[test]
    fn both_forms_single_dash_and_bools() {
        let c =
            run(&["--name=n1", "-data-dir", "/tmp/x", "--peer-auto-tls", "--max-txn-ops", "7", "--enable-v2=false"]);
        assert_eq!((c.name.as_str(), c.data_dir.as_str(), c.max_txn_ops), ("n1", "/tmp/x", 7));
        assert_eq!(c.ignored, ["--enable-v2"]);
        assert!(c.peer_tls.auto_tls);
    }

    #[test]
    fn a_repeated_flag_takes_the_last_value() {
        let c = run(&["--client-cert-auth", "--name", "a", "--client-cert-auth", "--name", "b"]);
        assert!(c.client_tls.client_cert_auth);
        assert_eq!(c.name, "b");
    }

    #[test]
    fn rocksdb_budgets_come_from_their_flags() {
        assert_eq!(run(&[]).rocksdb, crate::storage::RocksOptions::default());
        let c = run(&["--rocksdb-block-cache-bytes", "8388608", "--rocksdb-memtable-bytes=16777216"]);
        assert_eq!(c.rocksdb, crate::storage::RocksOptions { block_cache_bytes: 8 << 20, memtable_bytes: 16 << 20 });
    }

    #[test]
    fn grpc_keepalive_flags_reach_the_client_servers_settings() {
        let d = run(&[]).grpc;
        let hours = |h: u64| Duration::from_secs(h * 3600);
        assert_eq!(
            (d.keepalive_min_time, d.keepalive_interval, d.keepalive_timeout),
            (Duration::from_secs(5), hours(2), Duration::from_secs(20))
        );
        let c = run(&["--grpc-keepalive-min-time", "2s", "--grpc-keepalive-interval=1m"]).grpc;
        assert_eq!((c.keepalive_min_time, c.keepalive_interval), (Duration::from_secs(2), Duration::from_secs(60)));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("ten").is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        let args = |a: &[&str]| parse(std::iter::once("metastore").chain(a.iter().copied()).map(String::from));
        assert!(args(&["--heartbeat-interval", "100", "--election-timeout", "200"]).is_err());
        assert!(args(&["--initial-cluster", "n1"]).is_err());
        assert!(args(&["--storage-engine", "tape"]).is_err());
        assert!(args(&["--rocksdb-block-cache-bytes", "1000"]).is_err());
        assert!(args(&["--rocksdb-memtable-bytes", "lots"]).is_err());
        assert!(args(&["--no-such-flag"]).is_err());
    }
}
