//! The `metastore` binary: etcd's command line in front of MetaStore's server, and
//! `metastore snapshot status|restore` (etcdutl's shape) for backups.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use metastore::api;
use metastore::config::{self, Config, Parsed, StorageEngine};
use metastore::server::{Server, ServerConfig};

mod identity;
mod snapshot_cmd;
use metastore::storage::{Engine, MemoryEngine, RocksEngine};
use metastore::tls::{ClientTls, PeerTls};

/// mimalloc: fewer cycles per allocation than glibc on the gRPC path (feature `alloc-mimalloc`).
#[cfg(feature = "alloc-mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ETCD_API_VERSION: &str = "3.4.23";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("snapshot") {
        std::process::exit(snapshot_cmd::run(args[2..].to_vec()));
    }
    let cfg = match config::parse(args) {
        Ok(Parsed::Run(cfg)) => cfg,
        Ok(Parsed::PrintVersion) => {
            println!("etcd Version: {ETCD_API_VERSION}");
            println!("MetaStore Version: {}", env!("CARGO_PKG_VERSION"));
            println!("Git SHA: Not provided");
            println!("Go Version: not applicable (Rust)");
            println!("Go OS/Arch: {}/{}", std::env::consts::OS, std::env::consts::ARCH);
            return;
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(e.exit_code());
        }
    };
    if let Err(e) = metastore::log::init(cfg.logger, &cfg.log_outputs, &cfg.log_level) {
        eprintln!("error verifying flags, {e}. See 'etcd --help'.");
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let outcome = runtime.block_on(run(*cfg));
    // Dropping the runtime drops every task holding the server, so storage closes before exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Err(e) = outcome {
        tracing::error!("{e}");
        std::process::exit(1);
    }
}

async fn run(mut cfg: Config) -> Result<(), String> {
    if let Some(path) = &cfg.config_file {
        tracing::info!(
            target: "etcdmain",
            path = %path,
            "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided"
        );
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), etcd_api = ETCD_API_VERSION, "starting MetaStore");
    if !cfg.ignored.is_empty() {
        tracing::warn!("flags accepted but not honoured yet (see docs/compatibility.md): {}", cfg.ignored.join(" "));
    }
    metastore::metrics::init(cfg.metrics);
    if let Some(url) = cfg.listen_metrics_urls.iter().find(|u| u.starts_with("https://")) {
        return Err(format!("metrics URL {url}: https is not supported yet (see docs/compatibility.md)"));
    }
    let metrics_listeners = bind_all(&cfg.listen_metrics_urls, "metrics").await?;
    let (engine, raft_wal_dir) = open_engine(&cfg)?;
    snapshot_cmd::apply_restored_cluster(&mut cfg, &*engine)?;
    let peer_tls = peer_tls(&cfg)?;
    let identity = identity::resolve(&cfg, &*engine, peer_tls.as_ref()).await?;
    let identity_restarted = identity.restarted;
    let peer_listeners = bind_all(&cfg.listen_peer_urls, "peer").await?;
    let server_cfg = ServerConfig {
        member_id: identity.member_id,
        cluster_id: identity.cluster_id,
        cluster_token: cfg.initial_cluster_token.clone(),
        start: identity.start,
        known_peers: identity.known_peers,
        peer_tls: peer_tls.clone(),
        max_request_bytes: cfg.max_request_bytes,
        max_txn_ops: cfg.max_txn_ops,
        heartbeat: cfg.heartbeat,
        election_ticks: cfg.election_ticks,
        snapshot_count: cfg.snapshot_count,
        strict_reconfig_check: cfg.strict_reconfig_check,
        watch_progress_interval: cfg.watch_progress_interval,
        auth_token: cfg.auth_token.clone(),
        auth_token_ttl: cfg.auth_token_ttl,
        bcrypt_cost: cfg.bcrypt_cost,
        client_cert_auth: cfg.client_tls.client_cert_auth,
        quota_backend_bytes: cfg.quota_backend_bytes,
        auto_compaction: cfg.auto_compaction,
        corrupt_check_time: cfg.corrupt_check_time,
        warning_apply_duration: cfg.warning_apply_duration,
        force_new_cluster: cfg.force_new_cluster,
        compaction_batch_limit: cfg.compaction_batch_limit,
        raft_wal_dir,
    };
    let server = Server::start(server_cfg, engine).map_err(|e| e.to_string())?;
    let mut tasks = tokio::task::JoinSet::new();
    for (_, listener) in peer_listeners {
        tasks.spawn(metastore::peer::serve(server.clone(), listener, peer_tls.clone()));
    }
    // etcd checks only a member that restarts on its data dir.
    if cfg.initial_corrupt_check && identity_restarted {
        server.initial_corrupt_check().await?;
    }
    let client_tls = client_tls(&cfg)?;
    let client_listeners = bind_client(&cfg.listen_client_urls, client_tls.as_ref(), &cfg.client_tls).await?;
    server.publish(cfg.name.clone(), cfg.advertise_client_urls.clone()).await;
    tracing::info!("etcdserver/api: enabled capabilities for version 3.4");
    tracing::info!(
        "etcdserver: published {{Name:{} ClientURLs:[{}]}} to cluster {:x}",
        cfg.name,
        cfg.advertise_client_urls.join(" "),
        server.config().cluster_id
    );
    for client in client_listeners {
        tracing::info!(target: "embed", "ready to serve client requests");
        if client.insecure {
            tracing::info!("embed: serving insecure client requests on {}, this is strongly discouraged!", client.addr);
        }
        let tls = client.secure.then(|| client_tls.clone()).flatten();
        if tls.is_some() {
            tracing::info!("embed: serving client traffic securely on {}", client.addr);
        }
        let connections = metastore::tls::client_connections(client.listener, tls, client.insecure);
        tasks.spawn(api::serve(server.clone(), connections, cfg.max_request_bytes, cfg.grpc));
    }
    for (url, listener) in metrics_listeners {
        tracing::info!("embed: serving metrics on {url}");
        tasks.spawn(api::serve_metrics(server.clone(), listener));
    }
    let outcome = tokio::select! {
        Some(res) = tasks.join_next() => match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("listener task: {e}")),
        },
        _ = shutdown_signal() => {
            tracing::info!("received a termination signal; stopping");
            Ok(())
        }
    };
    tasks.abort_all();
    let stopping = server.clone();
    tokio::task::spawn_blocking(move || stopping.stop()).await.map_err(|e| format!("stopping raft: {e}"))?;
    outcome
}

/// The peer TLS settings the flags ask for: certificate files, or a self-signed certificate.
fn peer_tls(cfg: &Config) -> Result<Option<PeerTls>, String> {
    let t = &cfg.peer_tls;
    if !t.cert_file.is_empty() || !t.key_file.is_empty() {
        let ca = (!t.trusted_ca_file.is_empty()).then_some(t.trusted_ca_file.as_str());
        return PeerTls::from_files(&t.cert_file, &t.key_file, ca, t.client_cert_auth)
            .map(Some)
            .map_err(|e| e.to_string());
    }
    if t.auto_tls {
        let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        for url in cfg.initial_advertise_peer_urls.iter().chain(&cfg.listen_peer_urls) {
            if let Some(host) = url.split("://").nth(1).and_then(|r| r.rsplit_once(':')).map(|(h, _)| h.to_string()) {
                hosts.push(host);
            }
        }
        hosts.sort();
        hosts.dedup();
        return PeerTls::auto(hosts).map(Some).map_err(|e| e.to_string());
    }
    Ok(None)
}

/// The client TLS the flags ask for: certificate files, or `--auto-tls`'s self-signed one.
fn client_tls(cfg: &Config) -> Result<Option<Arc<ClientTls>>, String> {
    let hosts: Vec<String> = cfg.listen_client_urls.iter().filter_map(|url| url_host(url)).collect();
    ClientTls::from_flags(&cfg.client_tls, &cfg.cipher_suites, Path::new(&cfg.data_dir), &hosts)
        .map(|tls| tls.map(Arc::new))
        .map_err(|e| e.to_string())
}

/// The host of `scheme://host:port`, without IPv6 brackets.
fn url_host(url: &str) -> Option<String> {
    let hostport = url.split("://").nth(1)?.trim_end_matches('/');
    let (host, _port) = hostport.rsplit_once(':')?;
    Some(host.trim_matches(|c| c == '[' || c == ']').to_string())
}

/// One listening address of the client URLs: `http://` and `https://` URLs of the same address
/// share it, as in etcd.
struct ClientListener {
    addr: SocketAddr,
    listener: tokio::net::TcpListener,
    secure: bool,
    insecure: bool,
}

/// Binds the client URLs with etcd's checks: an `https://` URL needs a certificate; TLS flags
/// on `http://` URLs are ignored with a warning.
async fn bind_client(
    urls: &[String],
    tls: Option<&Arc<ClientTls>>,
    flags: &config::ClientTlsFlags,
) -> Result<Vec<ClientListener>, String> {
    let mut by_addr: Vec<(SocketAddr, bool, bool)> = Vec::new();
    for url in urls {
        let secure = url.starts_with("https://");
        if secure && tls.is_none() {
            return Err(format!(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url {url} with HTTPS scheme"
            ));
        }
        if !secure && (!flags.cert_file.is_empty() || !flags.key_file.is_empty()) {
            tracing::warn!(
                "scheme is HTTP while key and cert files are present; ignoring key and cert files (client-url {url})"
            );
        }
        if !secure && flags.client_cert_auth {
            tracing::warn!("scheme is HTTP while --client-cert-auth is enabled; ignoring client cert auth for this URL (client-url {url})");
        }
        let addr = socket_addr(url, "client")?;
        match by_addr.iter_mut().find(|(a, _, _)| *a == addr) {
            Some((_, s, i)) => (*s, *i) = (*s || secure, *i || !secure),
            None => by_addr.push((addr, secure, !secure)),
        }
    }
    let mut listeners = Vec::new();
    for (addr, secure, insecure) in by_addr {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("listen on {addr}: {e}"))?;
        listeners.push(ClientListener { addr, listener, secure, insecure });
    }
    Ok(listeners)
}

async fn bind_all(urls: &[String], what: &str) -> Result<Vec<(String, tokio::net::TcpListener)>, String> {
    let mut listeners = Vec::new();
    for url in urls {
        let addr = socket_addr(url, what)?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("listen on {url}: {e}"))?;
        listeners.push((url.clone(), listener));
    }
    Ok(listeners)
}

/// Opens the engine, and says where the raft WAL is (`None`: in memory, with the engine).
fn open_engine(cfg: &Config) -> Result<(Arc<dyn Engine>, Option<PathBuf>), String> {
    match cfg.storage_engine {
        StorageEngine::Memory => Ok((Arc::new(MemoryEngine::new()), None)),
        StorageEngine::RocksDb => {
            let member = Path::new(&cfg.data_dir).join("member");
            let dir = member.join("rocksdb");
            let given = wal_dir(cfg, &dir)?;
            // Data dirs created with --wal-dir before the raft WAL keep RocksDB's own log files
            // there (RocksDB finds them only where it is told): it goes on using that directory.
            let rocks_wal = given.as_deref().filter(|d| has_rocksdb_logs(d));
            std::fs::create_dir_all(&dir).map_err(|e| format!("create data dir {}: {e}", dir.display()))?;
            let engine: Arc<dyn Engine> = Arc::new(
                RocksEngine::open_with_wal(&dir, rocks_wal, cfg.rocksdb)
                    .map_err(|e| format!("open {}: {e}", dir.display()))?,
            );
            // Fault tests only: a disk that fails on command (`disk-fail-*-after` failpoints).
            #[cfg(feature = "fault-injection")]
            let engine = metastore::storage::FaultyEngine::wrap(engine);
            let raft_wal = given.unwrap_or_else(|| member.join("wal"));
            Ok((engine, Some(raft_wal)))
        }
    }
}

fn has_rocksdb_logs(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().ends_with(".log")))
        .unwrap_or(false)
}

/// `--wal-dir` when given: the raft WAL's directory (etcd's meaning: the log on a disk of its
/// own). The log is found only there, so the data dir records the one it was created with
/// (`member/wal-dir`) and a start that names another is refused instead of silently starting
/// without the writes only that log holds.
fn wal_dir(cfg: &Config, db_dir: &Path) -> Result<Option<PathBuf>, String> {
    let marker = Path::new(&cfg.data_dir).join("member").join("wal-dir");
    let recorded = std::fs::read_to_string(&marker).ok().map(|s| s.trim_end_matches('\n').to_string());
    let given = (!cfg.wal_dir.is_empty()).then(|| cfg.wal_dir.clone());
    let existing = db_dir.join("CURRENT").exists();
    match (recorded, given) {
        (None, None) => Ok(None),
        (Some(r), Some(g)) if r == g => Ok(Some(g.into())),
        (Some(r), _) => Err(format!(
            "the data dir {} keeps its write-ahead log in {r}: start it with --wal-dir {r}",
            cfg.data_dir
        )),
        (None, Some(_)) if existing => Err(format!(
            "the data dir {} keeps its write-ahead log inside it: --wal-dir can only be chosen when a data dir is created",
            cfg.data_dir
        )),
        (None, Some(g)) => {
            let member = marker.parent().expect("marker has a parent");
            std::fs::create_dir_all(member).map_err(|e| format!("create data dir {}: {e}", member.display()))?;
            std::fs::write(&marker, format!("{g}\n")).map_err(|e| format!("write {}: {e}", marker.display()))?;
            Ok(Some(g.into()))
        }
    }
}

/// Resolves `http://host:port` or `https://host:port` to a socket address to listen on.
fn socket_addr(url: &str, what: &str) -> Result<SocketAddr, String> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", rest)) => rest,
        _ => return Err(format!("{what} URL {url} must start with http:// or https://")),
    };
    let hostport = rest.trim_end_matches('/');
    std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .map_err(|e| format!("{what} URL {url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{what} URL {url} resolves to no address"))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
