//! The closed-loop driver every workload runs on.
//!
//! `--clients` tasks each keep one request in flight. Request numbers come from one shared
//! counter, which makes `--total` exact and gives every request a slot on the `--rate`
//! schedule (request n is not sent before `start + n / rate`). A run ends at `--total`
//! requests or at the `--duration` deadline, whichever comes first; every request is bounded
//! by `--request-timeout`, so a run always ends by itself. Latency is measured from the moment
//! a request is sent (like etcd's tool; with `--rate`, time spent waiting for a slot is not
//! counted).

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{Global, Limits};
use crate::recorder::{error_code, error_message, Recorder};

/// One client's request generator. `call` returns the request kind (an index into the
/// recorder's kinds) and the request itself.
pub trait Worker: Send + 'static {
    fn call(&mut self, seq: u64) -> (usize, impl Future<Output = Result<(), etcd_client::Error>> + Send);
}

#[derive(Clone, Debug)]
pub struct RunOpts {
    pub limits: Limits,
    pub rate: Option<f64>,
    pub request_timeout: Duration,
    pub progress: bool,
    pub label: String,
}

impl RunOpts {
    pub fn from_global(g: &Global, label: &str) -> Self {
        Self {
            limits: g.limits(),
            rate: g.rate,
            request_timeout: g.request_timeout,
            progress: !g.no_progress && !g.json && std::io::stderr().is_terminal(),
            label: label.to_string(),
        }
    }
}

/// What the driver decides for request number `seq` at time `now`.
#[derive(Debug, PartialEq)]
pub enum Slot {
    Stop,
    /// Send at this offset from the start of the run.
    At(Duration),
}

/// Whether request `seq` is sent, and when (pure, for testing).
pub fn slot(seq: u64, limits: &Limits, rate: Option<f64>, elapsed: Duration) -> Slot {
    if limits.total.is_some_and(|t| seq >= t) {
        return Slot::Stop;
    }
    let at = rate.map_or(Duration::ZERO, |r| Duration::from_secs_f64(seq as f64 / r));
    match limits.duration {
        Some(d) if elapsed >= d || at >= d => Slot::Stop,
        _ => Slot::At(at),
    }
}

/// Runs `workers` (one task each) until the limits are reached; returns the elapsed time.
pub async fn run<W: Worker>(opts: &RunOpts, rec: &Arc<Recorder>, workers: Vec<W>) -> Duration {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop_progress = Arc::new(AtomicBool::new(false));
    let progress = opts.progress.then(|| {
        let (rec, stop, opts) = (rec.clone(), stop_progress.clone(), opts.clone());
        tokio::spawn(async move { draw_progress(&opts, &rec, start, &stop).await })
    });
    let mut tasks = Vec::with_capacity(workers.len());
    for mut w in workers {
        let (next, rec, opts) = (next.clone(), rec.clone(), opts.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                let at = match slot(seq, &opts.limits, opts.rate, start.elapsed()) {
                    Slot::Stop => break,
                    Slot::At(at) => at,
                };
                tokio::time::sleep_until((start + at).into()).await;
                let (kind, request) = w.call(seq);
                let sent = Instant::now();
                match tokio::time::timeout(opts.request_timeout, request).await {
                    Ok(Ok(())) => rec.ok(kind, sent.elapsed()),
                    Ok(Err(e)) => rec.err(kind, &error_code(&e), &error_message(&e)),
                    Err(_) => rec.err(kind, "DeadlineExceeded", "client-side --request-timeout"),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    stop_progress.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    elapsed
}

async fn draw_progress(opts: &RunOpts, rec: &Recorder, start: Instant, stop: &AtomicBool) {
    const WIDTH: usize = 30;
    let mut err = std::io::stderr();
    while !stop.load(Ordering::Relaxed) {
        let done = rec.done();
        let elapsed = start.elapsed();
        let by_count = opts.limits.total.map_or(0.0, |t| done as f64 / t as f64);
        let by_time = opts.limits.duration.map_or(0.0, |d| elapsed.as_secs_f64() / d.as_secs_f64());
        let frac = by_count.max(by_time).clamp(0.0, 1.0);
        let filled = (frac * WIDTH as f64) as usize;
        let _ = write!(
            err,
            "\r{} [{}{}] {:>3.0}% {done} req {:.1}s ",
            opts.label,
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            frac * 100.0,
            elapsed.as_secs_f64()
        );
        let _ = err.flush();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn total_limits_the_request_count() {
        let l = Limits { total: Some(3), duration: None };
        assert_eq!(slot(0, &l, None, S(100)), Slot::At(Duration::ZERO));
        assert_eq!(slot(2, &l, None, S(0)), Slot::At(Duration::ZERO));
        assert_eq!(slot(3, &l, None, S(0)), Slot::Stop);
    }

    #[test]
    fn duration_limits_time_and_whichever_comes_first_wins() {
        let l = Limits { total: None, duration: Some(S(5)) };
        assert_eq!(slot(1_000_000, &l, None, S(4)), Slot::At(Duration::ZERO));
        assert_eq!(slot(0, &l, None, S(5)), Slot::Stop);
        let both = Limits { total: Some(10), duration: Some(S(5)) };
        assert_eq!(slot(10, &both, None, S(1)), Slot::Stop);
        assert_eq!(slot(3, &both, None, S(6)), Slot::Stop);
    }

    #[test]
    fn rate_spaces_requests_and_respects_the_deadline() {
        let l = Limits { total: None, duration: Some(S(2)) };
        assert_eq!(slot(0, &l, Some(100.0), S(0)), Slot::At(Duration::ZERO));
        assert_eq!(slot(150, &l, Some(100.0), S(0)), Slot::At(Duration::from_millis(1500)));
        // Request 200 would be sent at 2s: past the deadline, so not sent at all.
        assert_eq!(slot(200, &l, Some(100.0), S(0)), Slot::Stop);
    }

    struct Counting(Arc<AtomicU64>);

    impl Worker for Counting {
        fn call(&mut self, seq: u64) -> (usize, impl Future<Output = Result<(), etcd_client::Error>> + Send) {
            self.0.fetch_add(1, Ordering::Relaxed);
            let fail = seq % 10 == 9;
            (0, async move {
                if fail {
                    Err(etcd_client::Error::InvalidArgs("every tenth".into()))
                } else {
                    Ok(())
                }
            })
        }
    }

    #[tokio::test]
    async fn run_issues_exactly_total_requests_over_all_clients() {
        let calls = Arc::new(AtomicU64::new(0));
        let rec = Arc::new(Recorder::new(&["op"]));
        let opts = RunOpts {
            limits: Limits { total: Some(1000), duration: Some(S(30)) },
            rate: None,
            request_timeout: S(1),
            progress: false,
            label: "t".into(),
        };
        let workers = (0..7).map(|_| Counting(calls.clone())).collect();
        run(&opts, &rec, workers).await;
        assert_eq!(calls.load(Ordering::Relaxed), 1000);
        assert_eq!(rec.latency().count(), 900);
        assert_eq!(rec.errors()["InvalidArgs"].0, 100);
    }

    #[tokio::test]
    async fn run_stops_at_the_deadline_and_honours_the_rate() {
        let calls = Arc::new(AtomicU64::new(0));
        let rec = Arc::new(Recorder::new(&["op"]));
        let opts = RunOpts {
            limits: Limits { total: None, duration: Some(Duration::from_millis(300)) },
            rate: Some(100.0),
            request_timeout: S(1),
            progress: false,
            label: "t".into(),
        };
        let elapsed = run(&opts, &rec, vec![Counting(calls.clone()), Counting(calls.clone())]).await;
        let n = calls.load(Ordering::Relaxed);
        assert!((28..=30).contains(&n), "{n} requests in 300 ms at 100/s");
        assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
    }
}
