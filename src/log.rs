//! The process log: `--logger`, `--log-outputs`, `--log-level`, on `tracing`.
//!
//! * `capnslog` (etcd 3.4's default): tracing-subscriber's text lines, as MetaStore always wrote.
//! * `zap`: one JSON object per line with zap's keys as etcd configures them — `level`
//!   (lowercase), `ts` (ISO 8601, milliseconds, UTC), `caller` (source file under `src/` and line),
//!   `msg` — followed by the event's fields under their own names. The lines operators grep are
//!   logged with etcd's zap message and field names (`"local-member-id"`, `"took"`, …) at the call
//!   site, so both formats carry them; a field recorded with `?` whose text is a JSON array (a
//!   list of URLs) is written as that array, as zap's `Strings` are.
//!
//! Outputs: `default` and `stderr` are standard error, `stdout` standard output, anything else a
//! file opened for appending; with several, every line goes to each.
//!
//! Not done: etcd's `default` means the systemd journal when running under systemd; here it is
//! always standard error.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--logger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Logger {
    #[default]
    Capnslog,
    Zap,
}

impl Logger {
    pub fn from_flag(s: &str) -> Result<Self, String> {
        match s {
            "capnslog" => Ok(Logger::Capnslog),
            "zap" => Ok(Logger::Zap),
            other => Err(format!("unknown logger option {other:?}")),
        }
    }
}

/// Installs the process's subscriber. `level` is `--log-level`; `RUST_LOG`, when set, overrides it.
pub fn init(logger: Logger, outputs: &[String], level: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},raft=info")));
    let outputs = Outputs::open(outputs)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false);
    let writer = move || outputs.clone();
    match logger {
        Logger::Capnslog => builder.with_writer(writer).init(),
        Logger::Zap => builder.event_format(ZapFormat).with_writer(writer).init(),
    }
    Ok(())
}

enum Output {
    Stderr,
    Stdout,
    File(Mutex<File>),
}

/// Every `--log-outputs` destination; each formatted line is written whole to each.
#[derive(Clone)]
struct Outputs(Arc<Vec<Output>>);

impl Outputs {
    fn open(names: &[String]) -> Result<Self, String> {
        let mut outputs = Vec::new();
        for name in names {
            outputs.push(match name.as_str() {
                "default" | "stderr" => Output::Stderr,
                "stdout" => Output::Stdout,
                path => {
                    let file = File::options()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| format!("cannot open log output {path}: {e}"))?;
                    Output::File(Mutex::new(file))
                }
            });
        }
        if outputs.is_empty() {
            outputs.push(Output::Stderr);
        }
        Ok(Outputs(Arc::new(outputs)))
    }
}

impl Write for Outputs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for output in self.0.iter() {
            match output {
                Output::Stderr => io::stderr().write_all(buf)?,
                Output::Stdout => io::stdout().write_all(buf)?,
                Output::File(f) => f.lock().map_err(|_| io::Error::other("log file lock"))?.write_all(buf)?,
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// zap's JSON encoder with etcd's configuration (`logutil.DefaultZapLoggerConfig`).
struct ZapFormat;

impl<S, N> FormatEvent<S, N> for ZapFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        writeln!(writer, "{}", zap_line(event, time::OffsetDateTime::now_utc()))
    }
}

fn zap_line(event: &Event<'_>, now: time::OffsetDateTime) -> String {
    let meta = event.metadata();
    let level = match *meta.level() {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG | Level::TRACE => "debug",
    };
    let file = meta.file().unwrap_or("unknown");
    let caller = format!("{}:{}", file.strip_prefix("src/").unwrap_or(file), meta.line().unwrap_or(0));
    let mut fields = Fields::default();
    event.record(&mut fields);
    // zap's key order: level, ts, caller, msg, then the fields as given.
    let mut line = String::from("{");
    let head = [("level", Value::from(level)), ("ts", iso8601(now).into()), ("caller", caller.into())];
    let entries = head.into_iter().map(|(k, v)| (k.to_string(), v));
    let entries = entries.chain(std::iter::once(("msg".to_string(), Value::from(fields.msg)))).chain(fields.rest);
    for (i, (key, value)) in entries.enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&Value::from(key).to_string());
        line.push(':');
        line.push_str(&value.to_string());
    }
    line.push('}');
    line
}

/// zap's ISO 8601 time encoder: `2026-01-02T15:04:05.000Z`.
fn iso8601(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[derive(Default)]
struct Fields {
    msg: String,
    rest: Vec<(String, Value)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.msg = text;
            return;
        }
        let value = match serde_json::from_str::<Value>(&text) {
            Ok(array @ Value::Array(_)) => array,
            _ => Value::String(text),
        };
        self.rest.push((field.name().to_string(), value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.rest.push((field.name().to_string(), value.into()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest.push((field.name().to_string(), value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest.push((field.name().to_string(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest.push((field.name().to_string(), value.into()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.rest.push((field.name().to_string(), value.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captures the zap line of each event.
    struct Capture(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
            let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
            self.0.lock().expect("capture lock").push(zap_line(event, at));
        }
    }

    #[test]
    fn zap_lines_have_etcds_keys_and_field_names() {
        use tracing_subscriber::layer::SubscriberExt;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let urls = vec!["http://127.0.0.1:2380".to_string()];
            tracing::info!({ "added-peer-id" = "8e9e05c52164694d", "added-peer-peer-urls" = ?urls }, "added member");
            tracing::warn!(took = "1.5ms", count = 3u64, "apply request took too long");
        });
        let lines = lines.lock().expect("capture lock");
        let first: Value = serde_json::from_str(&lines[0]).expect("JSON line");
        assert_eq!(first["level"], "info");
        assert_eq!(first["ts"], "2023-11-14T22:13:20.000Z");
        assert!(first["caller"].as_str().is_some_and(|c| c.starts_with("log.rs:")), "{first}");
        assert_eq!(first["msg"], "added member");
        assert_eq!(first["added-peer-id"], "8e9e05c52164694d");
        assert_eq!(first["added-peer-peer-urls"], serde_json::json!(["http://127.0.0.1:2380"]));
        assert!(lines[0].starts_with(r#"{"level":"info","ts":"#), "zap's key order: {}", lines[0]);
        let second: Value = serde_json::from_str(&lines[1]).expect("JSON line");
        assert_eq!((second["level"].as_str(), second["count"].as_u64()), (Some("warn"), Some(3)));
    }

    #[test]
    fn logger_names_are_etcds() {
        assert_eq!(Logger::from_flag("zap"), Ok(Logger::Zap));
        assert_eq!(Logger::from_flag("foo"), Err("unknown logger option \"foo\"".to_string()));
    }
}
