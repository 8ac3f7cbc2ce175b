//! `watch-latency`: `--streams` × `--watchers-per-stream` watchers on one key; puts on that key
//! (at `--rate`, 100/s unless given, like etcd's `--put-rate`) carry their request number in
//! the value. For every (put, watcher) pair the report's histogram holds the time from the
//! put's acknowledgement to the event's delivery on that watcher. An event can arrive before
//! the put's response does; such deliveries count as 0 and are reported as
//! `delivered_before_ack`. The time from sending the put to delivery (etcd's definition) is
//! reported too, as `send_to_delivery_ms`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use etcd_client::{KvClient, WatchOptions};
use serde_json::json;
use tokio::sync::watch;

use super::watchers;
use crate::cli::{Global, WatchLatencyArgs};
use crate::conn;
use crate::histogram::Histogram;
use crate::recorder::Recorder;
use crate::report::{latency_json, Report};
use crate::runner::{self, Worker};

const KEY: &str = "watch-latency/key";

/// Request number -> (sent, acknowledged).
type Acks = Arc<Mutex<HashMap<u64, (Instant, Instant)>>>;

struct TimedPut {
    kv: KvClient,
    val_size: usize,
    acks: Acks,
}

impl Worker for TimedPut {
    fn call(&mut self, seq: u64) -> (usize, impl Future<Output = Result<(), etcd_client::Error>> + Send) {
        let width = self.val_size;
        let (value, mut kv, acks) = (format!("{seq:0width$}"), self.kv.clone(), self.acks.clone());
        (0, async move {
            let sent = Instant::now();
            kv.put(KEY, value, None).await?;
            let acked = Instant::now();
            acks.lock().unwrap_or_else(|e| e.into_inner()).insert(seq, (sent, acked));
            Ok(())
        })
    }
}

/// Deliveries `(request number, instant)` of one stream.
type Deliveries = Arc<Mutex<Vec<(u64, Instant)>>>;

pub async fn run(g: &Global, a: &WatchLatencyArgs) -> Result<Report, String> {
    if a.streams == 0 || a.watchers_per_stream == 0 {
        return Err("--streams and --watchers-per-stream must be at least 1".into());
    }
    let clients = conn::connect(g).await?;
    let cfg = json!({"streams": a.streams, "watchers_per_stream": a.watchers_per_stream, "val_size": a.val_size});
    let create = Arc::new(Recorder::new(&["create"]));
    let setup = Instant::now();
    let mut opening = Vec::new();
    for s in 0..a.streams {
        let (client, create, per, limit) =
            (clients[s % clients.len()].clone(), create.clone(), a.watchers_per_stream, g.request_timeout);
        let key_of = |_| (KEY.as_bytes().to_vec(), WatchOptions::new());
        opening.push(tokio::spawn(async move { watchers::open(&client, per, key_of, &create, 0, limit).await }));
    }
    let mut streams = Vec::new();
    let mut created = 0u64;
    for o in opening {
        if let Some((stream, n)) = o.await.map_err(|e| e.to_string())? {
            created += n as u64;
            streams.push(stream);
        }
    }
    let mut report = Report::from_recorder("watch-latency", &create, setup.elapsed(), super::config(g, cfg));
    report.latency_of = "put acknowledged -> event delivered".into();
    report.set("watchers_created", created);
    report.set("watch_creation_ms", latency_json(&report.latency));
    report.latency = Histogram::new();
    if streams.is_empty() {
        return Ok(super::not_run(report, "no watcher could be created", setup));
    }

    let delivered = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut per_stream: Vec<Deliveries> = Vec::new();
    let mut receivers = Vec::new();
    for stream in streams {
        let (log, delivered) = (Deliveries::default(), delivered.clone());
        per_stream.push(log.clone());
        receivers.push(watchers::receive(stream, stop_rx.clone(), move |resp, at| {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            for ev in resp.events() {
                let seq = ev.kv().and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok());
                if let Some(seq) = seq {
                    log.push((seq, at));
                }
            }
            delivered.fetch_add(resp.events().len() as u64, Ordering::Relaxed);
        }));
    }

    let acks = Acks::default();
    let workers = (0..g.clients)
        .map(|i| TimedPut { kv: clients[i % clients.len()].kv_client(), val_size: a.val_size, acks: acks.clone() })
        .collect();
    let puts = Arc::new(Recorder::new(&["put"]));
    let mut opts = super::opts(g, "watch-latency");
    opts.rate = opts.rate.or(Some(100.0));
    let elapsed = runner::run(&opts, &puts, workers).await;
    let expected = puts.latency().count() * created;
    let drained = watchers::wait_until(a.drain_timeout, || delivered.load(Ordering::Relaxed) >= expected).await;
    let _ = stop_tx.send(true);
    for r in receivers {
        let _ = r.await;
    }

    let acks = acks.lock().unwrap_or_else(|e| e.into_inner());
    let (mut from_ack, mut from_send, mut early) = (Histogram::new(), Histogram::new(), 0u64);
    for log in &per_stream {
        for &(seq, at) in log.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let Some(&(sent, acked)) = acks.get(&seq) else { continue };
            match at.checked_duration_since(acked) {
                Some(d) => from_ack.record(d.as_nanos() as u64),
                None => {
                    early += 1;
                    from_ack.record(0);
                }
            }
            from_send.record(at.saturating_duration_since(sent).as_nanos() as u64);
        }
    }
    report.latency = from_ack;
    report.elapsed = elapsed;
    report.set("puts_ok", acks.len() as u64);
    report.set("deliveries_expected", expected);
    report.set("deliveries_timed", report.latency.count());
    report.set("all_delivered", drained);
    report.set("delivered_before_ack", early);
    report.set("send_to_delivery_ms", latency_json(&from_send));
    for (code, entry) in puts.errors() {
        report.errors.insert(format!("put/{code}"), entry);
    }
    Ok(report)
}
