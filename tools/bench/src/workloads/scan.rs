//! `put-under-scan`: put latency with and without full-keyspace scans running at the same time.
//!
//! The question it answers: does a long read (etcdctl's `get --prefix ""` over a million keys)
//! hold up writes, heartbeats or the leader's leadership? Steps:
//!
//! 1. load `--load-keys` keys (`--load-prefix` + zero-padded index, `--load-val-size` values) in
//!    transactions of [`LOAD_BATCH`](super::LOAD_BATCH) puts, `--load-parallel` in flight;
//! 2. baseline: the `put` workload (same flags as `put`) for `--duration`/`--total`, nothing else
//!    running (skipped with `--no-baseline`);
//! 3. the same puts again while `--scanners` extra tasks each loop a Range over the whole
//!    keyspace: key `"\0"`, range_end `"\0"` (every key; what `etcdctl get --prefix ""` sends),
//!    no limit, linearizable unless `--scan-consistency s`, values included unless
//!    `--scan-keys-only`. The scanners' client accepts responses of any size (tonic's default
//!    limit of 4 MiB would reject a 1M-key response; etcd sends up to 2 GiB).
//!
//! Around each phase Maintenance.Status is asked of every endpoint: the highest raft term seen
//! and the leader reported with it. A higher term after a phase means an election happened
//! during it. The scanners connect to the first endpoint (the leader with `--target-leader`).
//!
//! The report's latency is the put latency under scan; `extra` carries the baseline, the p99
//! ratio, scans completed/failed, scan latency, keys per scan and the terms. The scanners run on a
//! runtime and threads of their own (see [`Scanners`]), so decoding their huge responses never
//! delays a put task; they still share the machine's CPUs with the puts and the server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, KvClient};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Map, Value};

use crate::cli::{Consistency, Global, PutUnderScanArgs, User};
use crate::conn;
use crate::keys::{self, KeyPicker};
use crate::recorder::{error_code, error_message, Recorder};
use crate::report::{latency_json, Report};
use crate::runner;

use super::put::PutWorker;

/// Largest response the scanners accept (etcd's own server-side send limit is `math.MaxInt32`).
const SCAN_MAX_DECODE: usize = i32::MAX as usize;

/// The highest raft term any endpoint reports, with the leader reported alongside it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TermSample {
    pub term: u64,
    pub leader: u64,
    pub answered: usize,
}

impl TermSample {
    fn to_json(self) -> Value {
        json!({"raft_term": self.term, "leader": format!("{:x}", self.leader), "members_answered": self.answered})
    }
}

/// Asks every endpoint for its status (5 s each); members that do not answer are left out.
pub async fn terms(endpoints: &[String]) -> TermSample {
    let mut s = TermSample::default();
    for ep in endpoints {
        let Ok(mut c) = conn::connect_one(ep, None).await else { continue };
        if let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(5), c.status()).await {
            s.answered += 1;
            if st.raft_term() > s.term || (st.raft_term() == s.term && s.leader == 0) {
                s.term = st.raft_term();
                s.leader = st.leader();
            }
        }
    }
    s
}

/// Whether an election happened between two samples (unknown when either had no answer).
pub fn term_changed(before: TermSample, after: TermSample) -> Value {
    if before.answered == 0 || after.answered == 0 {
        Value::Null
    } else {
        Value::Bool(after.term != before.term || after.leader != before.leader)
    }
}

/// The scan request: every key (`"\0"` to `"\0"`), no limit.
pub fn scan_options(a: &PutUnderScanArgs) -> GetOptions {
    let mut o = GetOptions::new().with_range(vec![0u8]);
    if a.scan_keys_only {
        o = o.with_keys_only();
    }
    if a.scan_consistency == Consistency::S {
        o = o.with_serializable();
    }
    o
}

/// Loops full scans until `stop`; records each into `rec` and adds the keys returned.
async fn scanner(mut kv: KvClient, options: GetOptions, timeout: Duration, rec: Arc<Recorder>, stats: Arc<ScanStats>) {
    while !stats.stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = tokio::time::timeout(timeout, kv.get(vec![0u8], Some(options.clone()))).await;
        stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        match result {
            Ok(Ok(resp)) => {
                rec.ok(0, sent.elapsed());
                stats.keys.fetch_add(resp.kvs().len() as u64, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                rec.err(0, &error_code(&e), &error_message(&e));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => rec.err(0, "DeadlineExceeded", "client-side --scan-timeout"),
        }
    }
}

/// The scanners run on their own runtime and OS threads: decoding a response of hundreds of
/// megabytes takes seconds of CPU, which on the puts' runtime would hold up the put tasks queued
/// on that worker and show up as put latency that no server caused.
struct Scanners {
    thread: std::thread::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Scanners {
    /// Connects `--scanners` clients to `endpoint` and starts their loops; returns once all are connected.
    async fn start(
        endpoint: String,
        user: Option<&User>,
        a: &PutUnderScanArgs,
        rec: Arc<Recorder>,
        stats: Arc<ScanStats>,
    ) -> Result<Self, String> {
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let (n, options, timeout) = (a.scanners, scan_options(a), a.scan_timeout);
        let user = user.cloned();
        let thread = std::thread::Builder::new()
            .name("scanners".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(n.max(1)).enable_all().build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("scanner runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut kvs = Vec::with_capacity(n);
                    for _ in 0..n {
                        match conn::connect_one(&endpoint, user.as_ref()).await {
                            Ok(c) => kvs.push(c.kv_client().max_decoding_message_size(SCAN_MAX_DECODE)),
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    for kv in kvs {
                        tokio::spawn(scanner(kv, options.clone(), timeout, rec.clone(), stats.clone()));
                    }
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.await;
                });
                // Dropping the runtime cancels a scan still in flight.
                rt.shutdown_timeout(Duration::from_secs(5));
            })
            .map_err(|e| format!("scanner thread: {e}"))?;
        ready_rx.await.map_err(|_| "scanner thread ended early".to_string())??;
        Ok(Self { thread, stop })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

#[derive(Default)]
struct ScanStats {
    stop: AtomicBool,
    keys: AtomicU64,
    in_flight: AtomicU64,
}

fn put_workers(g: &Global, a: &PutUnderScanArgs, clients: &[Client], seed: u64) -> Vec<PutWorker> {
    let picker = Arc::new(KeyPicker::new(&a.keys));
    let value = Arc::new(keys::value(a.keys.val_size, 1));
    (0..g.clients)
        .map(|i| PutWorker {
            kv: clients[i % clients.len()].kv_client(),
            picker: picker.clone(),
            value: value.clone(),
            rng: StdRng::seed_from_u64(seed + i as u64),
        })
        .collect()
}

fn phase_json(rec: &Recorder, elapsed: Duration) -> Value {
    let r = Report::from_recorder("put", rec, elapsed, Value::Null);
    let errors: Map<String, Value> = r.errors.iter().map(|(c, (n, _))| (c.clone(), json!(n))).collect();
    json!({"ok": r.ok(), "errors": errors, "elapsed_s": elapsed.as_secs_f64(), "throughput": r.throughput(),
        "latency_ms": latency_json(&r.latency), "over_100ms": r.latency.count_above(100_000_000),
        "over_1s": r.latency.count_above(1_000_000_000)})
}

pub async fn run(g: &Global, a: &PutUnderScanArgs) -> Result<Report, String> {
    a.keys.validate()?;
    let clients = conn::connect(g).await?;
    let scan_endpoint = if g.target_leader { conn::find_leader(&g.endpoints).await? } else { g.endpoints[0].clone() };

    let load_s = super::load_keys(&clients[0], &a.load).await?;

    let t0 = terms(&g.endpoints).await;
    let mut baseline = Value::Null;
    let mut t1 = t0;
    if !a.no_baseline {
        let rec = Arc::new(Recorder::new(&["put"]));
        let elapsed = runner::run(&super::opts(g, "put (no scan)"), &rec, put_workers(g, a, &clients, 0)).await;
        baseline = phase_json(&rec, elapsed);
        t1 = terms(&g.endpoints).await;
    }

    let stats = Arc::new(ScanStats::default());
    let scan_rec = Arc::new(Recorder::new(&["scan"]));
    let scanners = Scanners::start(scan_endpoint.clone(), g.user.as_ref(), a, scan_rec.clone(), stats.clone()).await?;
    let rec = Arc::new(Recorder::new(&["put"]));
    let elapsed = runner::run(&super::opts(g, "put (under scan)"), &rec, put_workers(g, a, &clients, 1000)).await;
    stats.stop.store(true, Ordering::Relaxed);
    // A scan still running when the puts end is not waited for: it did not complete in the phase.
    let unfinished = stats.in_flight.load(Ordering::Relaxed);
    scanners.stop().await;
    let t2 = terms(&g.endpoints).await;

    let cfg = json!({"key_size": a.keys.key_size, "val_size": a.keys.val_size,
        "key_space_size": a.keys.key_space_size, "sequential_keys": a.keys.sequential_keys,
        "load_keys": a.load.load_keys, "load_prefix": a.load.load_prefix, "load_key_size": a.load.load_key_size,
        "load_val_size": a.load.load_val_size, "scanners": a.scanners, "scan_keys_only": a.scan_keys_only,
        "scan_consistency": if a.scan_consistency == Consistency::L { "l" } else { "s" },
        "scan_endpoint": scan_endpoint, "scan_timeout_s": a.scan_timeout.as_secs_f64(), "baseline": !a.no_baseline});
    let mut r = Report::from_recorder("put-under-scan", &rec, elapsed, super::config(g, cfg));
    let scans = Report::from_recorder("scan", &scan_rec, elapsed, Value::Null);
    let p99_under = r.latency.quantile(0.99) as f64 / 1e6;
    if let Some(p99_base) = baseline["latency_ms"]["p99"].as_f64() {
        r.set("p99_ratio", if p99_base > 0.0 { json!(p99_under / p99_base) } else { Value::Null });
    }
    r.set("baseline", baseline);
    r.set("puts_over_100ms", r.latency.count_above(100_000_000));
    r.set("puts_over_1s", r.latency.count_above(1_000_000_000));
    r.set("load_s", load_s);
    r.set("loaded_keys", a.load.load_keys);
    r.set("scans_completed", scans.ok());
    r.set("scans_failed", scans.error_total());
    r.set("scans_unfinished_at_end", unfinished);
    r.set("scan_latency_ms", latency_json(&scans.latency));
    let per_scan = stats.keys.load(Ordering::Relaxed) as f64 / scans.ok().max(1) as f64;
    r.set("keys_per_scan", per_scan);
    if scans.error_total() > 0 {
        let errs: Map<String, Value> =
            scans.errors.iter().map(|(c, (n, m))| (c.clone(), json!({"count": n, "message": m}))).collect();
        r.set("scan_errors", Value::Object(errs));
    }
    r.set("term_before", t0.to_json());
    if !a.no_baseline {
        r.set("term_after_baseline", t1.to_json());
        r.set("term_changed_during_baseline", term_changed(t0, t1));
    }
    r.set("term_after_scan", t2.to_json());
    r.set("term_changed_during_scan", term_changed(t1, t2));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_or_leader_change_is_an_election() {
        let s = |term, leader| TermSample { term, leader, answered: 1 };
        assert_eq!(term_changed(s(2, 7), s(2, 7)), Value::Bool(false));
        assert_eq!(term_changed(s(2, 7), s(3, 7)), Value::Bool(true));
        assert_eq!(term_changed(s(2, 7), s(2, 8)), Value::Bool(true));
        assert_eq!(term_changed(TermSample::default(), s(2, 7)), Value::Null);
    }
}
