//! The workloads, one module each, and what they share.
//!
//! Every workload connects `--conns` clients, builds one [`Worker`](crate::runner::Worker) per
//! `--clients`, lets [`run`](crate::runner::run) drive them and turns the recorder into a
//! [`Report`]. Setup that is not measured (writing the keys a range reads, granting leases,
//! opening watches) happens before the clock starts. Requests a server does not implement are
//! still sent: they fail, and the report counts them by gRPC code instead of hiding them.

pub mod authenticate;
pub mod defrag;
pub mod k8s;
pub mod lease;
pub mod put;
pub mod range;
pub mod scan;
pub mod txn;
pub mod watch;
pub mod watch_latency;
mod watchers;

use std::time::Instant;

use etcd_client::{Client, Txn, TxnOp};
use serde_json::{json, Value};

use crate::cli::{Global, LoadArgs};
use crate::report::Report;
use crate::runner::RunOpts;

/// Keys written per transaction when loading data (etcd's --max-txn-ops default is 128).
pub const LOAD_BATCH: usize = 100;

/// Writes `keys` with `value` in transactions of [`LOAD_BATCH`] puts, `parallel` in flight at a
/// time; returns each key's mod_revision (the revision of the transaction that wrote it).
pub async fn load(client: &Client, keys: Vec<Vec<u8>>, value: &[u8], parallel: usize) -> Result<Vec<i64>, String> {
    let batches: Vec<Vec<Vec<u8>>> = keys.chunks(LOAD_BATCH).map(<[Vec<u8>]>::to_vec).collect();
    let mut revs = Vec::with_capacity(keys.len());
    for group in batches.chunks(parallel.max(1)) {
        let mut tasks = Vec::new();
        for batch in group {
            let mut kv = client.kv_client();
            let ops: Vec<TxnOp> = batch.iter().map(|k| TxnOp::put(k.clone(), value.to_vec(), None)).collect();
            let n = batch.len();
            tasks.push(tokio::spawn(async move {
                let resp = kv.txn(Txn::new().and_then(ops)).await.map_err(|e| format!("loading keys: {e}"))?;
                let rev = resp.header().map_or(0, |h| h.revision());
                Ok::<_, String>(vec![rev; n])
            }));
        }
        for t in tasks {
            revs.extend(t.await.map_err(|e| e.to_string())??);
        }
    }
    Ok(revs)
}

/// Writes the keys `a` describes (see [`load`]); returns how long it took, in seconds.
pub async fn load_keys(client: &Client, a: &LoadArgs) -> Result<f64, String> {
    let started = Instant::now();
    let keys: Vec<Vec<u8>> = (0..a.load_keys).map(|i| crate::keys::key(&a.load_prefix, i, a.load_key_size)).collect();
    load(client, keys, &crate::keys::value(a.load_val_size, 3), a.load_parallel).await?;
    Ok(started.elapsed().as_secs_f64())
}

/// The parts of the global options worth echoing in a report.
pub fn global_json(g: &Global) -> Value {
    json!({
        "endpoints": g.endpoints,
        "conns": g.conns,
        "clients": g.clients,
        "total": g.limits().total,
        "duration_s": g.limits().duration.map(|d| d.as_secs_f64()),
        "rate": g.rate,
        "target_leader": g.target_leader,
        "user": g.user.as_ref().map(|u| u.name.as_str()),
    })
}

/// Merges workload-specific settings into the echoed global options.
pub fn config(g: &Global, specific: Value) -> Value {
    let mut c = global_json(g);
    if let (Some(c), Value::Object(s)) = (c.as_object_mut(), specific) {
        c.extend(s);
    }
    c
}

/// Run options labelled with the workload name.
pub fn opts(g: &Global, label: &str) -> RunOpts {
    RunOpts::from_global(g, label)
}

/// A report for a workload whose run could not start (e.g. no watcher could be created).
pub fn not_run(mut r: Report, why: &str, since: Instant) -> Report {
    r.elapsed = since.elapsed();
    r.set("skipped", why);
    r
}
