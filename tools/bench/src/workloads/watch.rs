//! `watch`: create `--streams` × `--watch-per-stream` watchers (watcher i on key
//! i % `--watched-key-total`), time each creation, then run puts over the watched keys (the
//! global `--total`/`--duration`/`--rate`/`--clients` drive them) and count the events
//! delivered. Figures: watcher creation latency (the report's histogram), events expected
//! vs delivered, and delivered events per second from the first put to the last event.
//! When no watcher can be created the put phase is skipped and the report says why.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use etcd_client::{KvClient, WatchOptions};
use serde_json::json;
use tokio::sync::watch;

use super::watchers;
use crate::cli::{Global, WatchArgs};
use crate::conn;
use crate::keys;
use crate::recorder::Recorder;
use crate::report::Report;
use crate::runner::{self, Worker};

struct WatchedPut {
    kv: KvClient,
    keys: Arc<Vec<Vec<u8>>>,
    watchers_on: Arc<Vec<u64>>,
    value: Arc<Vec<u8>>,
    expected: Arc<AtomicU64>,
}

impl Worker for WatchedPut {
    fn call(&mut self, seq: u64) -> (usize, impl Future<Output = Result<(), etcd_client::Error>> + Send) {
        let k = (seq % self.keys.len() as u64) as usize;
        let (key, value, mut kv) = (self.keys[k].clone(), self.value.to_vec(), self.kv.clone());
        let (expected, watchers) = (self.expected.clone(), self.watchers_on[k]);
        (0, async move {
            kv.put(key, value, None).await?;
            expected.fetch_add(watchers, Ordering::Relaxed);
            Ok(())
        })
    }
}

pub async fn run(g: &Global, a: &WatchArgs) -> Result<Report, String> {
    if a.streams == 0 || a.watch_per_stream == 0 || a.watched_key_total == 0 {
        return Err("--streams, --watch-per-stream and --watched-key-total must be at least 1".into());
    }
    let clients = conn::connect(g).await?;
    let keys: Arc<Vec<Vec<u8>>> =
        Arc::new((0..a.watched_key_total as u64).map(|i| keys::key("watch/", i, a.key_size)).collect());
    let cfg = json!({"streams": a.streams, "watch_per_stream": a.watch_per_stream,
        "watched_key_total": a.watched_key_total, "key_size": a.key_size, "val_size": a.val_size});
    let create = Arc::new(Recorder::new(&["create"]));
    let setup = Instant::now();
    let mut opening = Vec::new();
    for s in 0..a.streams {
        let (client, keys, create, per) =
            (clients[s % clients.len()].clone(), keys.clone(), create.clone(), a.watch_per_stream);
        let key_of = move |i: usize| (keys[(s * per + i) % keys.len()].clone(), WatchOptions::new());
        let limit = g.request_timeout;
        opening.push(tokio::spawn(async move { watchers::open(&client, per, key_of, &create, 0, limit).await }));
    }
    let mut watchers_on = vec![0u64; keys.len()];
    let mut streams = Vec::new();
    for (s, o) in opening.into_iter().enumerate() {
        if let Some((stream, created)) = o.await.map_err(|e| e.to_string())? {
            for i in 0..created {
                watchers_on[(s * a.watch_per_stream + i) % keys.len()] += 1;
            }
            streams.push(stream);
        }
    }
    let mut report = Report::from_recorder("watch", &create, setup.elapsed(), super::config(g, cfg));
    report.latency_of = "watch creation".into();
    let created: u64 = watchers_on.iter().sum();
    report.set("watchers_created", created);
    if streams.is_empty() {
        return Ok(super::not_run(report, "no watcher could be created", setup));
    }

    let delivered = Arc::new(AtomicU64::new(0));
    let last_event_ns = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now();
    let receivers: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let (delivered, last) = (delivered.clone(), last_event_ns.clone());
            watchers::receive(stream, stop_rx.clone(), move |resp, at| {
                if !resp.events().is_empty() {
                    delivered.fetch_add(resp.events().len() as u64, Ordering::Relaxed);
                    last.fetch_max(at.duration_since(start).as_nanos() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let (watchers_on, expected) = (Arc::new(watchers_on), Arc::new(AtomicU64::new(0)));
    let value = Arc::new(keys::value(a.val_size, 5));
    let workers = (0..g.clients)
        .map(|i| WatchedPut {
            kv: clients[i % clients.len()].kv_client(),
            keys: keys.clone(),
            watchers_on: watchers_on.clone(),
            value: value.clone(),
            expected: expected.clone(),
        })
        .collect();
    let puts = Arc::new(Recorder::new(&["put"]));
    let put_elapsed = runner::run(&super::opts(g, "watch"), &puts, workers).await;
    let expected = expected.load(Ordering::Relaxed);
    let drained = watchers::wait_until(a.drain_timeout, || delivered.load(Ordering::Relaxed) >= expected).await;
    let _ = stop_tx.send(true);
    for r in receivers {
        let _ = r.await;
    }

    let delivered = delivered.load(Ordering::Relaxed);
    let delivery_s = last_event_ns.load(Ordering::Relaxed) as f64 / 1e9;
    let put_ok = puts.latency().count();
    report.set("puts_ok", put_ok);
    report.set("put_throughput", put_ok as f64 / put_elapsed.as_secs_f64());
    report.set("events_expected", expected);
    report.set("events_delivered", delivered);
    report.set("all_delivered", drained);
    report.set("delivery_s", delivery_s);
    report.set("events_per_second", if delivery_s > 0.0 { delivered as f64 / delivery_s } else { 0.0 });
    for (code, entry) in puts.errors() {
        report.errors.insert(format!("put/{code}"), entry);
    }
    Ok(report)
}
