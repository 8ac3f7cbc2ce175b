//! `put-under-defrag`: put latency before and during a Maintenance.Defragment.
//!
//! The question it answers: does defragmenting a member stall its writes? (etcd blocks every
//! read and write while it rewrites its bbolt file; MetaStore compacts RocksDB beside them.)
//! Steps:
//!
//! 1. load `--load-keys` keys as `put-under-scan` does (transactions of 100 puts);
//! 2. baseline: `--clients` tasks each put in a loop (same key flags as `put`) for `--duration`;
//! 3. the same puts for `--duration` again, with a Defragment sent to the first endpoint
//!    `--defrag-after` into the phase; the call's start and end are recorded.
//!
//! Every put's start and latency is kept, so the report separates the puts that overlapped the
//! defragment (started before it ended and ended after it started) from the rest of the phase.
//! The report's latency is that of the overlapping puts; `extra` carries the baseline, the
//! defragment's duration, and p99/max of the overlapping puts against the baseline. Failed puts
//! count in the latencies at their time to fail (and are counted apart).

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, KvClient};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::cli::{Global, PutUnderDefragArgs};
use crate::conn;
use crate::histogram::Histogram;
use crate::keys::{self, KeyPicker};
use crate::recorder::error_code;
use crate::report::{latency_json, Report};

/// One put: when it started (from the phase start) and how long it took, in nanoseconds.
#[derive(Clone, Copy)]
struct Sample {
    start: u64,
    latency: u64,
    ok: bool,
}

async fn put_loop(
    mut kv: KvClient,
    picker: Arc<KeyPicker>,
    value: Arc<Vec<u8>>,
    seed: u64,
    t0: Instant,
    end: Instant,
) -> Vec<Sample> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut seq = 0;
    while Instant::now() < end {
        let key = picker.pick(seq, &mut rng);
        seq += 1;
        let sent = Instant::now();
        let ok = kv.put(key, value.to_vec(), None).await.is_ok();
        out.push(Sample { start: (sent - t0).as_nanos() as u64, latency: sent.elapsed().as_nanos() as u64, ok });
    }
    out
}

/// Runs the put loops for `duration`; calls `during` (if any) after `delay` on the side and
/// returns its `(start, end)` in nanoseconds from the phase start with its outcome.
async fn phase(
    g: &Global,
    a: &PutUnderDefragArgs,
    clients: &[Client],
    defrag: Option<Client>,
) -> (Vec<Sample>, Option<(u64, u64, Result<(), String>)>) {
    let duration = g.duration.unwrap_or(Duration::from_secs(10));
    let picker = Arc::new(KeyPicker::new(&a.keys));
    let value = Arc::new(keys::value(a.keys.val_size, 1));
    let t0 = Instant::now();
    let end = t0 + duration;
    let tasks: Vec<_> = (0..g.clients)
        .map(|i| {
            let kv = clients[i % clients.len()].kv_client();
            tokio::spawn(put_loop(kv, picker.clone(), value.clone(), i as u64, t0, end))
        })
        .collect();
    let mut window = None;
    if let Some(mut c) = defrag {
        tokio::time::sleep(a.defrag_after).await;
        let started = (Instant::now() - t0).as_nanos() as u64;
        let outcome = c.defragment().await.map(drop).map_err(|e| format!("{}: {e}", error_code(&e)));
        window = Some((started, (Instant::now() - t0).as_nanos() as u64, outcome));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.unwrap_or_default());
    }
    (samples, window)
}

/// Latency of every put, failed ones included at their time to fail: a put the server held
/// until its own request timeout (etcd's 7 s `request timed out` while it defragments) is the
/// stall being measured, not a put to leave out.
fn stats(samples: impl Iterator<Item = Sample>) -> Value {
    let (mut h, mut failed) = (Histogram::new(), 0u64);
    for s in samples {
        h.record(s.latency);
        failed += u64::from(!s.ok);
    }
    json!({"ok": h.count(), "failed": failed, "latency_ms": latency_json(&h),
        "over_100ms": h.count_above(100_000_000), "over_1s": h.count_above(1_000_000_000)})
}

pub async fn run(g: &Global, a: &PutUnderDefragArgs) -> Result<Report, String> {
    a.keys.validate()?;
    let clients = conn::connect(g).await?;
    let load_s = super::load_keys(&clients[0], &a.load).await?;
    let (baseline, _) = phase(g, a, &clients, None).await;
    let defrag_client = conn::connect_one(&g.endpoints[0], g.user.as_ref()).await?;
    let started = Instant::now();
    let (samples, window) = phase(g, a, &clients, Some(defrag_client)).await;
    let elapsed = started.elapsed();
    let (from, to, outcome) = window.ok_or("the defragment did not run")?;
    let overlapping = |s: &Sample| s.start < to && s.start + s.latency > from;
    let mut during = Histogram::new();
    for s in samples.iter().filter(|s| overlapping(s)) {
        during.record(s.latency);
    }
    let mut r = Report {
        workload: "put-under-defrag".into(),
        latency_of: "puts overlapping the defragment".into(),
        elapsed,
        latency: during,
        errors: Default::default(),
        kinds: Vec::new(),
        extra: Default::default(),
        config: super::config(
            g,
            json!({"key_size": a.keys.key_size, "val_size": a.keys.val_size, "key_space_size": a.keys.key_space_size,
                "load_keys": a.load.load_keys, "load_val_size": a.load.load_val_size,
                "defrag_after_s": a.defrag_after.as_secs_f64(), "defrag_endpoint": g.endpoints[0]}),
        ),
    };
    let base = stats(baseline.iter().copied());
    let during_stats = stats(samples.iter().copied().filter(overlapping));
    let p99 = |v: &Value| v["latency_ms"]["p99"].as_f64().unwrap_or(0.0);
    let ratio = if p99(&base) > 0.0 { json!(p99(&during_stats) / p99(&base)) } else { Value::Null };
    r.set("load_s", load_s);
    r.set("loaded_keys", a.load.load_keys);
    r.set("defrag_ms", (to - from) as f64 / 1e6);
    r.set("defrag_error", outcome.err().map_or(Value::Null, Value::String));
    r.set("baseline", base);
    r.set("during_defrag", during_stats);
    r.set("rest_of_phase", stats(samples.iter().copied().filter(|s| !overlapping(s))));
    r.set("p99_ratio", ratio);
    Ok(r)
}
