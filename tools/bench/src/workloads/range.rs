//! `range`: the same Range request over and over: one key, `[key, end)` or a prefix, with
//! linearizable (`l`) or serializable (`s`) consistency (etcd's `benchmark range`). With
//! `--load N` the keys are written first, so a prefix read returns exactly N keys; the report
//! gives the keys returned per response to show what was actually read.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use etcd_client::{GetOptions, KvClient};
use serde_json::json;

use crate::cli::{Consistency, Global, RangeArgs};
use crate::conn;
use crate::keys;
use crate::recorder::Recorder;
use crate::report::Report;
use crate::runner::{self, Worker};

struct RangeWorker {
    kv: KvClient,
    key: Arc<Vec<u8>>,
    options: GetOptions,
    kvs_returned: Arc<AtomicU64>,
}

impl Worker for RangeWorker {
    fn call(&mut self, _seq: u64) -> (usize, impl Future<Output = Result<(), etcd_client::Error>> + Send) {
        let (mut kv, key, options) = (self.kv.clone(), self.key.to_vec(), self.options.clone());
        let kvs_returned = self.kvs_returned.clone();
        (0, async move {
            let resp = kv.get(key, Some(options)).await?;
            kvs_returned.fetch_add(resp.kvs().len() as u64, Ordering::Relaxed);
            Ok(())
        })
    }
}

fn options(a: &RangeArgs) -> GetOptions {
    let mut o = GetOptions::new();
    if a.prefix {
        o = o.with_prefix();
    }
    if let Some(end) = &a.end {
        o = o.with_range(end.as_bytes().to_vec());
    }
    if a.limit > 0 {
        o = o.with_limit(a.limit);
    }
    if a.consistency == Consistency::S {
        o = o.with_serializable();
    }
    o
}

/// The keys `--load` writes: N keys under the prefix, or the key itself.
pub fn load_keys(a: &RangeArgs) -> Vec<Vec<u8>> {
    match a.load {
        0 => vec![],
        n if a.prefix => (0..n).map(|i| keys::key(&a.key, i, a.key.len() + 6)).collect(),
        _ => vec![a.key.as_bytes().to_vec()],
    }
}

pub async fn run(g: &Global, a: &RangeArgs) -> Result<Report, String> {
    let clients = conn::connect(g).await?;
    let loaded = load_keys(a);
    super::load(&clients[0], loaded.clone(), &keys::value(a.val_size, 2), 4).await?;
    let kvs_returned = Arc::new(AtomicU64::new(0));
    let key = Arc::new(a.key.as_bytes().to_vec());
    let workers = (0..g.clients)
        .map(|i| RangeWorker {
            kv: clients[i % clients.len()].kv_client(),
            key: key.clone(),
            options: options(a),
            kvs_returned: kvs_returned.clone(),
        })
        .collect();
    let rec = Arc::new(Recorder::new(&["range"]));
    let elapsed = runner::run(&super::opts(g, "range"), &rec, workers).await;
    let consistency = if a.consistency == Consistency::L { "l" } else { "s" };
    let cfg = json!({"key": a.key, "prefix": a.prefix, "end": a.end, "limit": a.limit,
        "consistency": consistency, "loaded": loaded.len()});
    let mut r = Report::from_recorder("range", &rec, elapsed, super::config(g, cfg));
    let per = kvs_returned.load(Ordering::Relaxed) as f64 / r.ok().max(1) as f64;
    r.set("keys_per_response", per);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> RangeArgs {
        let argv = ["metastore-bench", "range"].iter().chain(extra).copied();
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Range(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn load_writes_a_prefix_block_or_the_key() {
        assert!(load_keys(&args(&[])).is_empty());
        assert_eq!(load_keys(&args(&["--key", "k", "--load", "5"])), vec![b"k".to_vec()]);
        let ks = load_keys(&args(&["--key", "p/", "--prefix", "--load", "3"]));
        assert_eq!(ks, vec![b"p/000000".to_vec(), b"p/000001".to_vec(), b"p/000002".to_vec()]);
    }
}
