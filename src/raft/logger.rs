//! Forwards raft-rs's `slog` records to `tracing`, so raft's own messages (elections, leader
//! changes) appear in MetaStore's log.

use slog::{Drain, OwnedKVList, Record, KV};

struct TracingDrain;

struct Fields(String);

impl slog::Serializer for Fields {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        self.0.push_str(&format!(" {key}={val}"));
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut fields = Fields(String::new());
        // Serialising into a String cannot fail.
        let _infallible = record.kv().serialize(record, &mut fields);
        let _infallible = values.serialize(record, &mut fields);
        let msg = format!("{}{}", record.msg(), fields.0);
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{msg}"),
            slog::Level::Warning => tracing::warn!(target: "raft", "{msg}"),
            slog::Level::Info => tracing::info!(target: "raft", "{msg}"),
            slog::Level::Debug | slog::Level::Trace => tracing::debug!(target: "raft", "{msg}"),
        }
        Ok(())
    }
}

pub fn to_tracing() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}
