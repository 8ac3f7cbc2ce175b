//! `k8s`: what a Kubernetes apiserver asks of etcd, reduced to four request kinds mixed by
//! weight (`--mix`), plus `--watchers` long-lived prefix watches (informers) on
//! `/registry/pods/` that count the events they receive while the run goes on.
//!
//! - `get`: linearizable Range of one object, `/registry/pods/ns-N/pod-I`.
//! - `list`: linearizable prefix Range of one namespace with `--list-limit` (paginated list).
//! - `cas`: GuaranteedUpdate: `Txn(if mod_revision(key) == cached then Put else Get)`. The
//!   client keeps each object's last known mod_revision (from the load, its own writes and the
//!   Get of a failed compare), as the apiserver's cache does; failed compares are counted as
//!   `cas_conflicts` (they are successful requests).
//! - `put-lease`: create an event, `/registry/events/ns-N/ev-SEQ`, attached to one of a few
//!   shared leases (the apiserver reuses a lease for many events). The leases are granted before
//!   the run; if that fails, each such request tries to grant one again, and the failure is
//!   what the report counts.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::watch;

use super::watchers;
use crate::cli::{Global, K8sArgs, K8sOp};
use crate::conn;
use crate::keys;
use crate::recorder::Recorder;
use crate::report::{latency_json, Report};
use crate::runner::{self, Worker};

const KINDS: [K8sOp; 4] = [K8sOp::Get, K8sOp::List, K8sOp::PutLease, K8sOp::Cas];
const LEASE_TTL: i64 = 600;

fn pod_key(i: u64, namespaces: u64) -> Vec<u8> {
    format!("/registry/pods/ns-{:03}/pod-{i:06}", i % namespaces).into_bytes()
}

fn namespace_prefix(n: u64) -> Vec<u8> {
    format!("/registry/pods/ns-{n:03}/").into_bytes()
}

/// State shared by all clients.
struct Shared {
    args: K8sArgs,
    revs: Vec<AtomicI64>,
    leases: Mutex<Vec<i64>>,
    value: Vec<u8>,
    conflicts: AtomicU64,
    listed: AtomicU64,
}

struct K8sWorker {
    client: Client,
    shared: Arc<Shared>,
    rng: StdRng,
}

impl K8sWorker {
    fn kind(op: K8sOp) -> usize {
        KINDS.iter().position(|k| *k == op).expect("every op is a kind")
    }
}

impl Worker for K8sWorker {
    fn call(&mut self, seq: u64) -> (usize, impl Future<Output = Result<(), etcd_client::Error>> + Send) {
        let sh = self.shared.clone();
        let op = sh.args.mix.pick(self.rng.gen_range(0..sh.args.mix.total_weight()));
        let obj = self.rng.gen_range(0..sh.args.objects.max(1));
        let ns = self.rng.gen_range(0..sh.args.namespaces.max(1));
        let lease_pick = self.rng.gen::<usize>();
        let mut kv = self.client.kv_client();
        let mut lc = self.client.lease_client();
        (Self::kind(op), async move {
            match op {
                K8sOp::Get => {
                    let r = kv.get(pod_key(obj, sh.args.namespaces), None).await?;
                    if let Some(kv) = r.kvs().first() {
                        sh.revs[obj as usize].fetch_max(kv.mod_revision(), Ordering::Relaxed);
                    }
                }
                K8sOp::List => {
                    let o = GetOptions::new().with_prefix().with_limit(sh.args.list_limit);
                    let r = kv.get(namespace_prefix(ns), Some(o)).await?;
                    sh.listed.fetch_add(r.kvs().len() as u64, Ordering::Relaxed);
                }
                K8sOp::Cas => {
                    let key = pod_key(obj, sh.args.namespaces);
                    let cached = sh.revs[obj as usize].load(Ordering::Relaxed);
                    let txn = Txn::new()
                        .when(vec![Compare::mod_revision(key.clone(), CompareOp::Equal, cached)])
                        .and_then(vec![TxnOp::put(key.clone(), sh.value.clone(), None)])
                        .or_else(vec![TxnOp::get(key, None)]);
                    let r = kv.txn(txn).await?;
                    let new_rev = if r.succeeded() {
                        r.header().map_or(0, |h| h.revision())
                    } else {
                        sh.conflicts.fetch_add(1, Ordering::Relaxed);
                        match r.op_responses().first() {
                            Some(TxnOpResponse::Get(g)) => g.kvs().first().map_or(0, |kv| kv.mod_revision()),
                            _ => 0,
                        }
                    };
                    sh.revs[obj as usize].fetch_max(new_rev, Ordering::Relaxed);
                }
                K8sOp::PutLease => {
                    let lease = {
                        let leases = sh.leases.lock().unwrap_or_else(|e| e.into_inner());
                        (!leases.is_empty()).then(|| leases[lease_pick % leases.len()])
                    };
                    let lease = match lease {
                        Some(l) => l,
                        None => {
                            let id = lc.grant(LEASE_TTL, None).await?.id();
                            sh.leases.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                            id
                        }
                    };
                    let key = format!("/registry/events/ns-{ns:03}/ev-{seq:09}");
                    let half = sh.value.len() / 2;
                    kv.put(key, &sh.value[..half], Some(PutOptions::new().with_lease(lease))).await?;
                }
            }
            Ok(())
        })
    }
}

pub async fn run(g: &Global, a: &K8sArgs) -> Result<Report, String> {
    if a.objects == 0 || a.namespaces == 0 {
        return Err("--objects and --namespaces must be at least 1".into());
    }
    let clients = conn::connect(g).await?;
    let value = keys::value(a.val_size, 6);
    let pods: Vec<Vec<u8>> = (0..a.objects).map(|i| pod_key(i, a.namespaces)).collect();
    let revs = super::load(&clients[0], pods, &value, 4).await?;
    let mut leases = Vec::new();
    for _ in 0..a.leases {
        match clients[0].lease_client().grant(LEASE_TTL, None).await {
            Ok(l) => leases.push(l.id()),
            Err(_) => break, // the put-lease requests will try again, and be counted
        }
    }
    let shared = Arc::new(Shared {
        args: a.clone(),
        revs: revs.into_iter().map(AtomicI64::new).collect(),
        leases: Mutex::new(leases),
        value,
        conflicts: AtomicU64::new(0),
        listed: AtomicU64::new(0),
    });

    // Informers: long-lived prefix watches, opened before the clock starts.
    let watch_rec = Recorder::new(&["watch"]);
    let (stop_tx, stop_rx) = watch::channel(false);
    let events = Arc::new(AtomicU64::new(0));
    let mut receivers = Vec::new();
    for w in 0..a.watchers {
        let key_of = |_| (b"/registry/pods/".to_vec(), WatchOptions::new().with_prefix());
        let client = &clients[w % clients.len()];
        if let Some((stream, _)) = watchers::open(client, 1, key_of, &watch_rec, 0, g.request_timeout).await {
            let events = events.clone();
            receivers.push(watchers::receive(stream, stop_rx.clone(), move |resp, _| {
                events.fetch_add(resp.events().len() as u64, Ordering::Relaxed);
            }));
        }
    }

    let workers = (0..g.clients)
        .map(|i| K8sWorker {
            client: clients[i % clients.len()].clone(),
            shared: shared.clone(),
            rng: StdRng::seed_from_u64(i as u64),
        })
        .collect();
    let names: Vec<&'static str> = KINDS.iter().map(|k| k.name()).collect();
    let rec = Arc::new(Recorder::new(&names));
    let elapsed = runner::run(&super::opts(g, "k8s"), &rec, workers).await;
    let drain_start = Instant::now();
    let cas_ok = rec.kinds()[K8sWorker::kind(K8sOp::Cas)].latency.count();
    let expected = cas_ok.saturating_sub(shared.conflicts.load(Ordering::Relaxed));
    let target = expected * receivers.len() as u64;
    watchers::wait_until(std::time::Duration::from_secs(5), || events.load(Ordering::Relaxed) >= target).await;
    let _ = stop_tx.send(true);
    for r in receivers {
        let _ = r.await;
    }

    let mix: Vec<String> = a.mix.0.iter().map(|(op, w)| format!("{}={w}", op.name())).collect();
    let cfg = json!({"objects": a.objects, "namespaces": a.namespaces, "val_size": a.val_size,
        "list_limit": a.list_limit, "watchers": a.watchers, "leases": a.leases, "mix": mix.join(",")});
    let mut r = Report::from_recorder("k8s", &rec, elapsed, super::config(g, cfg));
    let lists = rec.kinds()[K8sWorker::kind(K8sOp::List)].latency.count();
    r.set("cas_conflicts", shared.conflicts.load(Ordering::Relaxed));
    r.set("keys_per_list", shared.listed.load(Ordering::Relaxed) as f64 / lists.max(1) as f64);
    r.set("watchers_created", watch_rec.latency().count());
    r.set("watch_creation_ms", latency_json(&watch_rec.latency()));
    r.set("watch_events_expected", target);
    r.set("watch_events_delivered", events.load(Ordering::Relaxed));
    r.set("watch_drain_s", drain_start.elapsed().as_secs_f64());
    for (code, entry) in watch_rec.errors() {
        r.errors.insert(format!("watch/{code}"), entry);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_spread_over_namespaces() {
        assert_eq!(pod_key(12, 10), b"/registry/pods/ns-002/pod-000012");
        assert!(pod_key(12, 10).starts_with(&namespace_prefix(2)));
    }
}
