//! `txn-put` (transactions of `--txn-ops` puts, etcd's `benchmark txn-put`) and `txn-mixed`
//! (single-op transactions, a Range with probability rw/(rw+1), a Put otherwise; etcd's
//! `benchmark txn-mixed`). `txn-mixed` writes the whole key space first so reads find data,
//! and reports reads and writes separately.

use std::future::Future;
use std::sync::Arc;

use etcd_client::{GetOptions, KvClient, Txn, TxnOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::cli::{Consistency, Global, TxnMixedArgs, TxnPutArgs};
use crate::conn;
use crate::keys::{self, KeyPicker};
use crate::recorder::Recorder;
use crate::report::Report;
use crate::runner::{self, Worker};

struct TxnPutWorker {
    kv: KvClient,
    picker: Arc<KeyPicker>,
    value: Arc<Vec<u8>>,
    ops: usize,
    rng: StdRng,
}

impl Worker for TxnPutWorker {
    fn call(&mut self, seq: u64) -> (usize, impl Future<Output = Result<(), etcd_client::Error>> + Send) {
        let ops: Vec<TxnOp> = distinct_indices(&self.picker, seq, self.ops, &mut self.rng)
            .into_iter()
            .map(|i| TxnOp::put(keys::key(&self.picker.prefix, i, self.picker.size), self.value.to_vec(), None))
            .collect();
        let mut kv = self.kv.clone();
        (0, async move { kv.txn(Txn::new().and_then(ops)).await.map(drop) })
    }
}

/// Key indices of transaction `seq`: `ops` distinct ones (etcd rejects a txn that puts one key
/// twice). Sequential mode takes the next `ops` indices; random mode draws until distinct.
fn distinct_indices(picker: &KeyPicker, seq: u64, ops: usize, rng: &mut StdRng) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::with_capacity(ops);
    let mut n = seq * ops as u64;
    while out.len() < ops {
        let i = picker.index(n, rng);
        n += 1;
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

pub async fn run_put(g: &Global, a: &TxnPutArgs) -> Result<Report, String> {
    a.keys.validate()?;
    if a.txn_ops == 0 || a.txn_ops as u64 > a.keys.key_space_size {
        return Err("--txn-ops must be between 1 and --key-space-size".into());
    }
    let clients = conn::connect(g).await?;
    let picker = Arc::new(KeyPicker::new(&a.keys));
    let value = Arc::new(keys::value(a.keys.val_size, 3));
    let workers = (0..g.clients)
        .map(|i| TxnPutWorker {
            kv: clients[i % clients.len()].kv_client(),
            picker: picker.clone(),
            value: value.clone(),
            ops: a.txn_ops,
            rng: StdRng::seed_from_u64(i as u64),
        })
        .collect();
    let rec = Arc::new(Recorder::new(&["txn-put"]));
    let elapsed = runner::run(&super::opts(g, "txn-put"), &rec, workers).await;
    let cfg = json!({"txn_ops": a.txn_ops, "key_size": a.keys.key_size, "val_size": a.keys.val_size,
        "key_space_size": a.keys.key_space_size, "sequential_keys": a.keys.sequential_keys});
    let mut r = Report::from_recorder("txn-put", &rec, elapsed, super::config(g, cfg));
    r.set("puts_per_second", r.throughput() * a.txn_ops as f64);
    Ok(r)
}

struct MixedWorker {
    kv: KvClient,
    picker: Arc<KeyPicker>,
    value: Arc<Vec<u8>>,
    read_probability: f64,
    serializable: bool,
    rng: StdRng,
}

impl Worker for MixedWorker {
    fn call(&mut self, seq: u64) -> (usize, impl Future<Output = Result<(), etcd_client::Error>> + Send) {
        let key = self.picker.pick(seq, &mut self.rng);
        let read = self.rng.gen_bool(self.read_probability);
        let op = if read {
            let o = if self.serializable { GetOptions::new().with_serializable() } else { GetOptions::new() };
            TxnOp::get(key, Some(o))
        } else {
            TxnOp::put(key, self.value.to_vec(), None)
        };
        let mut kv = self.kv.clone();
        (usize::from(!read), async move { kv.txn(Txn::new().and_then(vec![op])).await.map(drop) })
    }
}

pub async fn run_mixed(g: &Global, a: &TxnMixedArgs) -> Result<Report, String> {
    a.keys.validate()?;
    if !(a.rw_ratio.is_finite() && a.rw_ratio >= 0.0) {
        return Err("--rw-ratio must be a non-negative number".into());
    }
    let clients = conn::connect(g).await?;
    let picker = Arc::new(KeyPicker::new(&a.keys));
    let value = Arc::new(keys::value(a.keys.val_size, 4));
    let all: Vec<Vec<u8>> = (0..a.keys.key_space_size).map(|i| keys::key(&picker.prefix, i, picker.size)).collect();
    super::load(&clients[0], all, &value, 4).await?;
    let workers = (0..g.clients)
        .map(|i| MixedWorker {
            kv: clients[i % clients.len()].kv_client(),
            picker: picker.clone(),
            value: value.clone(),
            read_probability: a.rw_ratio / (a.rw_ratio + 1.0),
            serializable: a.consistency == Consistency::S,
            rng: StdRng::seed_from_u64(i as u64),
        })
        .collect();
    let rec = Arc::new(Recorder::new(&["read", "write"]));
    let elapsed = runner::run(&super::opts(g, "txn-mixed"), &rec, workers).await;
    let consistency = if a.consistency == Consistency::L { "l" } else { "s" };
    let cfg = json!({"rw_ratio": a.rw_ratio, "consistency": consistency, "key_size": a.keys.key_size,
        "val_size": a.keys.val_size, "key_space_size": a.keys.key_space_size});
    Ok(Report::from_recorder("txn-mixed", &rec, elapsed, super::config(g, cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_keys_are_distinct() {
        let mut rng = StdRng::seed_from_u64(1);
        let random = KeyPicker { prefix: "k".into(), size: 4, space: 12, sequential: false };
        for seq in 0..200 {
            let mut ks = distinct_indices(&random, seq, 12, &mut rng);
            ks.sort_unstable();
            assert_eq!(ks, (0..12).collect::<Vec<_>>());
        }
        let sequential = KeyPicker { sequential: true, space: 1000, ..random };
        assert_eq!(distinct_indices(&sequential, 3, 4, &mut rng), vec![12, 13, 14, 15]);
    }
}
