//! Collects outcomes while a run goes on: one latency histogram over all successful requests,
//! one per request kind (for mixed workloads), and error counts keyed by gRPC code with the
//! first message seen for each code (so a report can say *why*, e.g. "Unimplemented: leases are
//! not implemented yet"). Shared by all client tasks; successes touch only atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::histogram::{AtomicHistogram, Histogram};

/// Error counts by code, with the first message seen for each code.
pub type ErrorCounts = BTreeMap<String, (u64, String)>;

pub struct Recorder {
    all: AtomicHistogram,
    kinds: Vec<Kind>,
    errors: Mutex<ErrorCounts>,
    error_total: AtomicU64,
}

struct Kind {
    name: &'static str,
    latency: AtomicHistogram,
    errors: AtomicU64,
}

/// What a finished run recorded, for one request kind.
pub struct KindSummary {
    pub name: &'static str,
    pub latency: Histogram,
    pub errors: u64,
}

impl Recorder {
    /// `kinds` names the request kinds; index i in `ok`/`err` refers to `kinds[i]`.
    pub fn new(kinds: &[&'static str]) -> Self {
        Self {
            all: AtomicHistogram::new(),
            kinds: kinds
                .iter()
                .map(|&name| Kind { name, latency: AtomicHistogram::new(), errors: AtomicU64::new(0) })
                .collect(),
            errors: Mutex::new(BTreeMap::new()),
            error_total: AtomicU64::new(0),
        }
    }

    pub fn ok(&self, kind: usize, latency: Duration) {
        let ns = latency.as_nanos().min(u64::MAX as u128) as u64;
        self.all.record(ns);
        self.kinds[kind].latency.record(ns);
    }

    pub fn err(&self, kind: usize, code: &str, message: &str) {
        self.kinds[kind].errors.fetch_add(1, Ordering::Relaxed);
        self.error_total.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        let entry = errors.entry(code.to_string()).or_insert_with(|| (0, message.to_string()));
        entry.0 += 1;
    }

    /// Requests finished so far, successful or not (for the progress bar).
    pub fn done(&self) -> u64 {
        self.all.count() + self.error_total.load(Ordering::Relaxed)
    }

    pub fn latency(&self) -> Histogram {
        self.all.snapshot()
    }

    pub fn errors(&self) -> ErrorCounts {
        self.errors.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn kinds(&self) -> Vec<KindSummary> {
        self.kinds
            .iter()
            .map(|k| KindSummary {
                name: k.name,
                latency: k.latency.snapshot(),
                errors: k.errors.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// The gRPC code of a client error (`Unimplemented`, `Unavailable`, ...), or the client-side
/// failure kind when no status came back (`Transport`, `WatchError`, ...).
pub fn error_code(e: &etcd_client::Error) -> String {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(s) => format!("{:?}", s.code()),
        E::TransportError(_) => "Transport".into(),
        E::IoError(_) => "Io".into(),
        E::WatchError(_) => "WatchError".into(),
        E::LeaseKeepAliveError(_) => "LeaseKeepAliveError".into(),
        E::InvalidArgs(_) => "InvalidArgs".into(),
        _ => "Other".into(),
    }
}

/// The message of a client error without the client's "grpc request error: " decoration.
pub fn error_message(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_code() {
        let r = Recorder::new(&["get", "put"]);
        r.ok(0, Duration::from_micros(100));
        r.ok(1, Duration::from_micros(300));
        r.err(1, "Unimplemented", "leases are not implemented yet");
        r.err(1, "Unimplemented", "second message is not kept");
        r.err(0, "Unavailable", "down");
        assert_eq!(r.done(), 5);
        assert_eq!(r.latency().count(), 2);
        let errors = r.errors();
        assert_eq!(errors["Unimplemented"], (2, "leases are not implemented yet".to_string()));
        assert_eq!(errors["Unavailable"].0, 1);
        let kinds = r.kinds();
        assert_eq!((kinds[0].name, kinds[0].latency.count(), kinds[0].errors), ("get", 1, 1));
        assert_eq!((kinds[1].name, kinds[1].latency.count(), kinds[1].errors), ("put", 1, 2));
    }

    #[test]
    fn grpc_codes_are_named() {
        let e = etcd_client::Error::GRpcStatus(tonic_status());
        assert_eq!(error_code(&e), "Unimplemented");
        assert_eq!(error_message(&e), "nope");
        assert_eq!(error_code(&etcd_client::Error::WatchError("x".into())), "WatchError");
    }

    fn tonic_status() -> tonic::Status {
        tonic::Status::unimplemented("nope")
    }
}
