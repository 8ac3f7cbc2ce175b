//! One scenario: a fresh 3-member cluster, the traffic for a while with one kind of fault
//! injected, then every check. After the traffic stops the watchers run until they saw the last
//! revision, and every member is read back for acknowledged writes (a write acknowledged with
//! revision R must be in every member's history at R).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use etcd_client::WatchOptions;

use crate::cluster::Cluster;
use crate::history::{History, Request, Response, TxnOp, WatchSpec};
use crate::linearize::{self, Verdict};
use crate::nemesis::{self, Fault};
use crate::replay::{self, Replay};
use crate::traffic::{self, Config, Recorder, WatchEnd, Watcher, PREFIX};
use crate::watch::{self, WatchReport};

#[derive(Clone, Debug)]
pub struct Setup {
    pub bin: String,
    pub launcher: PathBuf,
    pub fault: Fault,
    pub duration: Duration,
    pub clients: usize,
    pub kubernetes_clients: usize,
    pub env: Vec<(String, String)>,
    pub check_budget: Duration,
    pub seed: u64,
    /// The server is etcd 3.4, whose progress answers may precede catch-up events
    /// (`watch::Allowances`); see [`Setup::is_etcd`].
    pub etcd_3_4: bool,
}

impl Setup {
    /// Whether `bin` is real etcd (by its file name), whose known 3.4 behaviours the watch
    /// validators allow for.
    pub fn is_etcd(bin: &str) -> bool {
        std::path::Path::new(bin).file_name().is_some_and(|n| n == "etcd")
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub scenario: String,
    pub operations: usize,
    pub unknown: usize,
    pub faults: Vec<String>,
    /// "yes", "no" or "unknown (budget)".
    pub linearizable: String,
    pub report: Option<String>,
    pub serializable_checked: usize,
    pub serializable_failures: Vec<String>,
    pub watch: WatchReport,
    /// Acknowledged writes missing from some member's history afterwards.
    pub lost: usize,
    pub lost_detail: Vec<String>,
    /// Members whose `HashKV` at the final revision differs from the others' (or could not be
    /// read): a state divergence no client history need show.
    pub divergence: Vec<String>,
    pub check_time: Duration,
    /// The recorded history (with the lease expiries the suite added), kept only when the
    /// scenario failed, to save.
    pub history: Option<History>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.linearizable == "yes"
            && self.serializable_failures.is_empty()
            && self.watch.failures.is_empty()
            && self.lost == 0
            && self.divergence.is_empty()
    }
}

pub fn run(s: &Setup) -> Result<Outcome, String> {
    let cluster =
        Cluster::start(&s.bin, s.launcher.clone(), 3, &s.fault.cluster_flags(), &s.env, s.fault.needs_proxy())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let cfg = Config {
        endpoints: cluster.endpoints(),
        clients: s.clients,
        kubernetes_clients: s.kubernetes_clients,
        keys: 10,
        duration: s.duration,
        compact_every: Some(Duration::from_secs(5).min(s.duration / 2)),
        seed: s.seed,
        progress_is_bookmark: !s.etcd_3_4,
    };
    let (initial_rev, initial_kvs) = rt.block_on(initial(&cfg))?;
    let rec = Recorder::new();
    let deadline = Instant::now() + s.duration;
    let (final_tx, final_rx) = tokio::sync::watch::channel(None);
    let end = WatchEnd { final_rev: final_rx, hard_stop: deadline + Duration::from_secs(40) };

    let nemesis_fault = s.fault;
    let nemesis = std::thread::spawn(move || nemesis::run(cluster, nemesis_fault, deadline));
    let (cluster, faults, last) = rt.block_on(async {
        let mut tasks = Vec::new();
        for (i, ep) in cfg.endpoints.iter().enumerate() {
            let spec = WatchSpec { range: list(), prev_kv: true, no_delete: false };
            let w = Watcher::new(format!("watch-m{i}"), vec![ep.clone()], spec, &cfg);
            tasks.push(tokio::spawn(w.run(rec.clone(), initial_rev + 1, true, end.clone())));
        }
        let spec = WatchSpec { range: list(), prev_kv: false, no_delete: true };
        let w = Watcher::new("watch-nodelete".into(), cfg.endpoints.clone(), spec, &cfg);
        tasks.push(tokio::spawn(w.run(rec.clone(), initial_rev + 1, false, end.clone())));
        let mut writers = Vec::new();
        for id in 0..cfg.clients {
            writers.push(tokio::spawn(traffic::kv_client(rec.clone(), cfg.clone(), id, deadline)));
        }
        let mut kubernetes = Vec::new();
        for id in 0..cfg.kubernetes_clients {
            kubernetes.push(tokio::spawn(traffic::kubernetes_client(
                rec.clone(),
                cfg.clone(),
                id,
                deadline,
                end.clone(),
            )));
        }
        if let Some(every) = cfg.compact_every {
            writers.push(tokio::spawn(traffic::compactor(rec.clone(), cfg.clone(), every, deadline)));
        }
        let (cluster, faults) =
            tokio::task::spawn_blocking(move || nemesis.join().expect("nemesis thread")).await.expect("join");
        for w in writers {
            w.await.map_err(|e| e.to_string())?;
        }
        for k in kubernetes {
            tasks.extend(k.await.map_err(|e| e.to_string())?);
        }
        let last = final_revision(&cfg).await?;
        final_tx.send(Some(last)).map_err(|e| e.to_string())?;
        for t in tasks {
            t.await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>((cluster, faults, last))
    })?;
    let mut history = rec.into_history(initial_rev, initial_kvs);
    history.add_lease_expiries();
    let (lost, lost_detail) = rt.block_on(lost_writes(&cluster, &history));
    let divergence = rt.block_on(members_agree(&cluster, last));
    drop(cluster);
    let mut out = check(&history, s.check_budget, s.etcd_3_4);
    out.scenario = s.fault.name().into();
    out.faults = faults;
    out.lost = lost;
    out.lost_detail = lost_detail;
    out.divergence = divergence;
    if !out.passed() {
        out.history = Some(history);
    }
    Ok(out)
}

fn list() -> crate::history::Range {
    crate::history::Range { key: PREFIX.into(), prefix: true, limit: 0 }
}

async fn initial(cfg: &Config) -> Result<(i64, BTreeMap<String, crate::history::Kv>), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = traffic::connect(&cfg.endpoints, deadline).await.ok_or("cannot connect")?;
    let req = Request::Range { range: list(), serializable: false };
    match crate::client::execute(&mut c, &req).await {
        Ok(Response::Range { rev, kvs, .. }) => Ok((rev, kvs.into_iter().collect())),
        _ => Err("initial read failed".into()),
    }
}

async fn final_revision(cfg: &Config) -> Result<i64, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(mut c) = traffic::connect(&cfg.endpoints, deadline).await {
            if let Ok(r) = c.get(PREFIX, None).await {
                return Ok(r.header().map_or(0, |h| h.revision()));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("no final revision".into())
}

/// Every linearization check of a recorded history (`etcd_3_4`: allow for etcd 3.4's early
/// progress answers).
pub fn check(h: &History, budget: Duration, etcd_3_4: bool) -> Outcome {
    let started = Instant::now();
    let checked = linearize::check(h, budget);
    let mut out = Outcome {
        operations: h.client_operations().count(),
        unknown: h.client_operations().filter(|o| o.ret.is_none()).count(),
        ..Outcome::default()
    };
    match &checked.verdict {
        Verdict::Linearizable { order } => {
            out.linearizable = "yes".into();
            let replay = Replay::new(&checked.entries, order, &checked.initial);
            let (n, failures) = replay::check_serializable(h, &replay);
            out.serializable_checked = n;
            out.serializable_failures = failures;
            let compactions = h
                .operations
                .iter()
                .filter_map(|o| match o.request {
                    Request::Compact { rev } => Some((o.call, rev)),
                    _ => None,
                })
                .collect();
            let allow = watch::Allowances { compactions, progress_not_bookmark: etcd_3_4 };
            out.watch = watch::validate(&h.watches, &replay, &allow);
        }
        Verdict::NotLinearizable { report } => {
            out.linearizable = "no".into();
            out.report = Some(report.clone());
        }
        Verdict::Unknown { visited, report } => {
            out.linearizable = format!("unknown (budget; {visited} states)");
            out.report = Some(report.clone());
        }
    }
    out.check_time = started.elapsed();
    out
}

/// `HashKV` of every member at revision `rev` once it has applied it; the members must agree
/// (same hash where the compact revision is the same). Returns what disagreed, empty if nothing.
async fn members_agree(c: &Cluster, rev: i64) -> Vec<String> {
    let mut hashes = Vec::new();
    for m in &c.members {
        let deadline = Instant::now() + Duration::from_secs(20);
        let got = loop {
            let r = async {
                let mut cl = etcd_client::Client::connect([m.client_url()], None).await.map_err(|e| e.to_string())?;
                cl.hash_kv(rev).await.map_err(|e| e.to_string())
            };
            match tokio::time::timeout(Duration::from_secs(5), r).await {
                Ok(Ok(h)) => break Ok((h.hash(), h.compact_version())),
                Ok(Err(e)) if Instant::now() >= deadline => break Err(e),
                Err(_) if Instant::now() >= deadline => break Err("timed out".to_string()),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        hashes.push((m.name.clone(), got));
    }
    // etcd's corruption check compares hashes only between members at the same compact revision.
    let mut out = Vec::new();
    for (i, (name, h)) in hashes.iter().enumerate() {
        match h {
            Err(e) => out.push(format!("{name}: HashKV at {rev}: {e}")),
            Ok((hash, compact)) => {
                let other = hashes[..i].iter().find_map(|(n, o)| match o {
                    Ok((oh, oc)) if oc == compact && oh != hash => Some((n, oh)),
                    _ => None,
                });
                if let Some((n, oh)) = other {
                    out.push(format!("{name}: HashKV at {rev} (compact {compact}) is {hash:#x}, {n} has {oh:#x}"));
                }
            }
        }
    }
    out
}

/// Acknowledged writes (revision R from the answer) missing at R from some member's history.
async fn lost_writes(c: &Cluster, h: &History) -> (usize, Vec<String>) {
    let compacted = h
        .operations
        .iter()
        .filter_map(|o| match (&o.request, &o.response) {
            (Request::Compact { rev }, Some(Response::Ok)) => Some(*rev),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let mut acked: Vec<(i64, String, Option<String>)> = Vec::new(); // (rev, key, value or delete)
    for o in &h.operations {
        if let (Request::Txn { success, failure, .. }, Some(Response::Txn { rev, succeeded, results })) =
            (&o.request, &o.response)
        {
            let ops = if *succeeded { success } else { failure };
            for (op, r) in ops.iter().zip(results) {
                match (op, r) {
                    (TxnOp::Put { key, value, .. }, _) => acked.push((*rev, key.clone(), Some(value.clone()))),
                    (TxnOp::Delete { key }, crate::history::OpResult::Delete { deleted: 1 }) => {
                        acked.push((*rev, key.clone(), None))
                    }
                    _ => {}
                }
            }
        }
    }
    let from = (compacted + 1).max(h.initial_rev + 1);
    let to = acked.iter().map(|a| a.0).max().unwrap_or(0);
    let mut lost = HashSet::new();
    let mut detail = Vec::new();
    for (i, m) in c.members.iter().enumerate() {
        let seen = match member_history(&m.client_url(), from, to).await {
            Ok(s) => s,
            Err(e) => {
                detail.push(format!("{}: cannot read history: {e}", c.members[i].name));
                continue;
            }
        };
        for a in acked.iter().filter(|a| a.0 >= from) {
            if !seen.contains(a) && lost.insert(a.clone()) && detail.len() < 20 {
                detail.push(format!(
                    "{}: {} {} @{} acknowledged but missing",
                    m.name,
                    if a.2.is_some() { "put" } else { "delete" },
                    a.1,
                    a.0
                ));
            }
        }
    }
    (lost.len(), detail)
}

async fn member_history(url: &str, from: i64, to: i64) -> Result<HashSet<(i64, String, Option<String>)>, String> {
    let mut c = etcd_client::Client::connect([url], None).await.map_err(|e| e.to_string())?;
    let mut out = HashSet::new();
    if to < from {
        return Ok(out);
    }
    let mut stream = c
        .watch(PREFIX, Some(WatchOptions::new().with_prefix().with_start_revision(from)))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = from - 1;
    while last < to {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, stream.message())
            .await
            .map_err(|_| format!("history read stopped at {last}"))?;
        let Some(m) = msg.map_err(|e| e.to_string())? else { break };
        if m.canceled() {
            return Err(format!("watch canceled: {}", m.cancel_reason()));
        }
        for e in m.events() {
            let Some(kv) = e.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let value = matches!(e.event_type(), etcd_client::EventType::Put)
                .then(|| String::from_utf8_lossy(kv.value()).into_owned());
            last = last.max(kv.mod_revision());
            out.insert((kv.mod_revision(), key, value));
        }
    }
    Ok(out)
}
