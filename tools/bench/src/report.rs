//! The result of one run, printed as text for people or as one JSON object (`--json`).
//!
//! Throughput counts successful requests only; failed requests are reported separately by
//! gRPC code, so a server that answers `Unimplemented` quickly does not look fast. Latency
//! quantiles come from the histogram of successful requests. Workloads add their own figures
//! (events delivered, keys per response, ...) as `extra` entries, shown in both forms.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::histogram::Histogram;
use crate::recorder::{ErrorCounts, KindSummary, Recorder};

/// Quantiles shown everywhere, with their labels.
pub const QUANTILES: [(&str, f64); 4] = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999)];

pub struct Report {
    pub workload: String,
    /// What the latency histogram measures, e.g. "request" or "watch creation".
    pub latency_of: String,
    pub elapsed: Duration,
    pub latency: Histogram,
    pub errors: ErrorCounts,
    pub kinds: Vec<KindSummary>,
    pub extra: Map<String, Value>,
    pub config: Value,
}

impl Report {
    pub fn from_recorder(workload: &str, rec: &Recorder, elapsed: Duration, config: Value) -> Self {
        Self {
            workload: workload.to_string(),
            latency_of: "request".into(),
            elapsed,
            latency: rec.latency(),
            errors: rec.errors(),
            kinds: rec.kinds(),
            extra: Map::new(),
            config,
        }
    }

    pub fn ok(&self) -> u64 {
        self.latency.count()
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok() as f64 / secs
        } else {
            0.0
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.extra.insert(key.to_string(), value.into());
    }

    pub fn to_json(&self) -> Value {
        let errors: Map<String, Value> = self.errors.iter().map(|(c, (n, _))| (c.clone(), json!(n))).collect();
        let messages: Map<String, Value> = self.errors.iter().map(|(c, (_, m))| (c.clone(), json!(m))).collect();
        let mut out = json!({
            "workload": self.workload,
            "ok": self.ok(),
            "errors": errors,
            "error_messages": messages,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "throughput": self.throughput(),
            "latency_of": self.latency_of,
            "latency_ms": latency_json(&self.latency),
            "extra": self.extra,
            "config": self.config,
        });
        if self.kinds.len() > 1 {
            let kinds: Map<String, Value> = self
                .kinds
                .iter()
                .map(|k| {
                    let v =
                        json!({"ok": k.latency.count(), "errors": k.errors, "latency_ms": latency_json(&k.latency)});
                    (k.name.to_string(), v)
                })
                .collect();
            out["by_op"] = Value::Object(kinds);
        }
        out
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let secs = self.elapsed.as_secs_f64();
        let _ = writeln!(s, "{}: {} ok, {} failed in {secs:.2}s", self.workload, self.ok(), self.error_total());
        if self.latency.count() > 0 || self.error_total() > 0 {
            let _ = writeln!(s, "  throughput   {:.1} req/s (successful)", self.throughput());
            let _ = writeln!(s, "  latency ms   {} ({})", latency_text(&self.latency), self.latency_of);
        }
        for (code, (n, msg)) in &self.errors {
            let _ = writeln!(s, "  error        {code} x{n}: {msg}");
        }
        if self.kinds.len() > 1 {
            for k in &self.kinds {
                let _ = writeln!(
                    s,
                    "  {:<12} {} ok, {} failed; {}",
                    k.name,
                    k.latency.count(),
                    k.errors,
                    latency_text(&k.latency)
                );
            }
        }
        for (k, v) in &self.extra {
            let _ = writeln!(s, "  {k:<12} {}", plain(v));
        }
        s
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

pub fn latency_json(h: &Histogram) -> Value {
    let mut m = Map::new();
    m.insert("mean".into(), json!(h.mean() / 1e6));
    m.insert("min".into(), json!(ms(h.min())));
    for (label, q) in QUANTILES {
        m.insert(label.into(), json!(ms(h.quantile(q))));
    }
    m.insert("max".into(), json!(ms(h.max())));
    Value::Object(m)
}

fn latency_text(h: &Histogram) -> String {
    if h.count() == 0 {
        return "none".into();
    }
    let mut s = format!("mean {:.3}", h.mean() / 1e6);
    for (label, q) in QUANTILES {
        let _ = write!(s, "  {label} {:.3}", ms(h.quantile(q)));
    }
    let _ = write!(s, "  max {:.3}", ms(h.max()));
    s
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text_agree_on_counts() {
        let rec = Recorder::new(&["read", "write"]);
        for i in 1..=100 {
            rec.ok(i % 2, Duration::from_micros(i as u64 * 10));
        }
        rec.err(1, "Unimplemented", "not yet");
        let mut r = Report::from_recorder("txn-mixed", &rec, Duration::from_secs(2), json!({"clients": 1}));
        r.set("events", 7u64);
        let j = r.to_json();
        assert_eq!(j["ok"], 100);
        assert_eq!(j["errors"]["Unimplemented"], 1);
        assert_eq!(j["error_messages"]["Unimplemented"], "not yet");
        assert_eq!(j["throughput"], 50.0);
        assert_eq!(j["latency_ms"]["max"], 1.0);
        let p50 = j["latency_ms"]["p50"].as_f64().unwrap();
        assert!((0.5..0.5 * (1.0 + 1.0 / 128.0)).contains(&p50), "p50 {p50}");
        assert_eq!(j["by_op"]["write"]["errors"], 1);
        assert_eq!(j["extra"]["events"], 7);
        let t = r.to_text();
        assert!(t.starts_with("txn-mixed: 100 ok, 1 failed in 2.00s"), "{t}");
        assert!(t.contains("Unimplemented x1: not yet"), "{t}");
        assert!(t.contains("p99.9"), "{t}");
    }

    #[test]
    fn single_kind_has_no_breakdown() {
        let rec = Recorder::new(&["put"]);
        rec.ok(0, Duration::from_millis(1));
        let r = Report::from_recorder("put", &rec, Duration::ZERO, Value::Null);
        assert!(r.to_json().get("by_op").is_none());
        assert_eq!(r.throughput(), 0.0);
    }
}
