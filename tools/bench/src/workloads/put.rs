//! `put`: one Put per request, key chosen sequentially or at random over the key space
//! (etcd's `benchmark put`).

use std::future::Future;
use std::sync::Arc;

use etcd_client::KvClient;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

use crate::cli::{Global, PutArgs};
use crate::conn;
use crate::keys::{self, KeyPicker};
use crate::recorder::Recorder;
use crate::report::Report;
use crate::runner::{self, Worker};

pub(super) struct PutWorker {
    pub(super) kv: KvClient,
    pub(super) picker: Arc<KeyPicker>,
    pub(super) value: Arc<Vec<u8>>,
    pub(super) rng: StdRng,
}

impl Worker for PutWorker {
    fn call(&mut self, seq: u64) -> (usize, impl Future<Output = Result<(), etcd_client::Error>> + Send) {
        let key = self.picker.pick(seq, &mut self.rng);
        let value = self.value.to_vec();
        let mut kv = self.kv.clone();
        (0, async move { kv.put(key, value, None).await.map(drop) })
    }
}

pub async fn run(g: &Global, a: &PutArgs) -> Result<Report, String> {
    a.keys.validate()?;
    let clients = conn::connect(g).await?;
    let picker = Arc::new(KeyPicker::new(&a.keys));
    let value = Arc::new(keys::value(a.keys.val_size, 1));
    let workers = (0..g.clients)
        .map(|i| PutWorker {
            kv: clients[i % clients.len()].kv_client(),
            picker: picker.clone(),
            value: value.clone(),
            rng: StdRng::seed_from_u64(i as u64),
        })
        .collect();
    let rec = Arc::new(Recorder::new(&["put"]));
    let elapsed = runner::run(&super::opts(g, "put"), &rec, workers).await;
    let cfg = json!({"key_size": a.keys.key_size, "val_size": a.keys.val_size,
        "key_space_size": a.keys.key_space_size, "sequential_keys": a.keys.sequential_keys});
    Ok(Report::from_recorder("put", &rec, elapsed, super::config(g, cfg)))
}
