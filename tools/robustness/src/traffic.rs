//! The traffic: concurrent clients over `etcd-client`, each a closed loop of requests drawn from
//! etcd's robustness mix (`traffic/etcd.go`), plus Kubernetes-style clients (`kubernetes.go`:
//! list, then watch from the list's revision, then updates by compare-and-set on the cached
//! mod revision), dedicated watchers on every member (from the first revision, with `prev_kv`
//! and progress requests; one with the `NODELETE` filter), and a compactor.
//!
//! Every request is recorded with invoke and return time; an error that does not say what
//! happened (timeout, unavailable, leader changed, connection lost) is recorded as an unknown
//! outcome. Values are unique per run (`c<client>-<n>`), so an observed value names its writer.
//! Leases are per client with ids the client picks; one in four has a TTL of 2–4 s, so leases
//! expire during the run with their keys (the history then holds an expiry for each, see
//! [`History::add_lease_expiries`]), the others outlive it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, LeaseGrantOptions, PutOptions, WatchOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::{self, execute, Outcome};
use crate::history::*;

/// The key space every client works on.
pub const PREFIX: &str = "/r/";
/// Bound on one request: past it the outcome is unknown.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const LEASE_TTL: i64 = 3600;
/// Short TTLs (seconds), chosen for one lease in four: they expire while the traffic runs.
const SHORT_LEASE_TTL: std::ops::RangeInclusive<i64> = 2..=4;
/// A client pauses this long after an unknown outcome (a real client backs off too), so an
/// outage does not fill the history with thousands of unknowns.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct Config {
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub kubernetes_clients: usize,
    pub keys: usize,
    pub duration: Duration,
    /// Compact every this often, to the revision seen one period earlier.
    pub compact_every: Option<Duration>,
    pub seed: u64,
    /// Whether a progress notification means every earlier event was sent (not so in etcd 3.4,
    /// `watch::Allowances`): if not, a broken watch resumes after its last event instead.
    pub progress_is_bookmark: bool,
}

/// Shared by every task of a run: the clock and what was recorded.
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Operation>>,
    watches: Mutex<Vec<WatchSession>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder { start: Instant::now(), ops: Mutex::default(), watches: Mutex::default() })
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Runs `req` through `c` and records it.
    pub async fn call(&self, client_id: usize, c: &mut Client, req: Request) -> Option<Response> {
        let call = self.now();
        let out = tokio::time::timeout(REQUEST_TIMEOUT, execute(c, &req)).await;
        let ret = self.now();
        let (ret, response, error) = match out {
            Ok(Ok(r)) => (Some(ret), Some(r), None),
            Ok(Err(Outcome::Definite(e))) => (Some(ret), Some(Response::Error(e)), None),
            Ok(Err(Outcome::Unknown(msg))) => (None, None, Some(msg)),
            Err(_) => (None, None, Some("client timeout".into())),
        };
        let op = Operation { client: client_id, call, ret, request: req, response: response.clone(), error };
        self.ops.lock().expect("recorder").push(op);
        response
    }

    pub fn add_watch(&self, s: WatchSession) {
        self.watches.lock().expect("recorder").push(s);
    }

    pub fn into_history(
        self: Arc<Self>,
        initial_rev: i64,
        initial_kvs: std::collections::BTreeMap<String, Kv>,
    ) -> History {
        let me = Arc::try_unwrap(self).ok().expect("every task finished");
        History {
            operations: me.ops.into_inner().expect("recorder"),
            watches: me.watches.into_inner().expect("recorder"),
            initial_rev,
            initial_kvs,
        }
    }
}

pub async fn connect(endpoints: &[String], deadline: Instant) -> Option<Client> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2));
    while Instant::now() < deadline {
        if let Ok(c) = Client::connect(endpoints, Some(opts.clone())).await {
            return Some(c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn key(rng: &mut StdRng, keys: usize) -> String {
    format!("{PREFIX}k{}", rng.gen_range(0..keys))
}

fn range(key: &str) -> Range {
    Range { key: key.to_string(), prefix: false, limit: 0 }
}

fn list() -> Range {
    Range { key: PREFIX.to_string(), prefix: true, limit: 0 }
}

fn txn1(op: TxnOp) -> Request {
    Request::Txn { compares: vec![], success: vec![op], failure: vec![] }
}

/// One client of etcd's key-value mix, until `deadline`.
pub async fn kv_client(rec: Arc<Recorder>, cfg: Config, id: usize, deadline: Instant) {
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9));
    let Some(mut c) = connect(&cfg.endpoints, deadline).await else { return };
    let mut seq = 0u64;
    let mut value = || {
        seq += 1;
        format!("c{id}-{seq}")
    };
    let mut lease: Option<i64> = None;
    let mut lease_seq = 0i64;
    let mut known_mod: HashMap<String, i64> = HashMap::new();
    // etcd's EtcdPutDeleteLease weights.
    const WEIGHTS: [(u32, &str); 10] = [
        (15, "get"),
        (15, "list"),
        (10, "stale-get"),
        (10, "stale-list"),
        (20, "put"),
        (5, "delete"),
        (5, "multi-txn"),
        (5, "cas"),
        (5, "put-lease"),
        (5, "lease-revoke"),
    ];
    let total: u32 = WEIGHTS.iter().map(|w| w.0).sum();
    while Instant::now() < deadline {
        let mut pick = rng.gen_range(0..total);
        let kind = WEIGHTS
            .iter()
            .find(|(w, _)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .expect("weights")
            .1;
        let k = key(&mut rng, cfg.keys);
        let req = match kind {
            "get" => Request::Range { range: range(&k), serializable: false },
            "list" => Request::Range { range: list(), serializable: false },
            "stale-get" => Request::Range { range: range(&k), serializable: true },
            "stale-list" => Request::Range { range: list(), serializable: true },
            "put" => txn1(TxnOp::Put { key: k, value: value(), lease: 0 }),
            "delete" => txn1(TxnOp::Delete { key: k }),
            "multi-txn" => {
                let mut keys: Vec<String> = (0..cfg.keys).map(|i| format!("{PREFIX}k{i}")).collect();
                let n = rng.gen_range(2..=4.min(cfg.keys));
                let mut ops = Vec::new();
                for _ in 0..n {
                    let k = keys.swap_remove(rng.gen_range(0..keys.len()));
                    ops.push(match rng.gen_range(0..3) {
                        0 => TxnOp::Get(range(&k)),
                        1 => TxnOp::Put { key: k, value: value(), lease: 0 },
                        _ => TxnOp::Delete { key: k },
                    });
                }
                Request::Txn { compares: vec![], success: ops, failure: vec![] }
            }
            "cas" => Request::Txn {
                compares: vec![Compare::ModRevision(k.clone(), known_mod.get(&k).copied().unwrap_or(0))],
                success: vec![TxnOp::Put { key: k.clone(), value: value(), lease: 0 }],
                failure: vec![TxnOp::Get(range(&k))],
            },
            "put-lease" => match lease {
                Some(l) => txn1(TxnOp::Put { key: k, value: value(), lease: l }),
                None => {
                    lease_seq += 1;
                    let l = ((id as i64 + 1) << 32) | lease_seq;
                    let ttl = if rng.gen_ratio(1, 4) { rng.gen_range(SHORT_LEASE_TTL) } else { LEASE_TTL };
                    let granted = rec.call(id, &mut c, Request::LeaseGrant { id: l, ttl }).await;
                    lease = matches!(granted, Some(Response::Ok)).then_some(l);
                    continue;
                }
            },
            _ => match lease.take() {
                Some(l) => Request::LeaseRevoke { id: l },
                None => continue,
            },
        };
        let resp = rec.call(id, &mut c, req.clone()).await;
        learn_mod_revisions(&req, resp.as_ref(), &mut known_mod);
        if resp.is_none() {
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
}

/// Remembers the mod revisions a response reveals, for the next compare-and-set.
fn learn_mod_revisions(req: &Request, resp: Option<&Response>, known: &mut HashMap<String, i64>) {
    match (req, resp) {
        (Request::Range { range, .. }, Some(Response::Range { kvs, .. })) if !range.prefix => {
            known.insert(range.key.clone(), kvs.first().map_or(0, |(_, kv)| kv.modified));
        }
        (Request::Txn { success, .. }, Some(Response::Txn { rev, succeeded: true, .. })) => {
            for op in success {
                match op {
                    TxnOp::Put { key, .. } => {
                        known.insert(key.clone(), *rev);
                    }
                    TxnOp::Delete { key } => {
                        known.insert(key.clone(), 0);
                    }
                    TxnOp::Get(_) => {}
                }
            }
        }
        (Request::Txn { failure, .. }, Some(Response::Txn { succeeded: false, results, .. })) => {
            for (op, r) in failure.iter().zip(results) {
                if let (TxnOp::Get(range), OpResult::Get { kvs, .. }) = (op, r) {
                    known.insert(range.key.clone(), kvs.first().map_or(0, |(_, kv)| kv.modified));
                }
            }
        }
        _ => {}
    }
}

/// A Kubernetes-style client: list, watch from the list's revision (its cache follows the
/// watch), update by compare-and-set on the cached mod revision. Returns its last watcher, which
/// runs on until it saw the final revision.
pub async fn kubernetes_client(
    rec: Arc<Recorder>,
    cfg: Config,
    id: usize,
    deadline: Instant,
    until: WatchEnd,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0xabcd ^ id as u64);
    let mut c = connect(&cfg.endpoints, deadline).await?;
    let cache: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let mut watcher: Option<tokio::task::JoinHandle<()>> = None;
    let mut seq = 0u64;
    while Instant::now() < deadline {
        if watcher.as_ref().is_none_or(|w| w.is_finished()) {
            let Some(Response::Range { rev, kvs, .. }) =
                rec.call(id, &mut c, Request::Range { range: list(), serializable: false }).await
            else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            *cache.lock().expect("cache") = kvs.iter().map(|(k, kv)| (k.clone(), kv.modified)).collect();
            let spec = WatchSpec { range: list(), prev_kv: true, no_delete: false };
            let mut w = Watcher::new(format!("k8s-{id}"), cfg.endpoints.clone(), spec, &cfg);
            w.cache = Some(cache.clone());
            watcher = Some(tokio::spawn(w.run(rec.clone(), rev + 1, false, until.clone())));
        }
        let k = key(&mut rng, cfg.keys);
        let expect = cache.lock().expect("cache").get(&k).copied().unwrap_or(0);
        seq += 1;
        let req = Request::Txn {
            compares: vec![Compare::ModRevision(k.clone(), expect)],
            success: vec![TxnOp::Put { key: k.clone(), value: format!("k{id}-{seq}"), lease: 0 }],
            failure: vec![TxnOp::Get(range(&k))],
        };
        let resp = rec.call(1000 + id, &mut c, req.clone()).await;
        if resp.is_none() {
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
        let mut known = HashMap::new();
        learn_mod_revisions(&req, resp.as_ref(), &mut known);
        cache.lock().expect("cache").extend(known);
    }
    watcher
}

/// When watchers stop: once they saw `final_rev` (set when traffic ended), or at `hard_stop`.
#[derive(Clone)]
pub struct WatchEnd {
    pub final_rev: tokio::sync::watch::Receiver<Option<i64>>,
    pub hard_stop: Instant,
}

/// One watcher: a session per stream; a broken stream resumes at the last revision + 1; a
/// compaction cancel restarts at the compact revision (a new, unresumed session).
pub struct Watcher {
    pub name: String,
    pub endpoints: Vec<String>,
    pub spec: WatchSpec,
    /// A Kubernetes client's cache of mod revisions, fed by the events.
    pub cache: Option<Arc<Mutex<HashMap<String, i64>>>>,
    /// See [`Config::progress_is_bookmark`].
    pub progress_is_bookmark: bool,
}

impl Watcher {
    pub fn new(name: String, endpoints: Vec<String>, spec: WatchSpec, cfg: &Config) -> Watcher {
        Watcher { name, endpoints, spec, cache: None, progress_is_bookmark: cfg.progress_is_bookmark }
    }

    pub async fn run(self, rec: Arc<Recorder>, mut start: i64, progress: bool, end: WatchEnd) {
        let mut resumed = false;
        let mut last = start - 1;
        // The last revision the resumed stream must follow: progress counts only as a bookmark.
        let mut resume_after = start - 1;
        while Instant::now() < end.hard_stop {
            let Some(mut c) = connect(&self.endpoints, end.hard_stop).await else { break };
            let mut opts = WatchOptions::new().with_prefix().with_start_revision(start);
            if self.spec.prev_kv {
                opts = opts.with_prev_key();
            }
            if self.spec.no_delete {
                opts = opts.with_filters([etcd_client::WatchFilterType::NoDelete]);
            }
            let mut session = WatchSession {
                watcher: self.name.clone(),
                spec: self.spec.clone(),
                start_rev: start,
                resumed,
                responses: Vec::new(),
            };
            let Ok(Ok(mut stream)) =
                tokio::time::timeout(REQUEST_TIMEOUT, c.watch(self.spec.range.key.as_str(), Some(opts))).await
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut compacted = None;
            loop {
                let stop = end.final_rev.borrow().is_some_and(|f| last >= f) || Instant::now() >= end.hard_stop;
                if stop {
                    break;
                }
                tokio::select! {
                    _ = tick.tick() => {
                        if (progress || end.final_rev.borrow().is_some()) && stream.request_progress().await.is_err() {
                            break;
                        }
                    }
                    msg = stream.message() => {
                        let Ok(Some(m)) = msg else { break };
                        if m.created() && m.events().is_empty() && !m.canceled() {
                            continue;
                        }
                        let r = client::watch_response(rec.now(), &m);
                        for e in &r.events {
                            last = last.max(e.rev);
                            resume_after = resume_after.max(e.rev);
                            if let Some(cache) = &self.cache {
                                cache.lock().expect("cache").insert(e.key.clone(), if e.delete { 0 } else { e.kv.modified });
                            }
                        }
                        if r.progress {
                            last = last.max(r.header_rev);
                            if self.progress_is_bookmark {
                                resume_after = resume_after.max(r.header_rev);
                            }
                        }
                        let canceled = r.canceled;
                        if canceled && r.compact_rev > 0 {
                            compacted = Some(r.compact_rev);
                        }
                        session.responses.push(r);
                        if canceled {
                            break;
                        }
                    }
                }
            }
            rec.add_watch(session);
            if self.cache.is_some() && compacted.is_some() {
                return; // a Kubernetes client relists
            }
            match compacted {
                Some(rev) => {
                    start = rev;
                    resumed = false;
                    last = rev - 1;
                    resume_after = rev - 1;
                }
                None => {
                    start = resume_after + 1;
                    resumed = true;
                }
            }
            if end.final_rev.borrow().is_some_and(|f| last >= f) {
                break;
            }
        }
    }
}

/// Compacts every `every` to the revision read one period earlier (as etcd's traffic does).
pub async fn compactor(rec: Arc<Recorder>, cfg: Config, every: Duration, deadline: Instant) {
    let Some(mut c) = connect(&cfg.endpoints, deadline).await else { return };
    let mut previous: Option<i64> = None;
    while Instant::now() + every < deadline {
        tokio::time::sleep(every).await;
        if let Some(rev) = previous {
            rec.call(usize::MAX, &mut c, Request::Compact { rev }).await;
        }
        let now = tokio::time::timeout(REQUEST_TIMEOUT, c.get("/compactor", None)).await;
        previous = match now {
            Ok(Ok(r)) => r.header().map(|h| h.revision()),
            _ => None,
        };
    }
}

// Used by the client module to build requests; kept here beside the traffic that needs them.
pub(crate) fn get_options(r: &Range, serializable: bool) -> GetOptions {
    let mut o = GetOptions::new();
    if r.prefix {
        o = o.with_prefix();
    }
    if serializable {
        o = o.with_serializable();
    }
    if r.limit > 0 {
        o = o.with_limit(r.limit);
    }
    o
}

pub(crate) fn put_options(lease: i64) -> Option<PutOptions> {
    (lease != 0).then(|| PutOptions::new().with_lease(lease))
}

pub(crate) fn grant_options(id: i64) -> Option<LeaseGrantOptions> {
    Some(LeaseGrantOptions::new().with_id(id))
}
